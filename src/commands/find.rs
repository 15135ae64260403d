//! `courier find`: ranked candidates for an interface, metadata only.

use crate::cli::FindArgs;
use crate::output::{millis, short, table};
use courier_protocol::ServiceQuery;

pub async fn run(args: FindArgs) -> anyhow::Result<()> {
    let (interface, version_req) = super::split_interface(&args.interface)?;
    let client = args.registry.connect("courier-cli/find").await?;
    let query = ServiceQuery {
        interface,
        version_req,
        functions: args.functions,
        attributes: args
            .attributes
            .iter()
            .map(|a| super::parse_constraint(a))
            .collect(),
        limit: args.limit,
    };
    let candidates = client.find(query).await?;
    client.close();
    if args.json {
        let rows: Vec<serde_json::Value> = candidates
            .iter()
            .map(|c| {
                let m = c.manifest.peek().ok();
                serde_json::json!({
                    "lease": c.lease.to_string(),
                    "interface": c.interface,
                    "remaining_ms": c.remaining_ms,
                    "name": m.as_ref().map(|m| m.name.clone()),
                    "version": m.as_ref().map(|m| m.version.clone()),
                    "vendor": m.as_ref().map(|m| m.vendor_key.to_string()),
                    "component": m.as_ref().map(|m| m.component_hash.to_string()),
                    "size": m.as_ref().map(|m| m.component_size),
                    "endpoints": m.as_ref().map(|m| m.endpoints.clone()),
                    "attributes": m.as_ref().map(|m| m.attributes.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if candidates.is_empty() {
        println!("no proxy matches {}", args.interface);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let m = c.manifest.peek().ok();
            vec![
                (i + 1).to_string(),
                m.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                m.as_ref().map(|m| m.version.clone()).unwrap_or_default(),
                c.interface.clone(),
                m.as_ref()
                    .map(|m| short(&m.vendor_key.to_string(), 20))
                    .unwrap_or_default(),
                m.as_ref()
                    .map(|m| format!("{} KB", m.component_size.div_ceil(1024)))
                    .unwrap_or_default(),
                millis(c.remaining_ms),
                c.lease.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "#",
                "NAME",
                "VERSION",
                "INTERFACE",
                "VENDOR",
                "SIZE",
                "LEASE LEFT",
                "LEASE"
            ],
            &rows
        )
    );
    Ok(())
}
