//! Fuzz target `registry_state`: arbitrary sequences of the registry's operations
//! (register, renew, cancel, expire, flush, revoke, grant, time passing, commits that fail,
//! and restarts from what was committed) on [`RegistryState`], against a plain model.
//!
//! Two models run beside the state machine:
//! - the registry as its rules say (leases and their deadlines, names and grants, revoked
//!   keys, how many events each change numbers);
//! - a disk: every batch the state machine asked to commit, applied literally, and nothing
//!   of a change whose commit failed. A restart rebuilds the state from that disk alone
//!   through [`Restorer`], and the model of the restart rule says what must come back.
//!
//! Oracle: after every step, each answer's kind, the live and collected leases, what a
//! lookup finds, the earliest deadline and the events numbered are the models'.

use arbitrary::{Arbitrary, Unstructured};
use courier_protocol::{
    AdminAction, Export, KeyStatement, LeaseId, Manifest, ServiceQuery, SignedKeyStatement,
    SignedManifest, SigningKey, SpkiPin, VendorKey,
};
use courier_registry::{
    AdminError, Batch, LeaseError, LeasePolicy, LeaseRow, Millis, PreparedQuery, RegisterError,
    RegistryState, Restorer, StateConfig, StoredLease, StoredMeta,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// Vendors, and service names, in play.
const VENDORS: u8 = 3;
const NAMES: u8 = 3;
/// The wall-clock time of the first start.
const WALL: u64 = 1_764_000_000_000;
const INTERFACE: &str = "fuzz:pkg/api@1.0.0";
/// How long after its last flush a flush commits with nothing else to write.
const STALE_MS: u64 = 5_000;

/// One step. Renewals and cancellations name a lease by its place among those granted, and
/// a vendor byte below [`OWNER`] means the lease's own vendor.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Time passes.
    Advance(u16),
    /// (vendor, name, ttl ms, the commit fails): a vendor registers a name.
    Register(u8, u8, u16, bool),
    /// (vendor, n, ttl ms): a vendor renews the nth lease ever granted.
    Renew(u8, u8, u16),
    /// (vendor, n, the commit fails): a vendor cancels the nth lease ever granted.
    Cancel(u8, u8, bool),
    /// Due leases are collected: all, or at most this many (one slice of a storm, as the
    /// registry's expiry takes them).
    Expire(Option<u8>),
    /// (the commit fails): renewals and expiries are written behind.
    Flush(bool),
    /// (vendor, by its own statement, the commit fails): a vendor's key is revoked, by
    /// itself or by the operator.
    Revoke(u8, bool, bool),
    /// (vendor, name): the operator lets a vendor use a name.
    Grant(u8, u8),
    /// (ms down): the process stops (what was not committed is lost) and starts again.
    Restart(u16),
    /// (n, the commit fails): an operator revokes the nth lease ever granted.
    RevokeLease(u8, bool),
    /// (vendor, name, ban or allow): an operator bans a vendor from a name, or lifts it.
    Ban(u8, u8, bool),
    /// (name, drain or undrain): an operator drains a service, or ends it.
    Drain(u8, bool),
}

/// A vendor byte below this stands for the lease's own vendor (most renewals and
/// cancellations come from their owner, as they do in life).
pub const OWNER: u8 = 192;

impl<'a> Arbitrary<'a> for Step {
    /// Weighted the way a registry is used: many renewals, few revocations.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=127)? {
            0..=23 => Step::Advance(u.int_in_range(0..=2_000)?),
            24..=27 => Step::Advance(u.arbitrary()?),
            28..=51 => Step::Register(
                u.arbitrary()?,
                u.arbitrary()?,
                u.arbitrary()?,
                u.ratio(1, 8)?,
            ),
            52..=87 => Step::Renew(u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
            88..=97 => Step::Cancel(u.arbitrary()?, u.arbitrary()?, u.ratio(1, 8)?),
            98..=105 => Step::Expire(if u.ratio(1, 2)? {
                Some(u.int_in_range(1..=4)?)
            } else {
                None
            }),
            106..=117 => Step::Flush(u.ratio(1, 8)?),
            118 => Step::Revoke(u.arbitrary()?, u.arbitrary()?, u.ratio(1, 8)?),
            119..=120 => Step::Grant(u.arbitrary()?, u.arbitrary()?),
            121 => Step::RevokeLease(u.arbitrary()?, u.ratio(1, 8)?),
            122 => Step::Ban(u.arbitrary()?, u.arbitrary()?, u.ratio(2, 3)?),
            123 => Step::Drain(u.arbitrary()?, u.ratio(1, 2)?),
            _ => Step::Restart(u.arbitrary()?),
        })
    }
}

