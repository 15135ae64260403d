//! What a predicate may ask for, why a chain of prerequisites failed, and what was undone.

use crate::state::StateError;
use std::fmt;

/// One prerequisite a predicate says is missing, checked: the interface is
/// `namespace:package/interface` without a version, the requirement parses as semver, the
/// package name is a Debian package name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// A service interface at a version requirement.
    Service {
        /// The interface (`acme:fonts/glyphs`).
        interface: String,
        /// The semver requirement (`^1.2`).
        version: String,
    },
    /// A system package.
    Package(String),
}

impl Requirement {
    /// A checked service requirement.
    pub fn service(interface: String, version: String) -> Result<Self, String> {
        let name: courier_protocol::InterfaceName = interface
            .parse()
            .map_err(|e| format!("the interface {interface:?}: {e}"))?;
        if name.version.is_some() {
            return Err(format!(
                "the interface {interface:?} carries a version; the requirement says which"
            ));
        }
        version
            .parse::<semver::VersionReq>()
            .map_err(|e| format!("the requirement {version:?} of {interface}: {e}"))?;
        Ok(Self::Service { interface, version })
    }

    /// A checked package requirement.
    pub fn package(name: String) -> Result<Self, String> {
        if crate::policy::is_package_name(&name) {
            Ok(Self::Package(name))
        } else {
            Err(format!("{name:?} is not a package name"))
        }
    }

    /// What it stands for, for cycles and the ledger: the interface, or `package NAME`.
    pub fn key(&self) -> String {
        match self {
            Requirement::Service { interface, .. } => interface.clone(),
            Requirement::Package(name) => format!("package {name}"),
        }
    }
}

impl fmt::Display for Requirement {
    /// `acme:fonts/glyphs ^1.2`, `package zlib1g`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Service { interface, version } => write!(f, "{interface} {version}"),
            Requirement::Package(name) => write!(f, "package {name}"),
        }
    }
}

/// What undoing one install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwound {
    /// What had been installed (or half installed).
    pub requirement: Requirement,
    /// The remove's line, or why it failed.
    pub result: Result<String, String>,
}

impl fmt::Display for Unwound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(line) => write!(f, "{}: {line}", self.requirement),
            Err(e) => write!(f, "{}: remove failed: {e}", self.requirement),
        }
    }
}

/// Why the prerequisites of a call could not be met. Each names the chain, from the proxy
/// called to the requirement that failed.
#[derive(Debug, thiserror::Error)]
pub enum PrerequisiteError {
    /// A predicate did not answer, or answered something malformed.
    #[error("the prerequisites of {proxy}: {reason}")]
    Predicate {
        /// The proxy whose predicate it was.
        proxy: String,
        /// Why.
        reason: String,
    },
    /// A requirement already on the chain came up again.
    #[error("prerequisites in a cycle: {}", chain.join(" -> "))]
    Cycle {
        /// The chain, ending with the repeated requirement.
        chain: Vec<String>,
    },
    /// The chain would go deeper than the cap.
    #[error("prerequisites deeper than {cap}: {}", chain.join(" -> "))]
    TooDeep {
        /// The chain, ending with the requirement past the cap.
        chain: Vec<String>,
        /// The cap.
        cap: usize,
    },
    /// No installer passed the checks, or none is registered.
    #[error("cannot install {}: {reason}", chain.join(" -> "))]
    NoInstaller {
        /// The chain.
        chain: Vec<String>,
        /// Why.
        reason: String,
    },
    /// The resolution would install more than its bound.
    #[error("prerequisites past {max} installs: {}", chain.join(" -> "))]
    TooMany {
        /// The chain, ending with the requirement past the bound.
        chain: Vec<String>,
        /// The bound.
        max: usize,
    },
    /// The operator (or the policy) said no.
    #[error("declined: {}", chain.join(" -> "))]
    Declined {
        /// The chain.
        chain: Vec<String>,
    },
    /// A package is missing and the policy lends no `install-package` command.
    #[error("cannot install {}: the policy lends no install-package command", chain.join(" -> "))]
    NoPackageCommand {
        /// The chain.
        chain: Vec<String>,
    },
    /// An installer (or the package command) ran and failed.
    #[error("installing {} with {by} failed: {reason}", chain.join(" -> "))]
    InstallFailed {
        /// The chain.
        chain: Vec<String>,
        /// The installer (`acme/glyphs 1.4.0`) or the command.
        by: String,
        /// Its error.
        reason: String,
    },
    /// After its prerequisites were installed, a predicate still names some missing.
    #[error(
        "{proxy} still misses {} after they were installed",
        missing.iter().map(Requirement::to_string).collect::<Vec<_>>().join(", ")
    )]
    StillMissing {
        /// The proxy whose predicate it was.
        proxy: String,
        /// What it still names.
        missing: Vec<Requirement>,
    },
    /// The client's state (the ledger, the rollback memory) could not be written.
    #[error(transparent)]
    Ledger(StateError),
}
