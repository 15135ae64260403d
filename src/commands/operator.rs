//! `courier clients` and `courier admin`: an operator reading and acting on a running
//! registry, with the operator key (`<data dir>/operator.key` by default).

use super::client::{at, client_json, print_client};
use crate::cli::{AdminArgs, AdminCommand, ClientsArgs, ClientsCommand, OperatorArgs};
use crate::output::{short, table};
use anyhow::Context;
use courier_protocol::{
    AdminAction, AuditEntry, LeaseId, OperatorStatement, SignedOperatorStatement, SigningKey,
    VendorKey,
};
use courier_provider::load_key;
use courier_transport::RegistryClient;

/// A connection authenticated with the operator key, and the key.
pub async fn connect_as_operator(
    args: &OperatorArgs,
) -> anyhow::Result<(RegistryClient, SigningKey)> {
    let key = load_key(&args.operator_key).with_context(|| {
        format!(
            "reading the operator key {} (courier registry serve makes one in its data directory; --operator-key)",
            args.operator_key.display()
        )
    })?;
    let client = args.registry.connect("courier-cli/operator").await?;
    client
        .authenticate(&key)
        .await
        .context("authenticating with the operator key")?;
    Ok((client, key))
}

pub async fn clients(args: ClientsArgs) -> anyhow::Result<()> {
    let (registry, _) = connect_as_operator(&args.operator).await?;
    if let Some(ClientsCommand::Show { key }) = &args.command {
        let key: VendorKey = key.parse().context("client key")?;
        let info = registry.client(key).await?;
        registry.close();
        return print_client(&info, args.json);
    }
    let all = registry.clients().await?;
    registry.close();
    if args.json {
        let rows: Vec<_> = all.iter().map(client_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no clients registered");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|c| {
            let last = c.last_outcome.as_ref().map_or("-".to_string(), |e| {
                let result = if e.outcome.ok { "ok" } else { "failed" };
                format!("{} {result}", e.outcome.name)
            });
            vec![
                c.key.to_string(),
                at(c.last_contact_ms),
                short(c.os().unwrap_or("-"), 30),
                c.package_count().map_or("-".to_string(), |n| n.to_string()),
                last,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["CLIENT", "LAST SEEN (UTC)", "OS", "PACKAGES", "LAST CALL"],
            &rows
        )
    );
    Ok(())
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::Token(token) = &args.action {
        return super::ops::token(token, &args.operator);
    }
    let (registry, key) = connect_as_operator(&args.operator).await?;
    let action = match args.action {
        AdminCommand::Audit { from, json } => {
            let log = registry.audit(from).await?;
            registry.close();
            return print_audit(&log, json);
        }
        AdminCommand::RevokeLease { lease, reason } => AdminAction::RevokeLease {
            lease: lease.parse::<LeaseId>().context("lease id (hex)")?,
            reason,
        },
        AdminCommand::Ban { name, key, reason } => AdminAction::Ban {
            name,
            key: vendor(&key)?,
            reason,
        },
        AdminCommand::Allow { name, key } => AdminAction::Allow {
            name,
            key: vendor(&key)?,
        },
        AdminCommand::Grant { name, key } => AdminAction::Grant {
            name,
            key: vendor(&key)?,
        },
        AdminCommand::Drain { name, reason } => AdminAction::Drain { name, reason },
        // Issued above, without a connection.
        AdminCommand::Token(_) => anyhow::bail!("a token is issued without connecting"),
        AdminCommand::Undrain { name } => AdminAction::Undrain { name },
        AdminCommand::RevokeKey {
            key: subject,
            reason,
            yes,
        } => {
            anyhow::ensure!(
                yes,
                "a revocation cannot be undone: add --yes to revoke {subject}"
            );
            let statement = OperatorStatement {
                operator: VendorKey::of(&key),
                subject: vendor(&subject)?,
                reason,
                issued_at_ms: now_ms(),
            };
            AdminAction::RevokeKey(SignedOperatorStatement::sign(&statement, &key))
        }
    };
    let entry = registry.admin(action).await?;
    registry.close();
    println!("done, audit entry {}: {}", entry.seq, entry.action);
    Ok(())
}

fn vendor(key: &str) -> anyhow::Result<VendorKey> {
    key.parse().with_context(|| format!("vendor key {key}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn print_audit(log: &[AuditEntry], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<_> = log
            .iter()
            .map(|e| {
                serde_json::json!({
                    "seq": e.seq,
                    "at_ms": e.at_ms,
                    "operator": e.operator.map(|k| k.to_string()),
                    "action": e.action.to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if log.is_empty() {
        println!("no operator actions logged");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = log
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                at(e.at_ms),
                e.operator
                    .map_or("offline".into(), |k| short(&k.to_string(), 20)),
                e.action.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["SEQ", "AT (UTC)", "OPERATOR", "ACTION"], &rows)
    );
    Ok(())
}