/// A whole case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Shortest lease, in ms (at least 1).
    pub min_ttl: u8,
    /// Grace after a restart, in ms.
    pub grace: u16,
    /// What happens.
    pub steps: Vec<Step>,
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    check(&case_from(data));
}

/// The case bytes stand for: the policy, then steps until the bytes run out (so every
/// input, however short or long, is a sequence).
pub fn case_from(data: &[u8]) -> Case {
    let mut u = Unstructured::new(data);
    let min_ttl = u.arbitrary().unwrap_or(1);
    let grace = u.arbitrary().unwrap_or(0);
    let mut steps = Vec::new();
    while !u.is_empty() {
        match Step::arbitrary(&mut u) {
            Ok(step) => steps.push(step),
            Err(_) => break,
        }
    }
    Case {
        min_ttl,
        grace,
        steps,
    }
}

/// The signing keys and the signed manifest of every (vendor, name), made once.
struct Fixtures {
    keys: Vec<SigningKey>,
    manifests: BTreeMap<(u8, u8), (SignedManifest, Manifest)>,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let keys: Vec<SigningKey> = (0..VENDORS)
            .map(|v| SigningKey::from_bytes(&[v + 1; 32]))
            .collect();
        let mut manifests = BTreeMap::new();
        for (v, key) in keys.iter().enumerate() {
            for n in 0..NAMES {
                let m = Manifest {
                    name: format!("svc/{n}"),
                    version: "1.0.0".into(),
                    exports: vec![Export {
                        interface: INTERFACE.into(),
                        functions: vec!["call".into()],
                    }],
                    imports: vec![],
                    attributes: Default::default(),
                    endpoints: vec!["127.0.0.1:1".into()],
                    provider_pin: SpkiPin([1; 32]),
                    issued_at_ms: 0,
                    not_after_ms: u64::MAX / 2,
                    component_hash: courier_protocol::ContentHash([n; 32]),
                    component_size: 1,
                    vendor_key: VendorKey::of(key),
                };
                manifests.insert((v as u8, n), (SignedManifest::sign(&m, key), m));
            }
        }
        Fixtures { keys, manifests }
    })
}

fn vendor(v: u8) -> VendorKey {
    VendorKey::of(&fixtures().keys[usize::from(v % VENDORS)])
}

/// A lease as the model keeps it; `deadline` is wall-clock ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    name: u8,
    vendor: u8,
    deadline: u64,
    ttl: u64,
    renewals: u64,
    in_grace: bool,
}

/// The registry as its rules say.
#[derive(Debug, Default)]
struct Model {
    policy: Option<LeasePolicy>,
    /// Wall-clock ms now, and at the current start's monotonic 0.
    wall: u64,
    base: u64,
    /// Leases in the table: live, or dead and not yet collected.
    leases: BTreeMap<LeaseId, Lease>,
    owners: BTreeMap<u8, u8>,
    grants: BTreeSet<(u8, u8)>,
    /// Revoked vendors, and whether their own statement is known.
    revoked: BTreeMap<u8, bool>,
    /// Every lease ever granted, so steps can name them.
    granted: Vec<LeaseId>,
    next_id: u32,
    /// Leases an operator stopped, remembered until (wall ms).
    stopped: BTreeMap<LeaseId, u64>,
    /// (name, vendor) pairs banned.
    bans: BTreeSet<(u8, u8)>,
    /// Names being drained.
    drains: BTreeSet<u8>,
    /// The last audit number.
    audit: u64,
}

