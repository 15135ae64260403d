//! A child registry's rules and approvals: which of its parent's registrations it mirrors
//! ([`MirrorBook::decide`]), and the checks an operator's rule must pass.

use courier_protocol::{Approval, ApprovalState, Manifest, MirrorRule, VendorKey};
use std::collections::{BTreeMap, HashMap};

/// Most rules a child keeps.
pub const MAX_RULES: usize = 256;
/// Most approvals a child keeps (pending and decided); past it, new ones are not asked.
pub const MAX_APPROVALS: usize = 4096;
/// Longest pattern, interface or version requirement of a rule, in bytes.
pub const MAX_RULE_FIELD: usize = 256;

/// What a child does with one of its parent's registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Mirror it.
    Mirror,
    /// Ask an operator first (the rule's id): nothing is mirrored until approved.
    Ask(u32),
    /// Leave it: no rule matches, or an operator declined it.
    Leave,
}

/// Why a rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The name pattern is empty, too long, or has a `*` elsewhere than at its end.
    #[error("bad name pattern {0:?}: a name, a prefix ending in `*`, or `*`")]
    Pattern(String),
    /// The version requirement does not parse.
    #[error("bad version requirement {0:?}: {1}")]
    Version(String, String),
    /// The interface is empty, too long, or carries a version.
    #[error("bad interface {0:?}: `ns:pkg/iface` without a version")]
    Interface(String),
    /// Too many rules.
    #[error("at most {MAX_RULES} rules")]
    TooMany,
    /// No rule with this id.
    #[error("no rule {0}")]
    Unknown(u32),
}

/// A (vendor, service, version) an approval is about.
pub type ApprovalKey = (VendorKey, String, String);

/// The rules and approvals of a child registry.
#[derive(Debug, Default, Clone)]
pub struct MirrorBook {
    rules: BTreeMap<u32, MirrorRule>,
    approvals: HashMap<ApprovalKey, Approval>,
}

impl MirrorBook {
    /// What to do with a registration of `manifest`.
    pub fn decide(&self, manifest: &Manifest) -> Decision {
        let interfaces: Vec<String> = manifest
            .exports
            .iter()
            .map(|e| e.interface.clone())
            .collect();
        self.decide_parts(
            &manifest.name,
            &manifest.vendor_key,
            &manifest.version,
            &interfaces,
        )
    }

    /// What to do with a registration of `name` by `vendor` at `version`, exporting
    /// `interfaces` (versioned names).
    pub fn decide_parts(
        &self,
        name: &str,
        vendor: &VendorKey,
        version: &str,
        interfaces: &[String],
    ) -> Decision {
        let key = (*vendor, name.to_string(), version.to_string());
        let asked = self.approvals.get(&key).map(|a| a.state);
        // A version an operator declined stays out, whichever rule would let it in now.
        if asked == Some(ApprovalState::Declined) {
            return Decision::Leave;
        }
        let Some(rule) = self
            .rules
            .values()
            .find(|r| r.matches(name, vendor, version, interfaces))
        else {
            return Decision::Leave;
        };
        if !rule.approval {
            return Decision::Mirror;
        }
        match asked {
            Some(ApprovalState::Approved) => Decision::Mirror,
            Some(ApprovalState::Declined) => Decision::Leave,
            Some(ApprovalState::Pending) | None => Decision::Ask(rule.id),
        }
    }

    /// Whether an approval about `key` is held (pending or decided).
    pub fn knows(&self, key: &ApprovalKey) -> bool {
        self.approvals.contains_key(key)
    }

    /// Whether there is room for another approval.
    pub fn has_room(&self) -> bool {
        self.approvals.len() < MAX_APPROVALS
    }

    /// Checks a new rule and gives it the next free id.
    pub fn check_new(&self, mut rule: MirrorRule) -> Result<MirrorRule, RuleError> {
        if self.rules.len() >= MAX_RULES {
            return Err(RuleError::TooMany);
        }
        let stem = rule.name.strip_suffix('*').unwrap_or(&rule.name);
        if rule.name.is_empty() || rule.name.len() > MAX_RULE_FIELD || stem.contains('*') {
            return Err(RuleError::Pattern(rule.name));
        }
        if let Some(v) = &rule.version
            && let Err(e) = semver::VersionReq::parse(v)
        {
            return Err(RuleError::Version(v.clone(), e.to_string()));
        }
        if let Some(i) = &rule.interface
            && (i.is_empty() || i.len() > MAX_RULE_FIELD || i.contains('@') || !i.contains(':'))
        {
            return Err(RuleError::Interface(i.clone()));
        }
        rule.id = self.rules.keys().next_back().map_or(1, |id| id + 1);
        Ok(rule)
    }

    /// Checks that rule `id` exists.
    pub fn check_known(&self, id: u32) -> Result<(), RuleError> {
        if self.rules.contains_key(&id) {
            Ok(())
        } else {
            Err(RuleError::Unknown(id))
        }
    }

    /// Keeps a rule.
    pub fn add(&mut self, rule: MirrorRule) {
        self.rules.insert(rule.id, rule);
    }

    /// Drops a rule.
    pub fn remove(&mut self, id: u32) {
        self.rules.remove(&id);
    }

    /// The book without rule `id` (to see what removing it would leave out).
    pub fn without(&self, id: u32) -> Self {
        let mut book = self.clone();
        book.remove(id);
        book
    }

    /// Keeps an approval (replacing one about the same version).
    pub fn put_approval(&mut self, approval: Approval) {
        let key = (
            approval.vendor,
            approval.name.clone(),
            approval.version.clone(),
        );
        self.approvals.insert(key, approval);
    }

    /// The rules, by id.
    pub fn rules(&self) -> impl Iterator<Item = &MirrorRule> {
        self.rules.values()
    }

    /// The approvals, pending first, then by name and version.
    pub fn approvals(&self) -> Vec<Approval> {
        let mut out: Vec<Approval> = self.approvals.values().cloned().collect();
        out.sort_by(|a, b| {
            (a.state != ApprovalState::Pending, &a.name, &a.version).cmp(&(
                b.state != ApprovalState::Pending,
                &b.name,
                &b.version,
            ))
        });
        out
    }

    /// How many approvals wait for an operator.
    pub fn pending(&self) -> u64 {
        self.approvals
            .values()
            .filter(|a| a.state == ApprovalState::Pending)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, approval: bool) -> MirrorRule {
        MirrorRule {
            id: 0,
            name: name.into(),
            vendor: None,
            interface: None,
            version: None,
            approval,
        }
    }

    #[test]
    fn rules_are_checked_and_numbered() {
        let mut book = MirrorBook::default();
        let r = book.check_new(rule("acme/*", false)).unwrap();
        assert_eq!(r.id, 1);
        book.add(r);
        assert_eq!(book.check_new(rule("*", true)).unwrap().id, 2);
        assert!(matches!(
            book.check_new(rule("a*b", false)),
            Err(RuleError::Pattern(_))
        ));
        assert!(matches!(
            book.check_new(MirrorRule {
                version: Some("not a req".into()),
                ..rule("x", false)
            }),
            Err(RuleError::Version(..))
        ));
        assert!(matches!(
            book.check_new(MirrorRule {
                interface: Some("ns:pkg/i@1.0.0".into()),
                ..rule("x", false)
            }),
            Err(RuleError::Interface(_))
        ));
        assert_eq!(book.check_known(9), Err(RuleError::Unknown(9)));
    }
}
