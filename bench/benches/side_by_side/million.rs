//! A million registrations (`--only million`): courier's registry holding 1,000,000 of them
//! over 10,000 interfaces, restarted, against etcd holding as many leases with a key each,
//! restarted. Each side is measured after its restart: the time until it answers a read,
//! its resident memory per lease, and its reads (courier's lookup over QUIC against etcd's
//! serializable get). courier's in-process matcher at that size is set beside the same
//! matcher with a tenth of it (100,000 over 1,000 interfaces), to show what the size costs.
//!
//! courier's restarts run in a fresh child process (`--million-child DIR`), so that its
//! memory is what a restarted registry holds and nothing of the loading process.

use crate::registry_support::{bulk_load, config, percentiles, queries, serve};
use courier_bench::stats::{Run, human, mib, thousands};
use courier_bench::table::{Better, Row};
use courier_registry::{PreparedQuery, Registry};
use courier_test_support::etcd::EtcdMember;
use courier_test_support::resident::{Resident, resident};
use courier_transport::RegistryClient;
use std::path::Path;
use std::time::{Duration, Instant};

/// Interfaces the million registrations are spread over (100 registrations each).
pub const INTERFACES: u32 = 10_000;

/// Lookups (and gets) timed on each side.
const READS: usize = 5_000;

/// What a restarted courier registry measured of itself.
pub struct Restarted {
    /// From starting the process until the first lookup over QUIC was answered.
    pub first_answer: Duration,
    /// Resident memory after the reads.
    pub memory: Resident,
    /// The in-process matcher, over 20,000 queries twice.
    pub matched: Run,
    /// Lookups over QUIC from one client.
    pub lookups: Run,
}