impl Model {
    fn policy(&self) -> LeasePolicy {
        self.policy.unwrap_or(LeasePolicy {
            min_ttl_ms: 1,
            max_ttl_ms: 60_000,
            grace_ms: 0,
        })
    }

    fn now(&self) -> Millis {
        Millis(self.wall - self.base)
    }

    fn live(&self, id: &LeaseId) -> Option<&Lease> {
        self.leases.get(id).filter(|l| l.deadline > self.wall)
    }

    fn may_use(&self, name: u8, v: u8) -> bool {
        self.owners.get(&name).is_none_or(|o| *o == v) || self.grants.contains(&(name, v))
    }

    /// The vendor a step's byte names for `id`: below [`OWNER`], the lease's own (if it is
    /// still held), otherwise one of all.
    fn acting(&self, v: u8, id: &LeaseId) -> u8 {
        match self.leases.get(id) {
            Some(l) if v < OWNER => l.vendor,
            _ => v % VENDORS,
        }
    }

    /// A lease for a step's byte: below [`OWNER`] one of those live now (if any), otherwise
    /// any ever granted, counting round.
    fn nth_granted(&self, n: u8) -> Option<LeaseId> {
        let live: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline > self.wall)
            .map(|(id, _)| *id)
            .collect();
        let from = if n < OWNER && !live.is_empty() {
            &live
        } else {
            &self.granted
        };
        (!from.is_empty()).then(|| from[usize::from(n) % from.len()])
    }

    fn fresh_id(&mut self) -> LeaseId {
        self.next_id += 1;
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&self.next_id.to_le_bytes());
        LeaseId(bytes)
    }
}

/// What was committed, applied literally.
#[derive(Debug, Default)]
struct Disk {
    registrations: BTreeMap<LeaseId, SignedManifest>,
    rows: BTreeMap<LeaseId, LeaseRow>,
    names: BTreeMap<String, VendorKey>,
    grants: BTreeSet<(String, VendorKey)>,
    revocations: BTreeMap<VendorKey, Option<SignedKeyStatement>>,
    bans: BTreeMap<(String, VendorKey), String>,
    drains: BTreeMap<String, String>,
    stopped: BTreeMap<LeaseId, (String, u64)>,
    audit: u64,
    seq_reserved: u64,
    last_alive_ms: u64,
}

impl Disk {
    fn commit(&mut self, batch: &Batch) {
        for (id, m) in &batch.registrations {
            self.registrations.insert(*id, m.clone());
        }
        for (id, row) in &batch.leases {
            self.rows.insert(*id, *row);
        }
        for (id, _) in &batch.delete {
            self.registrations.remove(id);
            self.rows.remove(id);
        }
        for (name, key) in &batch.names {
            self.names.entry(name.clone()).or_insert(*key);
        }
        for grant in &batch.grants {
            self.grants.insert(grant.clone());
        }
        for (key, s) in &batch.revocations {
            let slot = self.revocations.entry(*key).or_insert(None);
            if slot.is_none() {
                *slot = s.clone();
            }
        }
        assert!(batch.rotations.is_empty() && batch.transfers.is_empty());
        for (name, key, reason) in &batch.bans {
            self.bans.insert((name.clone(), *key), reason.clone());
        }
        for (name, key) in &batch.unbans {
            self.bans.remove(&(name.clone(), *key));
        }
        for (name, reason) in &batch.drains {
            self.drains.insert(name.clone(), reason.clone());
        }
        for name in &batch.undrains {
            self.drains.remove(name);
        }
        for (lease, reason, until) in &batch.lease_revocations {
            self.stopped.insert(*lease, (reason.clone(), *until));
        }
        for lease in &batch.forget_lease_revocations {
            self.stopped.remove(lease);
        }
        for entry in &batch.audit {
            assert_eq!(entry.seq, self.audit + 1, "audit numbers follow each other");
            self.audit = entry.seq;
        }
        if let Some(s) = batch.seq_reserved {
            assert!(s >= self.seq_reserved, "the reserved mark only rises");
            self.seq_reserved = s;
        }
        if let Some(t) = batch.last_alive_ms {
            self.last_alive_ms = t;
        }
    }

