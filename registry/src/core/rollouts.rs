//! Staged rollouts: which clients see a staged version, when the next wave opens, and when
//! failures halt it. Times are wall-clock milliseconds the caller passes in, so a rollout
//! behaves the same after a restart (a wave's delay counts from when it opened, stored).
//!
//! A client's wave is the first whose selector takes it: a group by one of its attributes
//! or shared facts, or a share by its place, a hash of the rollout and its key spread
//! evenly over 0..1,000,000 (share waves are cumulative: `5%,25%` takes a quarter in all).
//! Only registered clients are in waves (an unregistered key cannot report, so it could
//! neither count towards a halt nor be asked to undo). A client sees the version while the
//! rollout runs or is paused and its wave has opened; once the rollout completes, every
//! client does, anonymous ones included.
//!
//! The version halts when, with at least `min_reports` reports in, more than
//! `max_failure_ppm` of them are failures (paused or not); the next wave opens when the
//! open one's delay has passed and it has `min_reports` reports (or as many as it has
//! clients); the last wave, always `100%`, completes the rollout when its delay has
//! passed.

use crate::core::clients::{ClientBook, ClientRecord};
use crate::core::lease_table::LeaseMap;
use courier_protocol::{
    LeaseId, RolloutMark, RolloutRecord, RolloutSpec, RolloutState, RolloutStatus, VendorKey,
    WaveSelector, WaveStatus,
};
use std::collections::{BTreeMap, HashMap};

/// A client as a rollout's waves look at it.
#[derive(Debug, Clone, Copy)]
pub struct ClientView<'a> {
    /// Its key.
    pub key: &'a VendorKey,
    /// Its record, if it is registered (a group selects only registered clients).
    pub record: Option<&'a ClientRecord>,
}

impl<'a> ClientView<'a> {
    /// The view of `key` in `clients`.
    pub fn of(key: &'a VendorKey, clients: &'a ClientBook) -> Self {
        Self {
            key,
            record: clients.get(key),
        }
    }

    fn has(&self, key: &str, value: &str) -> bool {
        self.record.is_some_and(|r| {
            r.attributes.get(key).is_some_and(|v| v == value)
                || r.system
                    .as_ref()
                    .and_then(|s| s.facts.get(key))
                    .is_some_and(|v| v == value)
        })
    }
}

/// A client's place in rollout `id`: uniform over 0..1,000,000, fixed for the rollout.
pub fn place(id: u64, key: &VendorKey) -> u32 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&key.0[..8]);
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&key.0[24..]);
    let x = mix(u64::from_le_bytes(head) ^ mix(id) ^ mix(u64::from_le_bytes(tail)));
    (x % 1_000_000) as u32
}

/// SplitMix64's finalizer: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The wave of rollout `record` that takes `client`, if any.
pub fn wave_of(record: &RolloutRecord, client: ClientView<'_>) -> Option<usize> {
    client.record?;
    let mut placed = None;
    record.spec.waves.iter().position(|w| match w {
        WaveSelector::Share { ppm } => {
            *placed.get_or_insert_with(|| place(record.id, client.key)) < *ppm
        }
        WaveSelector::Group { key, value } => client.has(key, value),
    })
}

/// One rollout and what its clients did.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// The stored record.
    pub record: RolloutRecord,
    /// Each client's mark.
    pub marks: HashMap<VendorKey, RolloutMark>,
}

impl Rollout {
    /// Whether `client` (`None`: anonymous) sees the version now.
    pub fn sees(&self, client: Option<ClientView<'_>>) -> bool {
        match self.record.state {
            RolloutState::Running | RolloutState::Paused => {
                client.is_some_and(|c| self.in_opened_wave(c))
            }
            RolloutState::Complete => true,
            RolloutState::Halted { .. } | RolloutState::Aborted => false,
        }
    }

    /// Whether `client` is in a wave that opened (whatever the rollout's state now).
    pub fn in_opened_wave(&self, client: ClientView<'_>) -> bool {
        wave_of(&self.record, client).is_some_and(|w| w < self.record.opened_at_ms.len())
    }

    /// When the next wave may open (or the rollout complete), if it is running.
    pub fn next_at_ms(&self) -> Option<u64> {
        let r = &self.record;
        if r.state != RolloutState::Running {
            return None;
        }
        let opened = r.opened_at_ms.last().copied().unwrap_or(r.started_at_ms);
        Some(
            opened
                .max(r.resumed_at_ms.unwrap_or(0))
                .saturating_add(r.spec.delay_ms),
        )
    }

    /// Successes and failures reported so far.
    fn reports(&self) -> (u64, u64) {
        let (mut ok, mut failed) = (0, 0);
        for m in self.marks.values() {
            if m.failed() {
                failed += 1;
            } else {
                ok += 1;
            }
        }
        (ok, failed)
    }

