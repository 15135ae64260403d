//! The grammar of a child registry's operator: what it mirrors of its parent (rules) and
//! the versions its rules hold for approval.

use super::OperatorArgs;
use clap::{Args, Subcommand};

/// `courier registry rules ...`
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// What to do (default: list them, with the link's state).
    #[command(subcommand)]
    pub action: Option<RulesCommand>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The operator.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// The actions of `courier registry rules`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Mirror the parent's registrations that match (all the given conditions; the first
    /// matching rule decides).
    Add {
        /// Service names: a name, a prefix ending in `*`, or `*` for all.
        #[arg(long)]
        name: String,
        /// Only registrations signed by this vendor key (ed25519:...).
        #[arg(long)]
        vendor: Option<String>,
        /// Only registrations that export this interface (`ns:pkg/iface`).
        #[arg(long)]
        interface: Option<String>,
        /// Only proxy versions that meet this requirement (`>=2, <3`).
        #[arg(long)]
        version: Option<String>,
        /// Hold each new version until an operator approves it
        /// (`courier registry approvals approve`).
        #[arg(long)]
        approval: bool,
    },
    /// Remove a rule (what it let in goes at the next copy of the parent's catalog, which
    /// the change starts).
    Remove {
        /// The rule's id, as `rules list` shows it.
        id: u32,
    },
    /// List the rules, and where the copy of the parent stands.
    List,
}

/// `courier registry approvals ...`
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// What to do (default: list them, pending first).
    #[command(subcommand)]
    pub action: Option<ApprovalsCommand>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The operator.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// The actions of `courier registry approvals`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approve a version of a service the parent holds: it is mirrored from now on.
    Approve(ApprovalTarget),
    /// Decline one: it is not mirrored (and goes, if it was).
    Decline(ApprovalTarget),
    /// List the approvals, pending first.
    List,
}

/// Which version an approval is about.
#[derive(Debug, Args)]
pub struct ApprovalTarget {
    /// `NAME@VERSION`, as `approvals list` shows it.
    pub service: String,
    /// The vendor key, when several vendors' versions are pending under the name.
    #[arg(long)]
    pub vendor: Option<String>,
}
