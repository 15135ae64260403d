//! `cargo bench -p courier-bench`: courier and etcd (Debian's
//! `etcd-server`, started here on loopback) on the same work in one sitting, and courier's
//! warm call against a native QUIC request, printed as one table of ratios with both
//! sides' figures. This machine's speed drifts by up to 2× between hours, so only figures
//! from one sitting are compared. Without etcd installed, its rows print one skip line.
#![allow(missing_docs)]

mod call;
#[path = "../../../client-vm/benches/support/mod.rs"]
mod client_support;
mod courier_side;
mod etcd_side;
mod million;
#[path = "../../../registry/benches/support/mod.rs"]
mod registry_support;

use clap::Parser;
use courier_bench::stats::{Run, human, mib, thousands};
use courier_bench::table::{self, Better, Row};
use courier_test_support::etcd::{EtcdMember, SKIP_LINE, etcd_binary};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "courier and etcd side by side, in one sitting, as ratios")]
struct Args {
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 4)]
    secs: u64,
    /// Leases (registrations, keys) for the memory and lookup rows.
    #[arg(long, default_value_t = 100_000)]
    leases: u32,
    /// Calls timed for each of the call rows.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// Leases for the expiry storm (all due together); `--leases` by default.
    #[arg(long)]
    storm_leases: Option<u32>,
    /// Only these sections (renewals, register, lookup, expiry, call); all by default.
    /// `million` (registrations for the million's rows, about 15 minutes with etcd's fill)
    /// runs only when named.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Registrations (and etcd leases) for the million's rows.
    #[arg(long, default_value_t = 1_000_000)]
    million: u32,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: the fresh registry process whose memory the memory row reports.
    #[arg(long, hide = true)]
    rss_child: Option<PathBuf>,
    /// Internal: the restarted registry process of the million's rows.
    #[arg(long, hide = true)]
    million_child: Option<PathBuf>,
    /// Internal: the interfaces that restarted registry's registrations are spread over.
    #[arg(long, hide = true, default_value_t = million::INTERFACES)]
    million_interfaces: u32,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.named(section) || (self.only.is_empty() && section != "million")
    }

    fn named(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    registry_support::runtime()
}

fn rate_row(measure: &str, courier: &Run, etcd: &Run) -> Row {
    Row::new(
        measure,
        (courier.per_sec.unwrap_or(0.0), courier.describe()),
        (etcd.per_sec.unwrap_or(0.0), etcd.describe()),
        Better::Higher,
    )
}

fn p50_row(measure: &str, courier: &Run, anchor: &Run) -> Row {
    Row::new(
        measure,
        (courier.p50().as_secs_f64(), courier.describe()),
        (anchor.p50().as_secs_f64(), anchor.describe()),
        Better::Lower,
    )
}

/// Renewals with 1 and 64 clients, and registrations with 64.
fn lease_rows(args: &Args, url: &str, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let rt = runtime();
    let run = Duration::from_secs(args.secs);
    let dir = tempfile::tempdir()?;
    let h = rt.block_on(courier_side::empty_registry(dir.path()))?;
    let etcd = rt.block_on(etcd_side::clients(url, 64))?;
    if args.wants("renewals") {
        for n in [1usize, 64] {
            eprintln!("renewals, {n} client(s): etcd, then courier");
            let e = rt.block_on(etcd_side::renewals(&etcd[..n], run))?;
            let c = rt.block_on(courier_side::renewals(&h, n, 10_000 * n as u32, run));
            let what = if n == 1 {
                "1 client"
            } else {
                "64 clients, a socket each"
            };
            rows.push(rate_row(
                &format!("lease renewals/s, {what} (etcd: `LeaseKeepAlive`)"),
                &c,
                &e,
            ));
        }
    }
    if args.wants("register") {
        eprintln!("registrations, 64 clients: etcd, then courier");
        let e = rt.block_on(etcd_side::registrations(&etcd, run, "reg", 512))?;
        let c = rt.block_on(courier_side::registrations(&h, 64, 50_000, run));
        rows.push(rate_row(
            "registrations/s, 64 clients (etcd: lease grant + put of 512 B; courier: signed manifest + 42 KB component, checked, durable)",
            &c,
            &e,
        ));
    }
    rt.block_on(h.shutdown());
    Ok(())
}

/// Memory for `leases` leases, and lookups among them, each side freshly started.
fn lookup_rows(args: &Args, etcd_dir: &std::path::Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let rt = runtime();
    let n = args.leases;
    let member = EtcdMember::start(etcd_dir)?;
    let url = member.client_url();
    let etcd = rt.block_on(etcd_side::clients(&url, 64))?;
    eprintln!("etcd: filling {n} leases with a key each");
    let took = rt.block_on(etcd_side::fill(&etcd, n, 3_600))?;
    eprintln!("etcd: filled in {}", human(took));
    // Anonymous memory on both sides: etcd maps its database file, whose cached pages its
    // RSS would count; courier reads its own.
    let etcd_rss = courier_test_support::resident::resident(member.pid()).anon;
    eprintln!("courier: a fresh registry process taking {n} registrations");
    let courier_rss = courier_side::rss_of_registry(n)?;
    rows.push(Row::new(
        format!(
            "anonymous resident memory holding {} leases (etcd's mapped database file not counted)",
            thousands(f64::from(n))
        ),
        (courier_rss as f64, mib(courier_rss)),
        (etcd_rss as f64, mib(etcd_rss)),
        Better::Lower,
    ));
    eprintln!("lookups among {n}: etcd, then courier");
    let e = rt.block_on(etcd_side::gets(&etcd[0], n, 5_000))?;
    drop(etcd);
    drop(member);
    let dir = tempfile::tempdir()?;
    let h = rt.block_on(courier_side::loaded_registry(dir.path(), n))?;
    let c = rt.block_on(courier_side::lookups(&h, 5_000))?;
    rows.push(p50_row(
        &format!(
            "lookup p50 among {} (etcd: serializable get of one key; courier: a query matched over {} interfaces)",
            thousands(f64::from(n)),
            courier_side::INTERFACES
        ),
        &c,
        &e,
    ));
    rt.block_on(h.shutdown());
    Ok(())
}