    fn meta(&self) -> StoredMeta {
        StoredMeta {
            registry_id: "fuzz".into(),
            seq_reserved: self.seq_reserved,
            last_alive_ms: self.last_alive_ms,
            history_seq: 0,
            names: self.names.iter().map(|(n, k)| (n.clone(), *k)).collect(),
            grants: self.grants.iter().cloned().collect(),
            rotations: Vec::new(),
            revocations: self
                .revocations
                .iter()
                .map(|(k, s)| (*k, s.clone()))
                .collect(),
            bans: self
                .bans
                .iter()
                .map(|((n, k), r)| (n.clone(), *k, r.clone()))
                .collect(),
            drains: self
                .drains
                .iter()
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect(),
            lease_revocations: self
                .stopped
                .iter()
                .map(|(l, (r, u))| (*l, r.clone(), *u))
                .collect(),
            audit_seq: self.audit,
            ..Default::default()
        }
    }
}

/// Commits `planned`'s batch to the disk and applies it, or (`fail`) abandons it.
macro_rules! commit {
    ($st:expr, $disk:expr, $now:expr, $planned:expr, $fail:expr, $reached:expr) => {{
        let planned = $planned;
        if $fail {
            $st.abandon(planned);
            $reached.failed += 1;
            None
        } else {
            $disk.commit(planned.batch());
            Some($st.apply($now, planned))
        }
    }};
}

/// Starts the state machine from `disk` at `model.wall`, checking the restart rule.
fn start(model: &mut Model, disk: &mut Disk) -> RegistryState {
    let config = StateConfig {
        policy: model.policy(),
        event_ring: 64,
        seq_block: 1024,
        mirror_grace_ms: 60_000,
    };
    let mut restorer =
        Restorer::new(config, model.wall, disk.meta()).expect("stored statements verify");
    for (id, manifest) in &disk.registrations {
        let row = disk.rows[id];
        restorer.restore(StoredLease {
            lease: *id,
            manifest: manifest.clone(),
            row,
        });
    }
    let (mut st, restart, _) = restorer.finish(Vec::new());
    // The rule, spelled out: what comes back of each committed lease.
    let grace = model.policy().grace_ms;
    let mut leases = BTreeMap::new();
    for (id, row) in &disk.rows {
        let m = disk.registrations[id]
            .peek()
            .expect("signed by the fixtures");
        let v = (0..VENDORS)
            .find(|v| vendor(*v) == m.vendor_key)
            .expect("a fixture vendor");
        if model.revoked.contains_key(&v) {
            continue;
        }
        let (deadline, in_grace) = if row.expires_at_ms > model.wall {
            let left = row.expires_at_ms - model.wall;
            if row.in_grace {
                (model.wall + left.min(grace), true)
            } else {
                (
                    model.wall + left.min(row.ttl_ms.clamp(1, u64::from(u32::MAX))),
                    false,
                )
            }
        } else if row.expires_at_ms >= disk.last_alive_ms {
            (model.wall + grace, true)
        } else {
            continue;
        };
        let name = m
            .name
            .trim_start_matches("svc/")
            .parse()
            .expect("a fixture name");
        let lease = Lease {
            name,
            vendor: v,
            deadline,
            ttl: row.ttl_ms,
            renewals: row.renewals,
            in_grace,
        };
        // One registration of a name per key: the one that runs longer (then the later id).
        let twin = leases
            .iter()
            .find(|(_, l): &(&LeaseId, &Lease)| l.name == name && l.vendor == v)
            .map(|(id, l)| (*id, l.deadline));
        match twin {
            Some((other, d)) if (d, other) > (deadline, *id) => continue,
            Some((other, _)) => {
                leases.remove(&other);
            }
            None => {}
        }
        leases.insert(*id, lease);
    }
    disk.commit(restart.batch());
    st.apply(Millis(0), restart);
    model.base = model.wall;
    model.stopped = disk.stopped.iter().map(|(l, (_, u))| (*l, *u)).collect();
    model.leases = leases;
    st
}

// After the macros, which it uses.
mod check;

pub use check::{Reached, check};
