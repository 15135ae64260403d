//! `courier leases`: the operator's lease view, filtered and sorted; `--watch` redraws it
//! in place in a terminal and prints each registry event as a line when piped.

use crate::cli::{LeaseSort, LeasesArgs};
use crate::output::{millis, short, table};
use anyhow::Context;
use courier_protocol::{ClusterNodes, Event, LeaseFilter, LeaseInfo, Mirrored, VendorKey};
use courier_transport::RegistryClient;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The leases asked for: the registry filters by interface, whole vendor key and name
/// prefix; a vendor given as the start of a key (as the table shows it) is matched here.
struct Selection {
    filter: LeaseFilter,
    vendor_prefix: Option<String>,
    sort: LeaseSort,
}

impl Selection {
    fn of(args: &LeasesArgs) -> anyhow::Result<Self> {
        let (vendor, vendor_prefix) = match &args.vendor {
            None => (None, None),
            Some(v) => match v.parse::<VendorKey>() {
                Ok(key) => (Some(key), None),
                Err(_) if !v.is_empty() => (None, Some(v.clone())),
                Err(e) => return Err(e).context("--vendor"),
            },
        };
        if let Some(i) = &args.interface {
            let bare = i.split_once('@').map_or(i.as_str(), |(n, _)| n);
            bare.parse::<courier_protocol::InterfaceName>()
                .context("--interface")?;
        }
        Ok(Self {
            filter: LeaseFilter {
                interface: args.interface.clone(),
                vendor,
                name_prefix: args.name.clone(),
            },
            vendor_prefix,
            sort: args.sort,
        })
    }

    /// The rows, and the node that holds them in a cluster (the writer).
    async fn read(&self, registry: &RegistryClient) -> anyhow::Result<(Vec<LeaseInfo>, Holder)> {
        let table = registry.lease_table(&self.filter).await?;
        let mut leases = table.leases;
        if let Some(ms) = table.store_unwritable_ms {
            eprintln!(
                "stale: the registry's store has refused writes for {:.1}s (a cluster without \
                 quorum?); these leases are served from memory",
                ms as f64 / 1000.0
            );
        }
        if let Some(prefix) = &self.vendor_prefix {
            leases.retain(|l| l.vendor.to_string().starts_with(prefix.as_str()));
        }
        sort(&mut leases, self.sort, wall_now());
        Ok((leases, Holder::of(table.cluster)))
    }
}

/// In a cluster, which node answered and which writes (it holds every lease not renewed
/// at another node).
#[derive(Default)]
struct Holder(Option<ClusterNodes>);

impl Holder {
    fn of(cluster: Option<ClusterNodes>) -> Self {
        Self(cluster)
    }

    /// Whether the registry is a cluster's node.
    fn clustered(&self) -> bool {
        self.0.is_some()
    }

    /// The name of the node that holds `l` (the writer unless the row names another; "-"
    /// while none is elected), in a cluster.
    fn node<'a>(&'a self, l: &'a LeaseInfo) -> Option<&'a str> {
        let c = self.0.as_ref()?;
        Some(
            l.holder
                .as_deref()
                .unwrap_or(c.writer.as_deref().unwrap_or("-")),
        )
    }

    /// One line saying which node answered and which writes.
    fn line(&self) -> Option<String> {
        let c = self.0.as_ref()?;
        Some(match c.writer.as_deref() {
            Some(w) if w == c.answered_by => {
                format!("node {w} (the cluster's writer) answered; NODE is where each lease renews")
            }
            Some(w) => format!(
                "node {} (a standby) answered; the cluster's writer is {w}; NODE is where each \
                 lease renews",
                c.answered_by
            ),
            None => format!(
                "node {} (a standby) answered; the cluster has no writer elected now",
                c.answered_by
            ),
        })
    }
}

fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Orders the rows; ties keep the registry's order (service name, then lease).
fn sort(leases: &mut [LeaseInfo], by: LeaseSort, now: u64) {
    match by {
        LeaseSort::Name => {}
        LeaseSort::Left => leases.sort_by_key(|l| l.remaining_ms),
        LeaseSort::Renewals => leases.sort_by_key(|l| std::cmp::Reverse(l.renewals)),
        LeaseSort::Clients => leases.sort_by_key(|l| std::cmp::Reverse(l.clients_served)),
        LeaseSort::LastRenewal => leases.sort_by_key(|l| l.last_renewal_ms.min(now)),
        LeaseSort::Vendor => leases.sort_by_key(|l| l.vendor.to_string()),
    }
}