    /// What is due at `now_ms`, if anything.
    fn due(&self, now_ms: u64, clients: &ClientBook) -> Option<Step> {
        let id = self.record.id;
        let spec = &self.record.spec;
        if self.record.state.is_over() {
            return None;
        }
        let (ok, failed) = self.reports();
        let reported = ok + failed;
        // Enough reports to judge: `min_reports`, or one from each client of the open waves
        // if they have fewer (a small canary group that all failed halts).
        let floor = u64::from(spec.min_reports.max(1));
        let enough = reported >= floor
            || (reported > 0 && reported >= self.opened_members(clients).min(floor));
        if enough && failed.saturating_mul(1_000_000) > u64::from(spec.max_failure_ppm) * reported {
            return Some(Step::Halt {
                id,
                reason: format!(
                    "{failed} of {reported} reports failed, more than {}",
                    match spec.max_failure_ppm {
                        0 => "0%".to_string(),
                        ppm => WaveSelector::Share { ppm }.to_string(),
                    }
                ),
            });
        }
        if now_ms < self.next_at_ms()? {
            return None;
        }
        // The open wave needs its reports: `min_reports`, or one from each of its clients
        // if it has fewer.
        let open = self.record.opened_at_ms.len().checked_sub(1)?;
        let mut members = 0u64;
        let mut reports = 0u64;
        for (key, record) in clients.iter() {
            let view = ClientView {
                key,
                record: Some(record),
            };
            if wave_of(&self.record, view) == Some(open) {
                members += 1;
                if matches!(
                    self.marks.get(key),
                    Some(RolloutMark::Succeeded | RolloutMark::Failed)
                ) {
                    reports += 1;
                }
            }
        }
        if reports < u64::from(spec.min_reports).min(members) {
            return None;
        }
        Some(if open + 1 < spec.waves.len() {
            Step::Open { id, wave: open + 1 }
        } else {
            Step::Complete { id }
        })
    }

    /// Registered clients in the waves opened so far.
    fn opened_members(&self, clients: &ClientBook) -> u64 {
        clients
            .iter()
            .filter(|(key, record)| {
                self.in_opened_wave(ClientView {
                    key,
                    record: Some(record),
                })
            })
            .count() as u64
    }

    /// The rollout for operators.
    pub fn status(&self, clients: &ClientBook) -> RolloutStatus {
        let r = &self.record;
        let mut waves: Vec<WaveStatus> = r
            .spec
            .waves
            .iter()
            .enumerate()
            .map(|(i, w)| WaveStatus {
                selector: w.clone(),
                opened_at_ms: r.opened_at_ms.get(i).copied(),
                clients: 0,
                succeeded: 0,
                failed: 0,
                undone: 0,
                undo_failed: 0,
            })
            .collect();
        for (key, record) in clients.iter() {
            let view = ClientView {
                key,
                record: Some(record),
            };
            let Some(w) = wave_of(r, view).and_then(|w| waves.get_mut(w)) else {
                continue;
            };
            w.clients += 1;
            let Some(mark) = self.marks.get(key) else {
                continue;
            };
            if mark.failed() {
                w.failed += 1;
            } else {
                w.succeeded += 1;
            }
            match mark {
                RolloutMark::Undone { .. } => w.undone += 1,
                RolloutMark::UndoFailed { .. } => w.undo_failed += 1,
                RolloutMark::Succeeded | RolloutMark::Failed => {}
            }
        }
        RolloutStatus {
            id: r.id,
            spec: r.spec.clone(),
            lease: r.lease,
            vendor: r.vendor,
            state: r.state.clone(),
            started_at_ms: r.started_at_ms,
            next_at_ms: self.next_at_ms(),
            waves,
        }
    }

    /// Whether `client` is to undo the version: the rollout was halted or aborted, and the
    /// client reported running the version and has not undone it (with no undo call, the
    /// client is told all the same: it goes back to the version before).
    pub fn owes_undo(&self, client: &VendorKey) -> bool {
        matches!(
            self.record.state,
            RolloutState::Halted { .. } | RolloutState::Aborted
        ) && matches!(
            self.marks.get(client),
            Some(RolloutMark::Succeeded | RolloutMark::Failed)
        )
    }
}

/// What a rollout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Opens wave `wave` (counted from 0).
    Open {
        /// The rollout.
        id: u64,
        /// The wave.
        wave: usize,
    },
    /// Halts: too many failures.
    Halt {
        /// The rollout.
        id: u64,
        /// The failures.
        reason: String,
    },
    /// Completes: every client sees the version.
    Complete {
        /// The rollout.
        id: u64,
    },
}