/// Run in a fresh child process: open `dir` (filled by the parent with `n` registrations
/// over `interfaces`), serve it, answer a first lookup (printing when, as wall-clock time,
/// for the parent to count from the process's start), then time the matcher and lookups,
/// and print what it measured for the parent.
pub fn child(dir: &Path, interfaces: u32) -> anyhow::Result<()> {
    let rt = crate::runtime();
    let qs = queries(20_000, interfaces);
    let first = qs[0].clone();
    let start = Instant::now();
    let registry = Registry::open(config(dir))?;
    let opened = start.elapsed();
    let h = rt.block_on(serve(registry));
    let (addr, pin) = (h.local_addr(), h.pin());
    let client = rt.block_on(async move {
        let client = RegistryClient::connect(addr, pin, "bench").await?;
        client.find(first).await?;
        anyhow::Ok(client)
    })?;
    println!("answered_at_unix_ns {}", unix_ns());
    eprintln!(
        "  restarted: opened after {}, first lookup answered after {} (from the open)",
        human(opened),
        human(start.elapsed())
    );
    let prepared = qs
        .iter()
        .map(|q| PreparedQuery::new(q, 100))
        .collect::<Result<Vec<_>, _>>()?;
    let remote: Vec<_> = qs.iter().take(READS + 500).cloned().collect();
    let lookups = rt.block_on(rt.spawn(async move {
        // The first 500 warm the connection up, as etcd's do.
        for q in &remote[..500] {
            client.find(q.clone()).await?;
        }
        let mut lat = Vec::with_capacity(READS);
        for q in &remote[500..] {
            let t = Instant::now();
            std::hint::black_box(client.find(q.clone()).await?);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        client.close();
        anyhow::Ok(lat)
    }))??;
    let reg = h.registry().clone();
    let mut matched = Vec::with_capacity(2 * prepared.len());
    for p in prepared.iter().chain(prepared.iter()) {
        let now = reg.now();
        let t = Instant::now();
        std::hint::black_box(reg.match_leases(now, p));
        matched.push(t.elapsed().as_nanos() as u64);
    }
    let memory = resident(None);
    println!("anon {}", memory.anon);
    println!("file {}", memory.file);
    let (p50, p99, max) = percentiles(matched.clone());
    eprintln!("  match p50 {p50:?}, p99 {p99:?}, max {max:?}");
    println!("match {}", join(&matched));
    println!("lookup {}", join(&lookups));
    drop(reg);
    rt.block_on(h.shutdown());
    Ok(())
}

/// Wall-clock time now, in ns since the Unix epoch.
fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn join(lat: &[u64]) -> String {
    lat.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// Fills `dir` with `n` registrations over `interfaces` (in this process), then restarts it
/// in a fresh child process and reads back what the child measured.
fn restarted(dir: &Path, n: u32, interfaces: u32) -> anyhow::Result<Restarted> {
    {
        let registry = Registry::open(config(dir))?;
        let t = Instant::now();
        bulk_load(&registry, n, interfaces);
        registry.flush(registry.now())?;
        eprintln!(
            "courier: {} registrations over {} interfaces loaded in {}",
            thousands(f64::from(n)),
            thousands(f64::from(interfaces)),
            human(t.elapsed())
        );
    }
    let spawned = unix_ns();
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--million-child")
        .arg(dir)
        .arg("--million-interfaces")
        .arg(interfaces.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the restarted registry's process failed ({})",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
            .ok_or_else(|| anyhow::anyhow!("the restarted registry printed no `{key}`"))
    };
    let number = |key: &str| -> anyhow::Result<u64> { Ok(line(key)?.parse()?) };
    let run = |key: &str| -> anyhow::Result<Run> {
        let lat = line(key)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u64>, _>>()?;
        Ok(Run::new(lat, None))
    };
    let answered = u128::from(number("answered_at_unix_ns ")?);
    let first_answer = answered.saturating_sub(spawned);
    Ok(Restarted {
        first_answer: Duration::from_nanos(u64::try_from(first_answer)?),
        memory: Resident {
            anon: number("anon ")?,
            file: number("file ")?,
            shmem: 0,
        },
        matched: run("match ")?,
        lookups: run("lookup ")?,
    })
}

/// What a restarted etcd measured: time to its first answered get, memory, gets.
struct EtcdRestarted {
    first_answer: Duration,
    memory: Resident,
    gets: Run,
}

/// etcd with `n` leases and a key under each, stopped cleanly (SIGTERM, as courier's
/// loading process closes its store) and started again, timed from the start until its
/// first get is answered, as courier's restart is.
fn etcd_restarted(dir: &Path, n: u32) -> anyhow::Result<EtcdRestarted> {
    let rt = crate::runtime();
    // 1,000,000 keys of 512 B and their revisions pass etcd's default 2 GiB quota's
    // comfort; 8 GiB is the most etcd advises.
    let mut member = EtcdMember::start_with(dir, &["--quota-backend-bytes=8589934592"])?;
    let url = member.client_url();
    eprintln!(
        "etcd: filling {} leases with a key each (a few minutes)",
        thousands(f64::from(n))
    );
    let took = rt.block_on(async {
        let clients = crate::etcd_side::clients(&url, 64).await?;
        crate::etcd_side::fill(&clients, n, 3_600).await
    })?;
    eprintln!("etcd: filled in {}", human(took));
    member.stop()?;
    let start = Instant::now();
    member.start_again()?;
    let first_answer = rt.block_on(async {
        crate::etcd_side::first_get(&url, Duration::from_secs(120)).await?;
        anyhow::Ok(start.elapsed())
    })?;
    eprintln!(
        "etcd: restarted, first get answered after {}",
        human(first_answer)
    );
    let gets = rt.block_on(async {
        let client = crate::etcd_side::clients(&url, 1).await?;
        crate::etcd_side::gets(&client[0], n, READS).await
    })?;
    Ok(EtcdRestarted {
        first_answer,
        memory: resident(member.pid()),
        gets,
    })
}

/// The million's rows: lookup, memory per lease and restart against etcd (when
/// `etcd_dir` is given), and the matcher against a tenth of the registrations.
pub fn rows(n: u32, etcd_dir: Option<&Path>, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let tenth = (n / 10).max(1);
    let small_dir = tempfile::tempdir()?;
    let small = restarted(small_dir.path(), tenth, INTERFACES / 10)?;
    drop(small_dir);
    let dir = tempfile::tempdir()?;
    let big = restarted(dir.path(), n, INTERFACES)?;
    drop(dir);
    let count = thousands(f64::from(n));
    rows.push(Row::new(
        format!(
            "match p99 in-process among {count} over {} interfaces (anchor: {} over {})",
            thousands(f64::from(INTERFACES)),
            thousands(f64::from(tenth)),
            thousands(f64::from(INTERFACES / 10))
        ),
        (big.matched.p99().as_secs_f64(), big.matched.describe()),
        (small.matched.p99().as_secs_f64(), small.matched.describe()),
        Better::Lower,
    ));
    let Some(etcd_dir) = etcd_dir else {
        println!(
            "{count} registrations: courier answered its first lookup {} after its start, holds {} anonymous ({} B a lease), lookup {} (etcd: skipped, not installed)",
            human(big.first_answer),
            mib(big.memory.anon),
            big.memory.anon / u64::from(n),
            big.lookups.describe()
        );
        return Ok(());
    };
    let etcd = etcd_restarted(etcd_dir, n)?;
    rows.push(Row::new(
        format!(
            "lookup p50 among {count} after a restart (etcd: serializable get of one key; courier: a query matched over {} interfaces)",
            thousands(f64::from(INTERFACES))
        ),
        (big.lookups.p50().as_secs_f64(), big.lookups.describe()),
        (etcd.gets.p50().as_secs_f64(), etcd.gets.describe()),
        Better::Lower,
    ));
    let per_lease = |bytes: u64| bytes as f64 / f64::from(n);
    let describe = |m: Resident| {
        format!(
            "{:.0} B ({} anonymous; {} of mapped files besides)",
            per_lease(m.anon),
            mib(m.anon),
            mib(m.file)
        )
    };
    rows.push(Row::new(
        format!(
            "anonymous resident memory per lease, {count} leases, after a restart and the reads (etcd's mapped database file not counted)"
        ),
        (per_lease(big.memory.anon), describe(big.memory)),
        (per_lease(etcd.memory.anon), describe(etcd.memory)),
        Better::Lower,
    ));
    rows.push(Row::new(
        format!(
            "restart with {count} leases (each stopped cleanly), from the process's start until the first read is answered"
        ),
        (big.first_answer.as_secs_f64(), human(big.first_answer)),
        (etcd.first_answer.as_secs_f64(), human(etcd.first_answer)),
        Better::Lower,
    ));
    Ok(())
}
