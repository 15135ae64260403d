//! Vendor roots in the trust store: a client may trust a root (its first keys and
//! threshold, a `root:<m>:<key>,…` line) instead of a single key. A manifest signed by an
//! online key is then accepted when the root's newest learned statement, and the further
//! delegations made under it, give that key an unexpired, unrevoked grant covering the
//! service name (see [`courier_protocol::Authority`]).
//!
//! Root statements are learned in version order, each verified against the one before it
//! (starting from the trusted first keys), so an older statement never replaces a newer
//! one and a rotation needs the old root's threshold. Statements and delegations about
//! roots not trusted are kept unverified (`pending`) and checked once the root is trusted:
//! that is how the learned state, saved without the trusted roots, is loaded back.

use super::{LearnError, TrustRefusal, TrustStore};
use courier_protocol::{
    Authority, AuthorityError, DelegationStatement, RootId, RootKeys, RootStatement,
    SignedDelegation, SignedRootStatement, VendorKey,
};
use std::collections::BTreeMap;

/// The text-form prefix of a trusted root.
pub(super) const ROOT_PREFIX: &str = "root:";
/// The text-form prefix of a learned root statement.
pub(super) const ROOT_STATEMENT_PREFIX: &str = "root-statement:";
/// The text-form prefix of a learned further delegation.
pub(super) const DELEGATION_PREFIX: &str = "delegation:";

/// Most further delegations kept per root (a bound on work, far above a vendor's need).
const MAX_FURTHER: usize = 256;

/// One root line of the text form, parsed (not yet verified).
#[derive(Debug)]
pub(super) enum RootLine {
    /// `root:<m>:<key>,…`: a trusted root.
    Trusted(RootKeys),
    /// `root-statement:<hex>`: a learned root statement.
    Statement(SignedRootStatement),
    /// `delegation:<hex>`: a learned further delegation.
    Delegation(SignedDelegation),
}

/// Parses `token` if it is a root line (`None` if it is not one).
pub(super) fn parse_line(token: &str) -> Option<Result<RootLine, String>> {
    if let Some(hex) = token.strip_prefix(ROOT_STATEMENT_PREFIX) {
        let parsed = SignedRootStatement::from_hex(hex).map(RootLine::Statement);
        return Some(parsed.map_err(|e| e.to_string()));
    }
    if let Some(hex) = token.strip_prefix(DELEGATION_PREFIX) {
        let parsed = SignedDelegation::from_hex(hex).map(RootLine::Delegation);
        return Some(parsed.map_err(|e| e.to_string()));
    }
    let keys = token.strip_prefix(ROOT_PREFIX)?;
    Some(
        RootKeys::from_text(keys)
            .map(RootLine::Trusted)
            .map_err(|e| e.to_string()),
    )
}

/// Trusted roots, what was learned about them, and what waits for a root to be trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Roots {
    trusted: BTreeMap<RootId, TrustedRoot>,
    pending: BTreeMap<(RootId, u64), SignedRootStatement>,
    pending_further: Vec<SignedDelegation>,
}

/// A trusted root: its first keys, its newest verified statement, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustedRoot {
    first: RootKeys,
    current: RootStatement,
    chain: Vec<SignedRootStatement>,
    further: Vec<(DelegationStatement, SignedDelegation)>,
}

impl TrustedRoot {
    fn authority(&self) -> (RootStatement, Vec<DelegationStatement>) {
        let further = self.further.iter().map(|(s, _)| s.clone()).collect();
        (self.current.clone(), further)
    }

    fn authorize(&self, key: &VendorKey, name: &str, now_ms: u64) -> Result<(), AuthorityError> {
        let (root, further) = self.authority();
        Authority {
            root: &root,
            further: &further,
        }
        .authorize(key, name, now_ms)
    }
}

impl TrustStore {
    /// Loads parsed root lines: trusted roots first, then statements in version order,
    /// then delegations. A line that does not verify is an error with its line number.
    pub(super) fn load_root_lines(
        &mut self,
        lines: Vec<(usize, RootLine)>,
    ) -> Result<(), (usize, String)> {
        let mut statements = Vec::new();
        let mut delegations = Vec::new();
        for (line, parsed) in lines {
            match parsed {
                RootLine::Trusted(keys) => {
                    self.add_root(keys).map_err(|e| (line, e.to_string()))?;
                }
                RootLine::Statement(s) => {
                    let version = s.peek().map_err(|e| (line, e.to_string()))?.version;
                    statements.push((version, line, s));
                }
                RootLine::Delegation(d) => delegations.push((line, d)),
            }
        }
        statements.sort_by_key(|(version, _, _)| *version);
        for (_, line, s) in statements {
            self.learn_root(&s).map_err(|e| (line, e.to_string()))?;
        }
        for (line, d) in delegations {
            self.learn_delegation(&d)
                .map_err(|e| (line, e.to_string()))?;
        }
        Ok(())
    }

