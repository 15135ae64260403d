//! `courier registry children`, `rules` and `approvals`: a hierarchy of registries as its
//! operators steer it. At a parent: which children may follow it, and what they report.
//! At a child: what it mirrors of its parent, and the versions waiting for approval.

use super::client::at;
use super::operator::connect_as_operator;
use crate::cli::{
    ApprovalTarget, ApprovalsArgs, ApprovalsCommand, ChildrenArgs, ChildrenCommand, RulesArgs,
    RulesCommand,
};
use crate::output::{short, table};
use anyhow::Context;
use courier_protocol::{
    AdminAction, Approval, ApprovalState, ChildInfo, MirrorRule, MirrorStatus, VendorKey,
};
use courier_transport::RegistryClient;

/// `courier registry children`: allow, deny or list child registries.
pub async fn children(args: ChildrenArgs) -> anyhow::Result<()> {
    let (registry, _) = connect_as_operator(&args.operator).await?;
    let action = match args.action.unwrap_or(ChildrenCommand::List) {
        ChildrenCommand::Allow { key, name } => AdminAction::AllowChild {
            key: key.parse().with_context(|| format!("child key {key}"))?,
            name,
        },
        ChildrenCommand::Deny { key } => AdminAction::DenyChild {
            key: key.parse().with_context(|| format!("child key {key}"))?,
        },
        ChildrenCommand::List => {
            let all = registry.children().await?;
            registry.close();
            return print_children(&all, args.json);
        }
        ChildrenCommand::Report { key } => {
            let key: VendorKey = key.parse().with_context(|| format!("child key {key}"))?;
            let out = report_now(&registry, key).await;
            registry.close();
            return print_children(&[out?], args.json);
        }
    };
    act(registry, action).await
}

/// Asks the child `key` for a report and waits (up to 15 s) for one newer than the last.
async fn report_now(registry: &RegistryClient, key: VendorKey) -> anyhow::Result<ChildInfo> {
    let last = |all: Vec<ChildInfo>| all.into_iter().find(|c| c.key == key);
    let before = last(registry.children().await?)
        .with_context(|| format!("{key} is not an allowed child"))?
        .report
        .map(|(at, _)| at);
    registry.ask_child_report(key).await?;
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Some(child) = last(registry.children().await?)
            && child.report.as_ref().map(|(at, _)| *at) > before
        {
            return Ok(child);
        }
    }
    anyhow::bail!("{key} sent no report within 15 s (is its link to this registry up?)")
}

/// `courier registry rules`: add, remove or list a child's rules.
pub async fn rules(args: RulesArgs) -> anyhow::Result<()> {
    let (registry, _) = connect_as_operator(&args.operator).await?;
    let action = match args.action.unwrap_or(RulesCommand::List) {
        RulesCommand::Add {
            name,
            vendor,
            interface,
            version,
            approval,
        } => AdminAction::AddMirrorRule(MirrorRule {
            id: 0,
            name,
            vendor: vendor.as_deref().map(parse_vendor).transpose()?,
            interface,
            version,
            approval,
        }),
        RulesCommand::Remove { id } => AdminAction::RemoveMirrorRule { id },
        RulesCommand::List => {
            let (status, rules) = registry.mirror_status().await?;
            registry.close();
            return print_rules(&status, &rules, args.json);
        }
    };
    act(registry, action).await
}

/// `courier registry approvals`: approve, decline or list.
pub async fn approvals(args: ApprovalsArgs) -> anyhow::Result<()> {
    let (registry, _) = connect_as_operator(&args.operator).await?;
    let (target, approve) = match args.action.unwrap_or(ApprovalsCommand::List) {
        ApprovalsCommand::Approve(t) => (t, true),
        ApprovalsCommand::Decline(t) => (t, false),
        ApprovalsCommand::List => {
            let all = registry.approvals().await?;
            registry.close();
            return print_approvals(&all, args.json);
        }
    };
    let all = registry.approvals().await?;
    let (name, version, vendor) = resolve(&all, &target)?;
    let action = if approve {
        AdminAction::Approve {
            vendor,
            name,
            version,
        }
    } else {
        AdminAction::Decline {
            vendor,
            name,
            version,
        }
    };
    act(registry, action).await
}

/// The approval `target` names: its vendor is the one given, or the only one asked under
/// that name and version.
fn resolve(
    all: &[Approval],
    target: &ApprovalTarget,
) -> anyhow::Result<(String, String, VendorKey)> {
    let (name, version) = target
        .service
        .rsplit_once('@')
        .with_context(|| format!("{}: want NAME@VERSION", target.service))?;
    let vendor = target.vendor.as_deref().map(parse_vendor).transpose()?;
    let found: Vec<&Approval> = all
        .iter()
        .filter(|a| a.name == name && a.version == version && vendor.is_none_or(|v| v == a.vendor))
        .collect();
    match found.as_slice() {
        [one] => Ok((name.to_string(), version.to_string(), one.vendor)),
        [] => anyhow::bail!(
            "no approval of {name}@{version} was asked for (`courier registry approvals` lists them)"
        ),
        _ => anyhow::bail!("several vendors' {name}@{version} are asked for: add --vendor KEY"),
    }
}

