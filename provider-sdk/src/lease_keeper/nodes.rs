//! Which node of a registry cluster a lease keeper talks to: the registry it was given
//! first (its home: every node renews, so its renewals stay there), then the others in
//! turn. A node whose connection failed is passed over for a
//! while (it may be down), so that a keeper refused by a standby does not wait on a dead
//! writer's connect timeout every time round; a node that refused (a standby) is left for
//! the next one, and never kept because every other node failed lately: then the one that
//! failed longest ago is tried, which is how a keeper finds a writer that restarted its
//! listener while taking over.

use courier_protocol::SpkiPin;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// How long a node whose connection failed is passed over for the others.
pub(super) const NODE_DOWN_FOR: Duration = Duration::from_secs(10);

/// The nodes and which one is tried now.
#[derive(Debug)]
pub(super) struct Nodes {
    nodes: Vec<(SocketAddr, SpkiPin)>,
    now: usize,
    /// Until when each node is passed over.
    down_until: Vec<Option<Instant>>,
}

impl Nodes {
    /// `first`, then `others`.
    pub(super) fn new(first: (SocketAddr, SpkiPin), others: &[(SocketAddr, SpkiPin)]) -> Self {
        let mut nodes = vec![first];
        nodes.extend(others.iter().copied());
        Self {
            down_until: vec![None; nodes.len()],
            nodes,
            now: 0,
        }
    }

    /// Whether there is more than one node.
    pub(super) fn several(&self) -> bool {
        self.nodes.len() > 1
    }

    /// How many nodes there are.
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Moves on to the next node in order, passed over or not: a write that a standby
    /// refused must find the writer, which may be the node whose connection failed.
    pub(super) fn step(&mut self) {
        self.now = (self.now + 1) % self.nodes.len();
    }

    /// Goes back to the node given first, unless it is tried now or passed over at `at`.
    /// Returns whether it moved.
    pub(super) fn home(&mut self, at: Instant) -> bool {
        if self.now == 0 || self.down_until[0].is_some_and(|t| t > at) {
            return false;
        }
        self.now = 0;
        true
    }

    /// The node tried now.
    pub(super) fn current(&self) -> (SocketAddr, SpkiPin) {
        self.nodes[self.now]
    }

    /// The node tried now answered a connection.
    pub(super) fn connected(&mut self) {
        self.down_until[self.now] = None;
    }

    /// The connection to the node tried now failed at `at`: it is passed over for
    /// [`NODE_DOWN_FOR`], and the next node is tried.
    pub(super) fn connect_failed(&mut self, at: Instant) {
        self.down_until[self.now] = Some(at + NODE_DOWN_FOR);
        self.next(at);
    }

    /// Moves on to another node (the one tried now refused, or failed): the next one not
    /// passed over, or, when every other node is, the one passed over for the shortest
    /// time left. Returns whether it moved.
    pub(super) fn next(&mut self, at: Instant) -> bool {
        let n = self.nodes.len();
        let others = (1..n).map(|k| (self.now + k) % n);
        let next = others
            .clone()
            .find(|&i| self.down_until[i].is_none_or(|t| t <= at))
            .or_else(|| others.min_by_key(|&i| self.down_until[i]));
        match next {
            Some(i) => {
                self.now = i;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> (SocketAddr, SpkiPin) {
        (([127, 0, 0, 1], port).into(), SpkiPin([port as u8; 32]))
    }

    fn port(n: &Nodes) -> u16 {
        n.current().0.port()
    }

    #[test]
    fn home_is_the_first_node_unless_it_failed_lately() {
        let t = Instant::now();
        let mut n = Nodes::new(node(1), &[node(2), node(3)]);
        assert!(!n.home(t), "at home already");
        n.next(t);
        assert!(n.home(t));
        assert_eq!(port(&n), 1);
        n.connect_failed(t);
        assert!(!n.home(t), "home failed a moment ago");
        assert_eq!(port(&n), 2);
        assert!(n.home(t + NODE_DOWN_FOR));
        assert_eq!(port(&n), 1);
    }

    #[test]
    fn a_step_visits_every_node_once_round() {
        let mut n = Nodes::new(node(1), &[node(2), node(3)]);
        n.connect_failed(Instant::now());
        let mut seen = vec![port(&n)];
        for _ in 0..2 {
            n.step();
            seen.push(port(&n));
        }
        seen.sort();
        assert_eq!(seen, [1, 2, 3], "the failed node too");
    }

    #[test]
    fn one_node_stays() {
        let mut n = Nodes::new(node(1), &[]);
        assert!(!n.several());
        assert!(!n.next(Instant::now()));
        assert_eq!(port(&n), 1);
    }

    #[test]
    fn a_refusing_node_gives_way_to_the_next_and_a_failed_one_is_passed_over() {
        let t = Instant::now();
        let mut n = Nodes::new(node(1), &[node(2), node(3)]);
        // The writer (1) fails; 2 refuses (a standby): 3 next, then 2 again, not 1.
        n.connect_failed(t);
        assert_eq!(port(&n), 2);
        n.next(t);
        assert_eq!(port(&n), 3);
        n.next(t);
        assert_eq!(port(&n), 2);
        // Once the pause is over, 1 is tried again.
        n.next(t + NODE_DOWN_FOR);
        assert_eq!(port(&n), 3);
        n.next(t + NODE_DOWN_FOR);
        assert_eq!(port(&n), 1);
    }

    #[test]
    fn a_standby_is_left_even_when_every_other_node_failed_lately() {
        // 1 died, 2 failed while restarting its listener as the new writer, 3 is a
        // standby: from 3 the keeper goes to 2, which failed longest ago (not back to 3).
        let t = Instant::now();
        let mut n = Nodes::new(node(1), &[node(2), node(3)]);
        n.connect_failed(t + Duration::from_secs(1));
        assert_eq!(port(&n), 2);
        n.connect_failed(t);
        assert_eq!(port(&n), 3);
        // 1 failed again meanwhile.
        n.now = 0;
        n.connect_failed(t + Duration::from_secs(2));
        assert_eq!(port(&n), 3, "the standby, the only node up");
        assert!(n.next(t + Duration::from_secs(2)));
        assert_eq!(port(&n), 2, "the node that failed longest ago");
        n.connected();
        assert_eq!(n.down_until[1], None);
    }
}
