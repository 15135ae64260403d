//! `courier usage`: what each client and service used (operator), as a table, JSON, or
//! CSV for an invoicing script.

use super::operator::connect_as_operator;
use crate::cli::{UsageArgs, UsageGroup};
use crate::output::{short, table};
use courier_protocol::{UsageBy, UsageQuery, UsageRow};
use std::time::{SystemTime, UNIX_EPOCH};

/// The CSV columns, in order; an invoicing script can rely on them.
const CSV_HEADER: [&str; 7] = [
    "client",
    "service",
    "handed_out",
    "bytes",
    "calls",
    "failed",
    "since",
];

pub async fn run(args: UsageArgs) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let since_ms = now.saturating_sub(args.since.as_millis() as u64);
    let by = match args.by {
        UsageGroup::Client => UsageBy::Client,
        UsageGroup::Service => UsageBy::Service,
        UsageGroup::ClientService => UsageBy::ClientService,
    };
    let (registry, _) = connect_as_operator(&args.operator).await?;
    let rows = registry.usage(UsageQuery { since_ms, by }).await?;
    registry.close();
    let since = super::client::at(since_ms);
    if args.csv {
        print!("{}", csv(&rows, &since)?);
    } else if args.json {
        let rows: Vec<_> = rows.iter().map(row_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"since": since, "rows": rows}))?
        );
    } else if rows.is_empty() {
        println!("no usage since {since}");
    } else {
        print!("{}", text(&rows, by));
    }
    Ok(())
}

fn client_of(r: &UsageRow) -> String {
    r.client
        .map_or_else(|| "(anonymous)".to_string(), |k| short(&k.to_string(), 16))
}

fn row_json(r: &UsageRow) -> serde_json::Value {
    serde_json::json!({
        "client": r.client.map(|k| k.to_string()),
        "service": r.service,
        "handed_out": r.handed_out,
        "bytes": r.bytes,
        "calls": r.calls,
        "failed": r.failed,
    })
}

/// One line per row under a header, fields quoted where they must be.
fn csv(rows: &[UsageRow], since: &str) -> anyhow::Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_HEADER)?;
    for r in rows {
        out.write_record([
            r.client.map(|k| k.to_string()).unwrap_or_default(),
            r.service.clone().unwrap_or_default(),
            r.handed_out.to_string(),
            r.bytes.to_string(),
            r.calls.to_string(),
            r.failed.to_string(),
            since.to_string(),
        ])?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}

fn text(rows: &[UsageRow], by: UsageBy) -> String {
    let mut header = Vec::new();
    if by != UsageBy::Service {
        header.push("CLIENT");
    }
    if by != UsageBy::Client {
        header.push("SERVICE");
    }
    header.extend(["HANDED OUT", "BYTES", "CALLS", "FAILED"]);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = Vec::new();
            if by != UsageBy::Service {
                row.push(client_of(r));
            }
            if by != UsageBy::Client {
                row.push(r.service.clone().unwrap_or_default());
            }
            row.extend([
                r.handed_out.to_string(),
                r.bytes.to_string(),
                r.calls.to_string(),
                r.failed.to_string(),
            ]);
            row
        })
        .collect();
    table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_protocol::{SigningKey, VendorKey};

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let key = VendorKey::of(&SigningKey::from_bytes(&[3; 32]));
        let rows = [
            UsageRow {
                client: Some(key),
                service: Some("acme/echo".into()),
                handed_out: 2,
                bytes: 100,
                calls: 3,
                failed: 1,
            },
            UsageRow {
                client: None,
                service: Some("odd, \"name\"".into()),
                ..Default::default()
            },
        ];
        let text = csv(&rows, "2026-12-03T00:00:00Z").unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap(), CSV_HEADER.as_slice());
        let records: Vec<_> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(&records[0][0], key.to_string());
        let counts: Vec<&str> = records[0].iter().skip(2).take(4).collect();
        assert_eq!(counts, ["2", "100", "3", "1"]);
        assert_eq!(&records[1][0], "");
        assert_eq!(&records[1][1], "odd, \"name\"");
    }

    #[test]
    fn the_table_has_the_columns_of_its_grouping() {
        let rows = [UsageRow::default()];
        let header = |by| -> Vec<String> {
            let text = text(&rows, by);
            let first = text.lines().next().unwrap_or_default().to_string();
            first
                .split("  ")
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect()
        };
        let counts = ["HANDED OUT", "BYTES", "CALLS", "FAILED"];
        assert_eq!(header(UsageBy::Client), [&["CLIENT"][..], &counts].concat());
        assert_eq!(
            header(UsageBy::Service),
            [&["SERVICE"][..], &counts].concat()
        );
        assert_eq!(
            header(UsageBy::ClientService),
            [&["CLIENT", "SERVICE"][..], &counts].concat()
        );
    }
}