/// Every rollout, and the staged registrations they open.
#[derive(Debug, Default)]
pub struct RolloutBook {
    rollouts: BTreeMap<u64, Rollout>,
    /// The latest rollout of each staged lease (it alone decides who sees the lease).
    by_lease: LeaseMap<u64>,
}

impl RolloutBook {
    /// Puts a (committed) record in place, keeping its marks.
    pub fn put(&mut self, record: RolloutRecord) {
        let latest = self.by_lease.entry(record.lease).or_insert(record.id);
        *latest = (*latest).max(record.id);
        match self.rollouts.get_mut(&record.id) {
            Some(r) => r.record = record,
            None => {
                self.rollouts.insert(
                    record.id,
                    Rollout {
                        record,
                        marks: HashMap::new(),
                    },
                );
            }
        }
    }

    /// Notes a (committed) mark.
    pub fn mark(&mut self, id: u64, client: VendorKey, mark: RolloutMark) {
        if let Some(r) = self.rollouts.get_mut(&id) {
            r.marks.insert(client, mark);
        }
    }

    /// The number the next rollout gets.
    pub fn next_id(&self) -> u64 {
        self.rollouts.keys().next_back().map_or(1, |id| id + 1)
    }

    /// Rollout `id`.
    pub fn get(&self, id: u64) -> Option<&Rollout> {
        self.rollouts.get(&id)
    }

    /// The rollout of `name` that is not over, if any.
    pub fn active(&self, name: &str) -> Option<&Rollout> {
        self.under_way().find(|r| r.record.spec.name == name)
    }

    /// The rollouts running or paused, newest first.
    pub fn under_way(&self) -> impl Iterator<Item = &Rollout> {
        self.iter().filter(|r| !r.record.state.is_over())
    }

    /// The latest rollout of the staged `lease`, if any.
    pub fn of_lease(&self, lease: &LeaseId) -> Option<&Rollout> {
        self.rollouts.get(self.by_lease.get(lease)?)
    }

    /// Whether `client` (`None`: anonymous) sees the staged registration under `lease`.
    pub fn sees(&self, lease: &LeaseId, client: Option<ClientView<'_>>) -> bool {
        self.of_lease(lease).is_some_and(|r| r.sees(client))
    }

    /// Whether `client` owes the undo of rollout `id`: it halted or was aborted, the
    /// client reported running its version, has not undone it, and no later rollout of the
    /// same registration took over.
    pub fn owes_undo(&self, id: u64, client: &VendorKey) -> bool {
        self.rollouts
            .get(&id)
            .is_some_and(|r| r.owes_undo(client) && self.by_lease.get(&r.record.lease) == Some(&id))
    }

    /// What is due at `now_ms`: at most one step per rollout under way.
    pub fn due(&self, now_ms: u64, clients: &ClientBook) -> Vec<Step> {
        self.under_way()
            .filter_map(|r| r.due(now_ms, clients))
            .collect()
    }

    /// Every rollout, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &Rollout> {
        self.rollouts.values().rev()
    }

    /// Whether any staged registration has a rollout (lookups must ask who sees it).
    pub fn any_gates(&self) -> bool {
        !self.by_lease.is_empty()
    }

    /// Whether any rollout is running or paused (the timer has something to do).
    pub fn any_under_way(&self) -> bool {
        self.under_way().next().is_some()
    }
}

/// Why a rollout spec is refused.
pub fn check_spec(spec: &RolloutSpec) -> Result<(), String> {
    use courier_protocol::{MAX_WAVE_DELAY_MS, MAX_WAVES};
    if spec.waves.is_empty() || spec.waves.len() > MAX_WAVES {
        return Err(format!("a rollout has 1 to {MAX_WAVES} waves"));
    }
    if spec.waves.last() != Some(&WaveSelector::Share { ppm: 1_000_000 }) {
        return Err("the last wave must be 100%".into());
    }
    let mut share = 0;
    for w in &spec.waves {
        match w {
            WaveSelector::Share { ppm } if *ppm <= share => {
                return Err(format!("share waves must grow: {w} after {share} ppm"));
            }
            WaveSelector::Share { ppm } if *ppm > 1_000_000 => {
                return Err(format!("wave {w} is over 100%"));
            }
            WaveSelector::Share { ppm } => share = *ppm,
            WaveSelector::Group { key, value } if key.is_empty() || value.is_empty() => {
                return Err("a group wave needs a key and a value".into());
            }
            WaveSelector::Group { .. } => {}
        }
    }
    if spec.delay_ms > MAX_WAVE_DELAY_MS {
        return Err("the delay between waves is at most 30 days".into());
    }
    if spec.max_failure_ppm > 1_000_000 {
        return Err("the failure threshold is at most 100%".into());
    }
    if semver::Version::parse(&spec.version).is_err() {
        return Err(format!("bad version {:?}", spec.version));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
