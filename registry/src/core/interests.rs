//! Leased event registrations (Jini's remote events): templates that clients and operators
//! register interest in, each under a lease; which transitions of the event feed each one
//! is told of; and recommendations, new registrations that fit a client's system data.
//! Pure and in memory (the driver keeps the book under a lock of its own, apart from the
//! registry's state, so that matching never holds up renewals); a registry restart ends
//! them (their owners register again).

use crate::core::events::EventRecord;
use crate::core::lease_table::{LeasePolicy, Millis};
use crate::core::matcher::QueryError;
use courier_protocol::{
    AttributeConstraint, EventKind, Interest, InterestId, InterfaceName, Notification, Transition,
    VendorKey,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Most event registrations of one key.
pub const MAX_INTERESTS_PER_KEY: usize = 20_000;
/// Most event registrations in all.
pub const MAX_INTERESTS: usize = 100_000;

/// Why an event registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterestError {
    /// The template is malformed.
    #[error("{0}")]
    Template(#[from] QueryError),
    /// No such registration (or not the key's).
    #[error("no event registration {0}")]
    Unknown(InterestId),
    /// Recommendations need a registered client.
    #[error("recommendations are for registered clients (courier client register)")]
    NotAClient,
    /// Too many registrations.
    #[error("too many event registrations ({0}); cancel some first")]
    TooMany(&'static str),
}

/// A template checked and parsed.
#[derive(Debug, Clone)]
struct Template {
    /// `namespace:package/interface`, if any.
    interface: Option<String>,
    version_req: Option<semver::VersionReq>,
    attributes: Vec<AttributeConstraint>,
    /// Wanted transitions (appeared, changed, gone) as bits.
    transitions: u8,
}

fn bit(t: Transition) -> u8 {
    match t {
        Transition::Appeared => 1,
        Transition::Changed => 2,
        Transition::Gone => 4,
    }
}

impl Template {
    fn new(interest: &Interest) -> Result<Self, QueryError> {
        let (interface, pinned) = match &interest.interface {
            None => (None, None),
            Some(i) => {
                let name: InterfaceName =
                    i.parse()
                        .map_err(|e: courier_protocol::InterfaceNameError| {
                            QueryError::Interface(e.to_string())
                        })?;
                (Some(name.unversioned()), name.version)
            }
        };
        let version_req = match (&interest.version_req, pinned) {
            (Some(r), _) => Some(
                semver::VersionReq::parse(r)
                    .map_err(|e| QueryError::VersionReq(r.clone(), e.to_string()))?,
            ),
            (None, Some(v)) => Some(
                semver::VersionReq::parse(&format!("^{v}"))
                    .map_err(|e| QueryError::VersionReq(v.to_string(), e.to_string()))?,
            ),
            (None, None) => None,
        };
        if interest.attributes.len() > crate::core::matcher::MAX_CONSTRAINTS {
            return Err(QueryError::TooManyConstraints);
        }
        let transitions = if interest.transitions.is_empty() {
            7
        } else {
            interest.transitions.iter().fold(0, |m, t| m | bit(*t))
        };
        Ok(Self {
            interface,
            version_req,
            attributes: interest.attributes.clone(),
            transitions,
        })
    }

    fn matches(&self, rec: &EventRecord) -> bool {
        let reg = &rec.reg;
        let export_ok = match &self.interface {
            None => true,
            Some(key) => reg.exports().any(|e| {
                *e.key == **key
                    && self
                        .version_req
                        .as_ref()
                        .is_none_or(|r| r.matches(&e.version))
            }),
        };
        export_ok
            && self.attributes.iter().all(|c| match c {
                AttributeConstraint::Equals(k, v) => reg.attribute(k) == Some(v.as_str()),
                AttributeConstraint::Present(k) => reg.attribute(k).is_some(),
                AttributeConstraint::Absent(k) => reg.attribute(k).is_none(),
            })
    }
}

/// The transition an event is, if any (renewals are none).
pub fn transition(kind: EventKind) -> Option<Transition> {
    match kind {
        EventKind::Registered => Some(Transition::Appeared),
        EventKind::Replaced => Some(Transition::Changed),
        EventKind::Expired | EventKind::Cancelled | EventKind::Revoked => Some(Transition::Gone),
        EventKind::Renewed => None,
    }
}

/// What a registration is told of: its template, and for recommendations the system data
/// of its client (as shared when it registered or last renewed).
#[derive(Debug, Clone)]
pub struct InterestMatcher {
    template: Template,
    recommend_for: Option<BTreeMap<String, String>>,
}

impl InterestMatcher {
    /// Whether this registration is told of `rec`: `Some(false)` by its template,
    /// `Some(true)` as a recommendation (a new registration that fits its client's system
    /// data), `None` not at all.
    pub fn told(&self, rec: &EventRecord) -> Option<bool> {
        let t = transition(rec.kind)?;
        if self.template.transitions & bit(t) != 0 && self.template.matches(rec) {
            return Some(false);
        }
        let recommended =
            t == Transition::Appeared && self.recommend_for.as_ref().is_some_and(|f| fits(rec, f));
        recommended.then_some(true)
    }

    /// What this registration is told of `rec`, if anything.
    pub fn notify(&self, rec: &EventRecord) -> Option<Notification> {
        self.told(rec)
            .and_then(|recommended| notification(rec, recommended))
    }
}

/// The notification of `rec` (`None` for a renewal, which is no transition).
pub fn notification(rec: &EventRecord, recommended: bool) -> Option<Notification> {
    Some(Notification {
        seq: rec.seq,
        transition: transition(rec.kind)?,
        recommended,
        lease: rec.reg.lease,
        name: rec.reg.name.to_string(),
        interfaces: rec.reg.interface_names(),
        at_ms: rec.at_ms,
    })
}

/// One registration of interest.
#[derive(Debug)]
struct Entry {
    /// Shared with the registration's listener, so that it costs one copy.
    matcher: Arc<InterestMatcher>,
    owner: VendorKey,
    deadline: Millis,
}

/// The registrations of interest.
#[derive(Debug)]
pub struct InterestBook {
    policy: LeasePolicy,
    entries: HashMap<InterestId, Entry>,
    by_deadline: BTreeSet<(Millis, InterestId)>,
    per_owner: HashMap<VendorKey, usize>,
}

impl InterestBook {
    /// An empty book whose leases follow `policy`.
    pub fn new(policy: LeasePolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
            by_deadline: BTreeSet::new(),
            per_owner: HashMap::new(),
        }
    }

    /// Registers interest `id` of `owner` at `now`; `facts` is the system data the owner
    /// shared as a client (`None`: not a client). Returns the granted lease.
    pub fn register(
        &mut self,
        now: Millis,
        id: InterestId,
        owner: VendorKey,
        interest: &Interest,
        facts: Option<BTreeMap<String, String>>,
    ) -> Result<u64, InterestError> {
        let template = Template::new(interest)?;
        let recommend_for = match (interest.recommendations, facts) {
            (false, _) => None,
            (true, None) => return Err(InterestError::NotAClient),
            (true, Some(f)) => Some(f),
        };
        if self.entries.len() >= MAX_INTERESTS {
            return Err(InterestError::TooMany("the registry holds its most"));
        }
        let count = self.per_owner.entry(owner).or_default();
        if *count >= MAX_INTERESTS_PER_KEY {
            return Err(InterestError::TooMany("this key holds its most"));
        }
        *count += 1;
        let ttl = self.policy.clamp(interest.ttl_ms);
        let deadline = now.plus(ttl);
        self.by_deadline.insert((deadline, id));
        self.entries.insert(
            id,
            Entry {
                matcher: Arc::new(InterestMatcher {
                    template,
                    recommend_for,
                }),
                owner,
                deadline,
            },
        );
        Ok(ttl)
    }

    /// Renews interest `id` of `owner`, with its client's system data as it is now
    /// (`None`: keep what it had); returns the granted lease.
    pub fn renew(
        &mut self,
        now: Millis,
        id: InterestId,
        owner: &VendorKey,
        ttl_ms: u64,
        facts: Option<BTreeMap<String, String>>,
    ) -> Result<u64, InterestError> {
        let entry = self
            .entries
            .get_mut(&id)
            .filter(|e| e.owner == *owner && e.deadline > now)
            .ok_or(InterestError::Unknown(id))?;
        if let Some(f) = facts
            && entry.matcher.recommend_for.is_some()
        {
            Arc::make_mut(&mut entry.matcher).recommend_for = Some(f);
        }
        let ttl = self.policy.clamp(ttl_ms);
        self.by_deadline.remove(&(entry.deadline, id));
        entry.deadline = now.plus(ttl);
        self.by_deadline.insert((entry.deadline, id));
        Ok(ttl)
    }

    /// Ends interest `id` of `owner`.
    pub fn cancel(&mut self, id: InterestId, owner: &VendorKey) -> Result<(), InterestError> {
        if self.entries.get(&id).is_none_or(|e| e.owner != *owner) {
            return Err(InterestError::Unknown(id));
        }
        self.remove(&id);
        Ok(())
    }

    fn remove(&mut self, id: &InterestId) {
        if let Some(e) = self.entries.remove(id) {
            self.by_deadline.remove(&(e.deadline, *id));
            if let Some(n) = self.per_owner.get_mut(&e.owner) {
                *n -= 1;
                if *n == 0 {
                    self.per_owner.remove(&e.owner);
                }
            }
        }
    }

    /// The matcher of `id`, if it is a live registration of `owner` at `now`.
    pub fn matcher(
        &self,
        now: Millis,
        id: &InterestId,
        owner: &VendorKey,
    ) -> Option<Arc<InterestMatcher>> {
        self.entries
            .get(id)
            .filter(|e| e.owner == *owner && e.deadline > now)
            .map(|e| e.matcher.clone())
    }

    /// Ends the registrations whose lease ran out by `now`; returns them.
    pub fn expire(&mut self, now: Millis) -> Vec<InterestId> {
        let mut out = Vec::new();
        while let Some(&(d, id)) = self.by_deadline.first() {
            if d > now {
                break;
            }
            self.remove(&id);
            out.push(id);
        }
        out
    }

    /// How many registrations there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every registration told of `rec`, and whether as a recommendation.
    pub fn told<'a>(
        &'a self,
        rec: &'a EventRecord,
    ) -> impl Iterator<Item = (InterestId, bool)> + 'a {
        let relevant = transition(rec.kind).is_some();
        self.entries
            .iter()
            .filter(move |_| relevant)
            .filter_map(move |(id, e)| e.matcher.told(rec).map(|r| (*id, r)))
    }
}

/// Whether a registration fits a client's system data: it names at least one of `os`,
/// `arch` and `package` in its attributes, and each it names agrees with the client's facts
/// (`os` and `arch` equal, ignoring case; `package` installed).
pub fn fits(rec: &EventRecord, facts: &BTreeMap<String, String>) -> bool {
    let reg = &rec.reg;
    let mut named = false;
    for key in ["os", "arch"] {
        if let Some(want) = reg.attribute(key) {
            named = true;
            if !facts
                .get(key)
                .is_some_and(|have| have.eq_ignore_ascii_case(want))
            {
                return false;
            }
        }
    }
    if let Some(package) = reg.attribute("package") {
        named = true;
        let installed = facts.get("packages").is_some_and(|list| {
            list.lines()
                .any(|l| l.split(['\t', ' ']).next() == Some(package))
        });
        if !installed {
            return false;
        }
    }
    named
}