/// The expiry of leases that all come due together. etcd's come due together after a
/// restart: its new leader gives every lease a full TTL from the moment it takes office.
fn expiry_rows(
    args: &Args,
    etcd_dir: Option<&std::path::Path>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let rt = runtime();
    let n = args.storm_leases.unwrap_or(args.leases);
    eprintln!("courier: {n} leases due in the same millisecond");
    let dir = tempfile::tempdir()?;
    let c = rt.block_on(courier_side::storm(dir.path(), n))?;
    // The longest wait is what a stall shows: the storm's fast lookups would hide it in p99.
    rows.push(Row::new(
        "longest lookup wait during the expiry storm (anchor: the same lookups in the 2 s before it)",
        (c.during.max().as_secs_f64(), format!("max {}, {}", human(c.during.max()), c.during.describe())),
        (c.calm.max().as_secs_f64(), format!("max {}, {}", human(c.calm.max()), c.calm.describe())),
        Better::Lower,
    ));
    let Some(etcd_dir) = etcd_dir else {
        println!(
            "expiry of {n} leases due together: courier {} (etcd: skipped, not installed)",
            human(c.all_gone_after)
        );
        return Ok(());
    };
    // Long enough that none ends while etcd is being filled (it takes about 1,000-3,000
    // leases and keys a second here).
    let ttl = Duration::from_secs(30 + u64::from(n) / 1_000);
    let mut member = EtcdMember::start(etcd_dir)?;
    let url = member.client_url();
    eprintln!("etcd: filling {n} leases of {ttl:?}, then restarting it");
    let took = rt.block_on(async {
        let clients = etcd_side::clients(&url, 64).await?;
        etcd_side::fill(&clients, n, ttl.as_secs() as i64).await
    })?;
    if took >= ttl {
        println!(
            "etcd took {} to fill, longer than its leases' {ttl:?}: no expiry row (try fewer --storm-leases)",
            human(took)
        );
        return Ok(());
    }
    member.restart()?;
    let due = std::time::Instant::now() + ttl;
    let limit = Duration::from_secs(300);
    let e = rt.block_on(etcd_side::storm(&url, due, limit))?;
    let etcd_figure = match e.all_gone_after {
        Some(d) => human(d),
        None => format!("{} keys left after {}", e.left, human(limit)),
    };
    rows.push(Row::new(
        format!(
            "expiry of {} leases due together, until all are gone",
            thousands(f64::from(n))
        ),
        (c.all_gone_after.as_secs_f64(), human(c.all_gone_after)),
        (e.all_gone_after.unwrap_or(limit).as_secs_f64(), etcd_figure),
        Better::Lower,
    ));
    Ok(())
}

fn call_rows(args: &Args, rows: &mut Vec<Row>) {
    eprintln!("warm calls and native requests, {} each", args.calls);
    let w = client_support::world();
    let calls = call::measure(&w, args.calls);
    rows.push(p50_row(
        "warm one-shot call p50 (anchor: native QUIC request, kept stream)",
        &calls.warm,
        &calls.native_kept_stream,
    ));
    rows.push(p50_row(
        "warm one-shot call p50 (anchor: native QUIC request, new stream)",
        &calls.warm,
        &calls.native_new_stream,
    ));
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.rss_child {
        return courier_side::rss_child(dir, args.leases);
    }
    if let Some(dir) = &args.million_child {
        return million::child(dir, args.million_interfaces);
    }
    let mut rows = Vec::new();
    let etcd_wanted = ["renewals", "register", "lookup", "expiry", "million"]
        .iter()
        .any(|s| args.wants(s));
    if etcd_wanted {
        if etcd_binary().is_none() {
            println!("{SKIP_LINE}");
            if args.wants("expiry") {
                expiry_rows(&args, None, &mut rows)?;
            }
            if args.wants("million") {
                million::rows(args.million, None, &mut rows)?;
            }
        } else {
            let dir = tempfile::tempdir()?;
            {
                let member = EtcdMember::start(&dir.path().join("leases"))?;
                lease_rows(&args, &member.client_url(), &mut rows)?;
            }
            if args.wants("lookup") {
                lookup_rows(&args, &dir.path().join("lookup"), &mut rows)?;
            }
            if args.wants("expiry") {
                expiry_rows(&args, Some(&dir.path().join("expiry")), &mut rows)?;
            }
            if args.wants("million") {
                million::rows(args.million, Some(&dir.path().join("million")), &mut rows)?;
            }
        }
    }
    if args.wants("call") {
        call_rows(&args, &mut rows);
    }
    println!(
        "\ncourier side by side, {} (this machine: {} cores)\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{}", table::render(&rows));
    Ok(())
}