    /// Trusts the root whose first keys are `keys`; false if it already was. Statements
    /// kept about it are verified now.
    pub fn add_root(&mut self, keys: RootKeys) -> Result<bool, LearnError> {
        keys.check().map_err(|e| LearnError::Root(e.to_string()))?;
        let id = keys.id();
        if self.roots.trusted.contains_key(&id) {
            return Ok(false);
        }
        self.roots.trusted.insert(
            id,
            TrustedRoot {
                current: RootStatement::genesis(keys.clone()),
                first: keys,
                chain: Vec::new(),
                further: Vec::new(),
            },
        );
        let waiting: Vec<_> = self
            .roots
            .pending
            .range((id, 0)..=(id, u64::MAX))
            .map(|(_, s)| s.clone())
            .collect();
        for s in waiting {
            self.roots
                .pending
                .remove(&(id, s.peek().map_or(0, |p| p.version)));
            if let Err(e) = self.learn_root(&s) {
                tracing::warn!("kept root statement refused: {e}");
            }
        }
        for d in std::mem::take(&mut self.roots.pending_further) {
            if let Err(e) = self.learn_delegation(&d) {
                tracing::warn!("kept delegation refused: {e}");
            }
        }
        Ok(true)
    }

    /// Stops trusting the root `id` (what was learned about it is kept, pending).
    pub fn remove_root(&mut self, id: &RootId) -> bool {
        let Some(root) = self.roots.trusted.remove(id) else {
            return false;
        };
        for s in root.chain {
            self.keep_pending(s);
        }
        self.roots
            .pending_further
            .extend(root.further.into_iter().map(|(_, s)| s));
        true
    }

    /// The trusted roots: id, first keys and the version known.
    pub fn roots(&self) -> impl Iterator<Item = (RootId, &RootKeys, u64)> {
        self.roots
            .trusted
            .iter()
            .map(|(id, r)| (*id, &r.first, r.current.version))
    }

    /// Learns a root statement: verified against the newest known for its root (an older
    /// or equal version is refused as a rollback). Kept unverified if the root is not
    /// trusted. Returns whether it was new.
    pub fn learn_root(&mut self, signed: &SignedRootStatement) -> Result<bool, LearnError> {
        let root = signed
            .peek()
            .map_err(|e| LearnError::Root(e.to_string()))?
            .root;
        let Some(trusted) = self.roots.trusted.get_mut(&root) else {
            return Ok(self.keep_pending(signed.clone()));
        };
        if trusted.chain.contains(signed) {
            return Ok(false);
        }
        let statement = signed
            .verify_after(&trusted.current)
            .map_err(|e| LearnError::Root(e.to_string()))?
            .into_inner();
        trusted.current = statement;
        trusted.chain.push(signed.clone());
        Ok(true)
    }

    /// Learns a further delegation made under a trusted root: verified, and refused if it
    /// widens what its parent holds now. Kept unverified if the root is not trusted.
    pub fn learn_delegation(&mut self, signed: &SignedDelegation) -> Result<bool, LearnError> {
        let statement = signed
            .verify()
            .map_err(|e| LearnError::Root(e.to_string()))?
            .into_inner();
        let Some(trusted) = self.roots.trusted.get_mut(&statement.root) else {
            if self.roots.pending_further.contains(signed) {
                return Ok(false);
            }
            self.roots.pending_further.push(signed.clone());
            return Ok(true);
        };
        if trusted.further.iter().any(|(_, s)| s == signed) {
            return Ok(false);
        }
        if trusted.further.len() >= MAX_FURTHER {
            return Err(LearnError::Root(format!(
                "more than {MAX_FURTHER} delegations under {}",
                statement.root
            )));
        }
        let (root, further) = trusted.authority();
        let authority = Authority {
            root: &root,
            further: &further,
        };
        if let Err(e @ AuthorityError::Widens { .. }) = authority.admit(&statement) {
            return Err(LearnError::Root(e.to_string()));
        }
        trusted.further.push((statement, signed.clone()));
        Ok(true)
    }