fn lease_json(l: &LeaseInfo, node: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "node": node,
        "lease": l.lease.to_string(),
        "name": l.name,
        "version": l.version,
        "vendor": l.vendor.to_string(),
        "interfaces": l.interfaces,
        "component": l.component.to_string(),
        "endpoints": l.endpoints,
        "remaining_ms": l.remaining_ms,
        "ttl_ms": l.ttl_ms,
        "renewals": l.renewals,
        "in_grace": l.in_grace,
        "mirrored": l.mirrored.map(|m| match m {
            Mirrored::Live => "live",
            Mirrored::PastEnd => "past_end",
        }),
        "last_renewal_ms": l.last_renewal_ms,
        "clients_served": l.clients_served,
    })
}

fn event_json(e: &Event) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq,
        "kind": e.kind.to_string(),
        "lease": e.lease.to_string(),
        "name": e.name,
        "interfaces": e.interfaces,
        "at_ms": e.at_ms,
    })
}

/// The first endpoint, and how many more.
fn endpoint(l: &LeaseInfo) -> String {
    match l.endpoints.as_slice() {
        [] => "-".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

/// The lease table as text, `now` being the wall clock in ms; in a cluster, a NODE column
/// names the node holding each lease.
fn render(leases: &[LeaseInfo], now: u64, holder: &Holder) -> String {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            let left = match (l.mirrored, l.in_grace) {
                (Some(Mirrored::PastEnd), _) => "past end (cut off)".to_string(),
                (Some(Mirrored::Live), _) => format!("{} (mirrored)", millis(l.remaining_ms)),
                (None, true) => format!("{} (grace)", millis(l.remaining_ms)),
                (None, false) => millis(l.remaining_ms),
            };
            let last = if l.renewals == 0 {
                "-".into()
            } else {
                format!("{} ago", millis(now.saturating_sub(l.last_renewal_ms)))
            };
            let mut row = vec![
                l.name.clone(),
                l.version.clone(),
                short(&l.vendor.to_string(), 16),
                endpoint(l),
                millis(l.ttl_ms),
                left,
                l.renewals.to_string(),
                last,
                l.clients_served.to_string(),
                l.lease.to_string(),
            ];
            if let Some(node) = holder.node(l) {
                row.push(node.to_string());
            }
            row
        })
        .collect();
    let mut header = vec![
        "SERVICE",
        "VERSION",
        "VENDOR",
        "ENDPOINT",
        "GRANTED",
        "LEFT",
        "RENEWALS",
        "LAST RENEWAL",
        "CLIENTS",
        "LEASE",
    ];
    if holder.clustered() {
        header.push("NODE");
    }
    table(&header, &rows)
}

