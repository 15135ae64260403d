//! The client policy of `courier call` and `courier client register|share`: the policy file
//! (`--policy FILE`, or `<state-dir>/policy.toml` when it exists), then the flags, which
//! override or extend it.

use crate::cli::{ClientRunArgs, ShareArgs};
use anyhow::Context;
use courier_client::{
    FACT_NAMES, OperatorAnswer, OperatorMode, POLICY_FILE, Policy, PolicyFile, Preopen, TrustStore,
};
use courier_protocol::VendorKey;
use std::path::Path;

/// The facts shared when neither `--share` nor the policy file names any.
pub const DEFAULT_SHARE: &[&str] = &["os", "arch", "kernel"];

/// Where a directory lent with `--dir` appears inside the sandbox, unless the policy file
/// names another place (the patch proxy looks there).
pub const DEFAULT_GUEST_DIR: &str = "/managed";

/// What `courier call` runs with.
#[derive(Debug)]
pub struct CallPolicy {
    /// What the proxy gets.
    pub policy: Policy,
    /// Vendor keys trusted, operator keys followed.
    pub trust: TrustStore,
    /// Whether the report carries the proxy's answer.
    pub report_answer: bool,
}

/// The policy file `explicit` names, or the state directory's if it exists.
pub fn load(explicit: Option<&Path>, state_dir: &Path) -> anyhow::Result<Option<PolicyFile>> {
    Ok(match explicit {
        Some(path) => Some(PolicyFile::load(path)?),
        None => PolicyFile::load_if_present(&state_dir.join(POLICY_FILE))?,
    })
}

/// The policy without a file: `host-info` and `operator` granted, no fact readable,
/// questions asked on the terminal (no when there is none), no directory, no command.
pub fn default_policy() -> Policy {
    Policy {
        grant_host_info: true,
        grant_operator: true,
        operator: OperatorMode::Terminal {
            fallback: OperatorAnswer::DenyAll,
        },
        ..Policy::default()
    }
}

/// The policy file, then the flags of `courier call`.
pub fn for_call(args: &ClientRunArgs) -> anyhow::Result<CallPolicy> {
    let file = load(args.policy.as_deref(), &args.state_dir)?;
    let mut policy = file
        .as_ref()
        .map_or_else(default_policy, |f| f.policy.clone());
    for fact in &args.allow_facts {
        check_fact(fact, "--allow-fact")?;
        policy.allowed_facts.insert(fact.clone());
    }
    if args.yes {
        policy.operator = OperatorMode::Unattended(OperatorAnswer::ApproveAll);
    } else if args.deny {
        policy.operator = OperatorMode::Unattended(OperatorAnswer::DenyAll);
    }
    if let Some((path, writable)) = &args.dir {
        let host =
            std::path::absolute(path).with_context(|| format!("--dir {}", path.display()))?;
        anyhow::ensure!(host.is_dir(), "--dir {}: not a directory", path.display());
        let guest = policy
            .preopen
            .as_ref()
            .map_or_else(|| DEFAULT_GUEST_DIR.to_string(), |p| p.guest.clone());
        policy.preopen = Some(Preopen {
            host,
            guest,
            writable: *writable,
        });
    }
    for command in &args.commands {
        let mut command = command.clone();
        command.timeout = args.command_timeout;
        policy.commands.retain(|c| c.name != command.name);
        policy.commands.push(command);
    }
    if let Some(wall) = args.wall_time {
        anyhow::ensure!(!wall.is_zero(), "--wall-time must be more than zero");
        policy.limits.wall_time = wall;
    }
    let trust = trust_store(args, file.as_ref())?;
    let report_answer = args.report_answer || file.as_ref().is_some_and(|f| f.report_answer);
    Ok(CallPolicy {
        policy,
        trust,
        report_answer,
    })
}

/// The facts `courier client register|share` send: `--share`, else the policy file's share
/// list, else [`DEFAULT_SHARE`].
pub fn shared_facts(share: &ShareArgs, state_dir: &Path) -> anyhow::Result<Vec<String>> {
    for fact in &share.facts {
        check_fact(fact, "--share")?;
    }
    if !share.facts.is_empty() {
        return Ok(share.facts.clone());
    }
    let from_file = load(share.policy.as_deref(), state_dir)?.and_then(|f| f.share);
    Ok(from_file.unwrap_or_else(|| DEFAULT_SHARE.iter().map(|s| s.to_string()).collect()))
}

fn check_fact(fact: &str, flag: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        FACT_NAMES.contains(&fact),
        "{flag} {fact}: unknown fact (known: {})",
        FACT_NAMES.join(", ")
    );
    Ok(())
}

/// The vendor keys trusted (`--trust`, `--trust-file`, the policy file's) and operator keys
/// followed (`--trust-operator`, the policy file's).
fn trust_store(args: &ClientRunArgs, file: Option<&PolicyFile>) -> anyhow::Result<TrustStore> {
    let mut store = match &args.trust_file {
        Some(path) => TrustStore::load(path)
            .with_context(|| format!("reading trust file {}", path.display()))?,
        None => TrustStore::new(),
    };
    for key in file
        .map(|f| f.trusted_vendors.as_slice())
        .unwrap_or_default()
    {
        store.add(*key)?;
    }
    for k in &args.trust {
        let key: VendorKey = k.parse().with_context(|| format!("--trust {k}"))?;
        store.add(key).with_context(|| format!("--trust {k}"))?;
    }
    for r in &args.trust_roots {
        let keys = courier_protocol::RootKeys::from_text(r)
            .with_context(|| format!("--trust-root {r}"))?;
        store
            .add_root(keys)
            .with_context(|| format!("--trust-root {r}"))?;
    }
    for key in file
        .map(|f| f.trusted_operators.as_slice())
        .unwrap_or_default()
    {
        store.add_operator(*key)?;
    }
    for k in &args.trust_operators {
        let key: VendorKey = k.parse().with_context(|| format!("--trust-operator {k}"))?;
        store
            .add_operator(key)
            .with_context(|| format!("--trust-operator {k}"))?;
    }
    anyhow::ensure!(
        !store.is_empty(),
        "no trusted vendor keys: pass --trust ed25519:... (the vendor's public key from courier keys generate) or --trust-root, or list them in the policy file's [trust] vendors"
    );
    Ok(store)
}