    fn keep_pending(&mut self, signed: SignedRootStatement) -> bool {
        let Ok(peek) = signed.peek() else {
            return false;
        };
        self.roots
            .pending
            .insert((peek.root, peek.version), signed)
            .is_none()
    }

    /// Whether a trusted root gives `key` a grant for `name` at `now_ms`: `Ok(None)` when
    /// no trusted root knows the key at all, the refusal of the root that knows it
    /// otherwise.
    pub(super) fn root_check(
        &self,
        key: &VendorKey,
        name: &str,
        now_ms: u64,
    ) -> Result<Option<RootId>, TrustRefusal> {
        let mut refusal = None;
        for (id, root) in &self.roots.trusted {
            match root.authorize(key, name, now_ms) {
                Ok(()) => return Ok(Some(*id)),
                Err(AuthorityError::NotDelegated(_)) => {}
                Err(reason) => {
                    refusal = Some(TrustRefusal::Delegation {
                        key: *key,
                        root: *id,
                        reason: Box::new(reason),
                    })
                }
            }
        }
        refusal.map_or(Ok(None), Err)
    }

    /// The root a trusted root's delegation ties `key` to, if any (whatever the name).
    pub(super) fn root_of(&self, key: &VendorKey) -> Option<RootId> {
        self.roots.trusted.iter().find_map(|(id, root)| {
            let (current, further) = root.authority();
            let authority = Authority {
                root: &current,
                further: &further,
            };
            authority.grant(key).is_ok().then_some(*id)
        })
    }

    /// The text lines of the roots: trusted roots, then every statement and delegation.
    pub(super) fn roots_text(&self, out: &mut String) {
        for root in self.roots.trusted.values() {
            out.push_str(&format!("{ROOT_PREFIX}{}\n", root.first.to_text()));
        }
        let statements = self
            .roots
            .trusted
            .values()
            .flat_map(|r| r.chain.iter())
            .chain(self.roots.pending.values());
        for s in statements {
            out.push_str(&format!("{ROOT_STATEMENT_PREFIX}{}\n", s.to_hex()));
        }
        let delegations = self
            .roots
            .trusted
            .values()
            .flat_map(|r| r.further.iter().map(|(_, s)| s))
            .chain(self.roots.pending_further.iter());
        for s in delegations {
            out.push_str(&format!("{DELEGATION_PREFIX}{}\n", s.to_hex()));
        }
    }

    /// The learned root statements and delegations, as pending (no root trusted).
    pub(super) fn roots_learned_only(&self) -> Roots {
        let mut out = Roots::default();
        for root in self.roots.trusted.values() {
            for s in &root.chain {
                if let Ok(p) = s.peek() {
                    out.pending.insert((p.root, p.version), s.clone());
                }
            }
            out.pending_further
                .extend(root.further.iter().map(|(_, s)| s.clone()));
        }
        out.pending.extend(self.roots.pending.clone());
        out.pending_further
            .extend(self.roots.pending_further.iter().cloned());
        out
    }

    /// Every root statement and delegation `other` learned or keeps, learned here (in
    /// version order; a refused one is logged and skipped). Returns how many were new.
    pub(super) fn absorb_roots(&mut self, other: &TrustStore) -> usize {
        let learned = other.roots_learned_only();
        let root_statements = learned.pending.values().map(|s| self.learn_root(s));
        let results: Vec<_> = root_statements.collect();
        let delegations: Vec<_> = learned
            .pending_further
            .iter()
            .map(|d| self.learn_delegation(d))
            .collect();
        let mut new = 0;
        for result in results.into_iter().chain(delegations) {
            match result {
                Ok(learned) => new += usize::from(learned),
                Err(e) => tracing::warn!("kept root statement or delegation refused: {e}"),
            }
        }
        new
    }

    /// What a client asks the registry about its roots: each trusted root and the
    /// version it holds.
    pub fn root_versions(&self) -> Vec<courier_protocol::RootSince> {
        self.roots
            .trusted
            .iter()
            .map(|(id, r)| courier_protocol::RootSince {
                root: *id,
                after_version: r.current.version,
            })
            .collect()
    }
}