pub async fn run(args: LeasesArgs) -> anyhow::Result<()> {
    let selection = Selection::of(&args)?;
    let registry = args.registry.connect("courier-cli/leases").await?;
    if args.watch {
        let result = if std::io::stdout().is_terminal() && !args.json {
            top(&registry, &selection, &args).await
        } else {
            lines(&registry, &args).await
        };
        registry.close();
        return result;
    }
    let (leases, holder) = selection.read(&registry).await?;
    registry.close();
    if let Some(line) = holder.line() {
        eprintln!("{line}");
    }
    if args.json {
        let rows: Vec<_> = leases
            .iter()
            .map(|l| lease_json(l, holder.node(l)))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if leases.is_empty() {
        println!("no live leases");
    } else {
        print!("{}", render(&leases, wall_now(), &holder));
    }
    Ok(())
}

/// Redraws the table in place: at once when an event arrives, else every `--every`. Rows
/// past the terminal's height are summarised in one line.
async fn top(
    registry: &RegistryClient,
    selection: &Selection,
    args: &LeasesArgs,
) -> anyhow::Result<()> {
    let term = console::Term::stdout();
    let mut events = registry.subscribe(args.interface.clone(), u64::MAX).await?;
    let mut last_event: Option<String> = None;
    let every = args.every.max(Duration::from_millis(100));
    term.hide_cursor().ok();
    let result = async {
        loop {
            let (leases, holder) = selection.read(registry).await?;
            let (height, _) = term.size();
            let mut body = render(&leases, wall_now(), &holder);
            let room = usize::from(height).saturating_sub(4).max(1);
            let lines: Vec<&str> = body.lines().collect();
            if lines.len() > room + 1 {
                let hidden = lines.len() - 1 - room;
                body = lines[..=room].join("\n")
                    + &format!("\n… {hidden} more (narrow with --name, --vendor or --interface)\n");
            }
            term.clear_screen().ok();
            println!(
                "courier leases at {}: {} live{}  (Ctrl-C to stop)",
                args.registry.addr,
                leases.len(),
                last_event
                    .as_deref()
                    .map_or(String::new(), |e| format!("; last event: {e}"))
            );
            println!();
            print!("{body}");
            tokio::select! {
                batch = events.next() => {
                    let Some(batch) = batch? else {
                        anyhow::bail!("the registry closed the event stream");
                    };
                    if let Some(e) = batch.events.last() {
                        last_event = Some(format!("#{} {} {}", e.seq, e.kind, e.name));
                    }
                }
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    .await;
    term.show_cursor().ok();
    result
}

/// Prints each registry event as a line (JSON with --json), for a pipe. With other nodes
/// of a cluster given (`--other-node`), a stream that ends (its node stopped, or was lost)
/// goes on at another node from the number after the last event printed: every node
/// numbers the cluster's events alike, so none is lost or printed twice (those the other
/// node no longer keeps are reported missed).
async fn lines(first: &RegistryClient, args: &LeasesArgs) -> anyhow::Result<()> {
    // Without --from, start after the events already numbered: where the feed goes on
    // from now (as a catalog page says), so that a stream that moves to another node before
    // printing anything still goes on from there.
    let mut from = match args.from {
        Some(from) => from,
        None => first.catalog_page(None, 1).await?.seq,
    };
    let mut moved: Option<RegistryClient> = None;
    loop {
        let registry = moved.as_ref().unwrap_or(first);
        let probe = !args.registry.other_nodes.is_empty();
        let ended = tokio::select! {
            e = print_stream(registry, args, &mut from, probe) => e,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        if args.registry.other_nodes.is_empty() {
            return Err(ended);
        }
        eprintln!("the event stream ended ({ended:#}): going on at another node");
        if let Some(old) = moved.take() {
            old.close();
        }
        moved = Some(reconnect(&args.registry).await?);
    }
}

/// Prints what one subscription streams, keeping `from` one past the last event printed;
/// returns why it ended. With `probe` (other nodes to go to), a node that stays quiet is
/// asked whether it still answers.
async fn print_stream(
    registry: &RegistryClient,
    args: &LeasesArgs,
    from: &mut u64,
    probe: bool,
) -> anyhow::Error {
    let mut stream = match registry.subscribe(args.interface.clone(), *from).await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    loop {
        let wait = if probe { PROBE_AFTER } else { Duration::MAX };
        let next = match tokio::time::timeout(wait, stream.next()).await {
            Ok(next) => next,
            // Quiet for a while: a node killed outright says nothing, and QUIC would notice
            // only at its idle timeout (30 s); a request it cannot answer in time says so.
            Err(_) => {
                match tokio::time::timeout(PROBE_TIMEOUT, registry.key_statements(vec![])).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => return e.into(),
                    Err(_) => {
                        return anyhow::anyhow!("the node did not answer within {PROBE_TIMEOUT:?}");
                    }
                }
            }
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => return anyhow::anyhow!("the registry closed the event stream"),
            Err(e) => return e.into(),
        };
        crate::output::print_missed(batch.missed, args.json, "events");
        // A node behind the one before may send again what was printed: not twice.
        for e in batch.events.iter().filter(|e| e.seq >= *from) {
            if args.json {
                println!("{}", event_json(e));
            } else {
                println!(
                    "#{:<6} {:<10} {:<20} {}  lease {}",
                    e.seq,
                    e.kind.to_string(),
                    e.name,
                    e.interfaces.join(","),
                    e.lease
                );
            }
        }
        if let Some(e) = batch.events.last() {
            *from = (*from).max(e.seq + 1);
        }
    }
}

/// A connection to any node of the cluster, tried for a while (a node may be between
/// standby and writer, or the cluster electing one).
async fn reconnect(registry: &crate::connect::RegistryArgs) -> anyhow::Result<RegistryClient> {
    let mut last = None;
    for _ in 0..RECONNECT_TRIES {
        match registry.connect("courier-cli/leases").await {
            Ok(client) => return Ok(client),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node of the registry answers")))
}

/// Rounds of trying every node before a watch gives up.
const RECONNECT_TRIES: u32 = 20;

/// How long a watch waits for events before it checks that its node still answers.
const PROBE_AFTER: Duration = Duration::from_secs(3);

/// How long that check may take before the node counts as gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use courier_protocol::{ContentHash, LeaseId, SigningKey};

    fn lease(name: &str, left: u64, renewals: u64, clients: u64, last: u64) -> LeaseInfo {
        LeaseInfo {
            lease: LeaseId([name.len() as u8; 16]),
            name: name.into(),
            version: "1.0.0".into(),
            vendor: VendorKey::of(&SigningKey::from_bytes(&[1; 32])),
            interfaces: vec!["courier:echo/echo@0.1.0".into()],
            component: ContentHash([0; 32]),
            endpoints: vec!["127.0.0.1:7901".into(), "[::1]:7901".into()],
            remaining_ms: left,
            ttl_ms: 30_000,
            renewals,
            in_grace: false,
            mirrored: None,
            last_renewal_ms: last,
            clients_served: clients,
            holder: None,
        }
    }

    #[test]
    fn rows_sort_by_the_column_asked_for() {
        let all = || {
            vec![
                lease("a", 9_000, 1, 5, 1_000),
                lease("bb", 1_000, 7, 0, 3_000),
                lease("ccc", 5_000, 3, 2, 2_000),
            ]
        };
        let names = |by| {
            let mut l = all();
            sort(&mut l, by, 10_000);
            l.into_iter().map(|l| l.name).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(names(LeaseSort::Name), "a bb ccc");
        assert_eq!(names(LeaseSort::Left), "bb ccc a");
        assert_eq!(names(LeaseSort::Renewals), "bb ccc a");
        assert_eq!(names(LeaseSort::Clients), "a ccc bb");
        assert_eq!(names(LeaseSort::LastRenewal), "a ccc bb");
    }

    #[test]
    fn the_table_shows_endpoint_last_renewal_and_clients() {
        let text = render(
            &[lease("acme/echo", 4_000, 2, 3, 8_500)],
            10_000,
            &Holder::default(),
        );
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains("127.0.0.1:7901 +1"), "{row}");
        assert!(row.contains("1.5s ago"), "{row}");
        assert!(row.contains("30.0s"), "{row}");
        assert!(text.lines().next().unwrap().contains("LAST RENEWAL"));
        assert!(
            !text.contains("NODE"),
            "a single registry has no node column"
        );
    }

    #[test]
    fn in_a_cluster_the_table_names_the_node_holding_each_lease() {
        let holder = Holder::of(Some(ClusterNodes {
            answered_by: "n2".into(),
            writer: Some("n3".into()),
        }));
        let text = render(&[lease("acme/echo", 4_000, 2, 3, 8_500)], 10_000, &holder);
        assert!(
            text.lines().next().unwrap().trim_end().ends_with("NODE"),
            "{text}"
        );
        assert!(
            text.lines().nth(1).unwrap().trim_end().ends_with("n3"),
            "the writer, when the row names no other node: {text}"
        );
        let mut renewed_at_n1 = lease("acme/other", 4_000, 2, 3, 8_500);
        renewed_at_n1.holder = Some("n1".into());
        let text = render(&[renewed_at_n1], 10_000, &holder);
        assert!(
            text.lines().nth(1).unwrap().trim_end().ends_with("n1"),
            "{text}"
        );
        assert_eq!(
            holder.line().unwrap(),
            "node n2 (a standby) answered; the cluster's writer is n3; NODE is where each lease \
             renews"
        );
        let none = Holder::of(Some(ClusterNodes {
            answered_by: "n2".into(),
            writer: None,
        }));
        assert!(none.line().unwrap().contains("no writer elected"));
    }
}