async fn act(registry: RegistryClient, action: AdminAction) -> anyhow::Result<()> {
    let entry = registry.admin(action).await?;
    registry.close();
    println!("done, audit entry {}: {}", entry.seq, entry.action);
    Ok(())
}

fn parse_vendor(key: &str) -> anyhow::Result<VendorKey> {
    key.parse().with_context(|| format!("vendor key {key}"))
}

fn status_json(s: &MirrorStatus) -> serde_json::Value {
    serde_json::json!({
        "parent": s.parent,
        "connected": s.connected,
        "anchor": s.anchor,
        "parent_seq": s.parent_seq,
        "lag": s.parent_seq.zip(s.anchor).map(|(p, a)| p.saturating_sub(a)),
        "mirrored": s.mirrored,
        "past_end": s.past_end,
        "pending_approvals": s.pending,
        "bad_signatures": s.bad_signatures,
        "copies": s.copies,
        "components_fetched": s.fetched,
        "received_bytes": s.received_bytes,
    })
}

fn print_children(all: &[ChildInfo], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|c| {
                let report = c.report.as_ref().map(|(at_ms, r)| {
                    serde_json::json!({
                        "at_ms": at_ms,
                        "sync": status_json(&r.status),
                        "activity": r.activity.iter().map(|a| serde_json::json!({
                            "service": a.service,
                            "handed_out": a.handed_out,
                            "calls": a.calls,
                            "failed": a.failed,
                        })).collect::<Vec<_>>(),
                    })
                });
                serde_json::json!({
                    "key": c.key.to_string(),
                    "name": c.name,
                    "allowed_at_ms": c.allowed_at_ms,
                    "last_seen_ms": c.last_seen_ms,
                    "report": report,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no child registries allowed");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|c| {
            let (sync, mirrored) = match &c.report {
                Some((_, r)) => (
                    match (r.status.connected, r.status.parent_seq, r.status.anchor) {
                        (true, Some(p), Some(a)) => format!("lag {}", p.saturating_sub(a)),
                        (true, ..) => "following".to_string(),
                        (false, ..) => "cut off".to_string(),
                    },
                    r.status.mirrored.to_string(),
                ),
                None => ("no report".to_string(), "-".to_string()),
            };
            vec![
                c.name.clone(),
                short(&c.key.to_string(), 24),
                at(c.allowed_at_ms),
                c.last_seen_ms.map_or("never".to_string(), at),
                mirrored,
                sync,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "NAME",
                "KEY",
                "ALLOWED (UTC)",
                "LAST SEEN (UTC)",
                "MIRRORED",
                "SYNC"
            ],
            &rows
        )
    );
    Ok(())
}

fn print_rules(status: &MirrorStatus, rules: &[MirrorRule], json: bool) -> anyhow::Result<()> {
    if json {
        let rules: Vec<_> = rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "name": r.name,
                    "vendor": r.vendor.map(|k| k.to_string()),
                    "interface": r.interface,
                    "version": r.version,
                    "approval": r.approval,
                })
            })
            .collect();
        let out = serde_json::json!({ "status": status_json(status), "rules": rules });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match &status.parent {
        Some(parent) => println!(
            "parent {parent}: {}, anchor {}, {} mirrored ({} past their end), {} pending approval(s), {} bad signature(s), {} component(s) fetched",
            if status.connected {
                "following"
            } else {
                "cut off"
            },
            status.anchor.map_or("none".to_string(), |a| a.to_string()),
            status.mirrored,
            status.past_end,
            status.pending,
            status.bad_signatures,
            status.fetched,
        ),
        None => println!("no parent: this registry mirrors nothing (serve with --parent)"),
    }
    if rules.is_empty() {
        println!("no rules: nothing of the parent's is mirrored");
        return Ok(());
    }
    let any = |o: &Option<String>| o.clone().unwrap_or_else(|| "any".to_string());
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.name.clone(),
                r.vendor
                    .map_or("any".to_string(), |k| short(&k.to_string(), 20)),
                any(&r.interface),
                any(&r.version),
                if r.approval { "approval" } else { "automatic" }.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["ID", "NAME", "VENDOR", "INTERFACE", "VERSION", "MODE"],
            &rows
        )
    );
    Ok(())
}

fn print_approvals(all: &[Approval], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|a| {
                serde_json::json!({
                    "service": a.name,
                    "version": a.version,
                    "vendor": a.vendor.to_string(),
                    "state": a.state.to_string(),
                    "rule": a.rule,
                    "at_ms": a.at_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no approvals asked for");
        return Ok(());
    }
    let pending = all
        .iter()
        .filter(|a| a.state == ApprovalState::Pending)
        .count();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|a| {
            vec![
                format!("{}@{}", a.name, a.version),
                short(&a.vendor.to_string(), 24),
                a.state.to_string(),
                a.rule.to_string(),
                at(a.at_ms),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["SERVICE", "VENDOR", "STATE", "RULE", "AT (UTC)"], &rows)
    );
    if pending > 0 {
        println!("approve one: courier registry approvals approve NAME@VERSION");
    }
    Ok(())
}
