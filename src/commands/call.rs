//! `courier call`: find a proxy, verify it, run it once in the sandbox, print the answer.

use crate::cli::CallArgs;
use anyhow::Context;
use courier_client::{
    Answer, CallSpec, Client, ClientConfig, OperatorAnswer, OperatorMode, Policy, RejectReason,
    ReportMode, TrustStore,
};
use courier_protocol::VendorKey;

/// The trust store from `--trust` keys and `--trust-file`.
fn trust_store(args: &CallArgs) -> anyhow::Result<TrustStore> {
    let mut store = match &args.trust_file {
        Some(path) => TrustStore::load(path)
            .with_context(|| format!("reading trust file {}", path.display()))?,
        None => TrustStore::new(),
    };
    for k in &args.trust {
        let key: VendorKey = k.parse().with_context(|| format!("--trust {k}"))?;
        store.add(key).with_context(|| format!("--trust {k}"))?;
    }
    anyhow::ensure!(
        !store.is_empty(),
        "no trusted vendor keys: pass --trust ed25519:... (the vendor's public key from courier keys generate)"
    );
    Ok(store)
}

/// The client policy from the flags: the provider always, host facts as allowed, operator
/// questions asked on a terminal (or answered by --approve / --deny when unattended).
pub fn policy(allow_facts: &[String], approve: bool) -> Policy {
    let answer = if approve {
        OperatorAnswer::ApproveAll
    } else {
        OperatorAnswer::DenyAll
    };
    Policy {
        grant_host_info: true,
        grant_operator: true,
        allowed_facts: allow_facts.iter().cloned().collect(),
        operator: OperatorMode::Terminal { fallback: answer },
        ..Policy::default()
    }
}

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let spec: CallSpec = args.expression.parse().context("call expression")?;
    let trust = trust_store(&args)?;
    let mut config = ClientConfig::new(trust);
    // With a client key, outcomes go to this client's history at the registry.
    config.key = super::client::client_key(&args.state_dir)?;
    config.report_detail = args.report_answer;
    config.policy = policy(&args.allow_facts, args.approve && !args.deny);
    config.report = ReportMode::Inline;
    // One call per process: a watched lookup cache would cost a subscription, save nothing.
    config.lookup_ttl = std::time::Duration::ZERO;
    config.state_dir = Some(args.state_dir.clone());
    config.pins = args.pins.iter().cloned().collect();
    let registry = args.registry.connect("courier-cli/call").await?;
    let client = Client::new(registry, config).context("cannot set up the client")?;
    let attributes = args
        .attributes
        .iter()
        .map(|a| super::parse_constraint(a))
        .collect();
    let result = client.call_spec(&spec, attributes).await;
    client.registry().close();
    if let Err(e) = &result
        && let Some((name, offered)) = e.rejections().iter().find_map(|r| match &r.reason {
            RejectReason::Rollback { offered, .. } => Some((&r.name, offered)),
            _ => None,
        })
    {
        anyhow::bail!(
            "{e} (to run the older version deliberately: --pin-version {name}@{offered})"
        );
    }
    let report = result?;
    for line in &report.logs.transcript {
        eprintln!("[operator] {line}");
    }
    for rejected in &report.rejected {
        eprintln!("skipped {rejected}");
    }
    if args.timings {
        eprintln!(
            "ran {} {} ({}) from lease {}",
            report.chosen.name, report.chosen.version, report.chosen.component, report.chosen.lease
        );
        eprintln!("{}", report.timings);
    }
    match &report.answer {
        Answer::Ok(text) => {
            println!("{text}");
            Ok(())
        }
        Answer::ProxyError(text) => {
            println!("{text}");
            anyhow::bail!("the proxy answered with an error: {text}")
        }
    }
}
