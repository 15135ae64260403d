//! courier's side of each comparison, on the same work as etcd's: a registry on loopback
//! QUIC (its default embedded store), vendors each on their own connection and UDP socket.

use crate::registry_support::{
    bulk_load, bulk_load_in, config, echo_registration, key, queries, renew_for, serve, synthetic,
    vendors,
};
use courier_bench::stats::Run;
use courier_registry::{Registry, RegistryHandle};
use courier_transport::RegistryClient;
use std::path::Path;
use std::time::{Duration, Instant};

/// The synthetic registrations are spread over this many interfaces.
pub const INTERFACES: u32 = 1_000;

/// A registry serving an empty data directory `dir`.
pub async fn empty_registry(dir: &Path) -> anyhow::Result<RegistryHandle> {
    Ok(serve(Registry::open(config(dir))?).await)
}

/// `n` vendors (own key, connection, socket and lease each) renewing back to back, one
/// renewal in flight each, for `run`.
pub async fn renewals(h: &RegistryHandle, n: usize, first: u32, run: Duration) -> Run {
    let vs = vendors(h, n, false, first).await;
    // Warm up the connections first, as etcd's streams are set up before it is timed.
    renew_for(&vs, Duration::from_millis(300)).await;
    let start = Instant::now();
    let (_, lat) = renew_for(&vs, run).await;
    let run = Run::new(lat, Some(start.elapsed()));
    for (c, _) in vs {
        c.close();
    }
    run
}

/// `n` vendors registering back to back (a new name each time: signed manifest, the
/// 42 KB echo component, a lease; each registration checked and committed durably).
pub async fn registrations(h: &RegistryHandle, n: usize, first: u32, run: Duration) -> Run {
    let mut tasks = Vec::new();
    let start = Instant::now();
    for i in 0..n {
        let (addr, pin) = (h.local_addr(), h.pin());
        let seed = first + i as u32;
        tasks.push(tokio::spawn(async move {
            let k = key(seed);
            let c = RegistryClient::connect(addr, pin, "bench").await?;
            c.authenticate(&k).await?;
            let mut lat = Vec::new();
            let mut j = 0u64;
            while start.elapsed() < run {
                let reg = echo_registration(&k, &format!("reg{seed}/svc{j}"));
                let t = Instant::now();
                c.register(reg).await?;
                lat.push(t.elapsed().as_nanos() as u64);
                j += 1;
            }
            c.close();
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(lat)) => all.extend(lat),
            Ok(Err(e)) => eprintln!("a registering vendor stopped: {e:#}"),
            Err(e) => eprintln!("a registering vendor panicked: {e}"),
        }
    }
    Run::new(all, Some(start.elapsed()))
}

/// A registry holding `n` synthetic registrations over [`INTERFACES`] interfaces.
pub async fn loaded_registry(dir: &Path, n: u32) -> anyhow::Result<RegistryHandle> {
    let registry = Registry::open(config(dir))?;
    bulk_load(&registry, n, INTERFACES);
    Ok(serve(registry).await)
}

/// `count` lookups over QUIC from one client (a mix of plain, versioned, by function
/// and by attribute), from a task on the runtime's workers as an application's would be.
pub async fn lookups(h: &RegistryHandle, count: usize) -> anyhow::Result<Run> {
    let (addr, pin) = (h.local_addr(), h.pin());
    let qs = queries(count, INTERFACES);
    tokio::spawn(async move {
        let client = RegistryClient::connect(addr, pin, "bench").await?;
        for q in qs.iter().take(500) {
            client.find(q.clone()).await?;
        }
        let mut lat = Vec::with_capacity(qs.len());
        for q in &qs {
            let t = Instant::now();
            let found = client.find(q.clone()).await?;
            lat.push(t.elapsed().as_nanos() as u64);
            std::hint::black_box(found);
        }
        client.close();
        anyhow::Ok(Run::new(lat, None))
    })
    .await?
}

/// Run in a fresh child process: serve an empty `dir`, take `n` registrations while
/// serving (100 per durable commit), print `rss <bytes>` of this process (its anonymous
/// resident memory: see [`courier_test_support::resident::resident`]).
pub fn rss_child(dir: &Path, n: u32) -> anyhow::Result<()> {
    let rt = crate::runtime();
    let h = rt.block_on(empty_registry(dir))?;
    bulk_load_in(h.registry(), n, INTERFACES, 100);
    println!(
        "rss {}",
        courier_test_support::resident::resident(None).anon
    );
    rt.block_on(h.shutdown());
    Ok(())
}

/// The anonymous resident memory of a fresh registry process that took `n` registrations
/// live.
pub fn rss_of_registry(n: u32) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--rss-child")
        .arg(dir.path())
        .arg("--leases")
        .arg(n.to_string())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("rss ").and_then(|b| b.trim().parse().ok()))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the registry child printed no size ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// What the registry did with leases that all came due in the same millisecond, and how
/// lookups fared meanwhile.
pub struct Storm {
    /// From the due millisecond until the registry held no lease.
    pub all_gone_after: Duration,
    /// Lookups over QUIC in the two seconds before the due time (the anchor).
    pub calm: Run,
    /// Lookups over QUIC that started between the due time and the last lease's going.
    pub during: Run,
}

/// Loads `n` registrations whose leases all end in the same millisecond (about 30 s
/// ahead, after the load), serves them, and looks up in a loop over QUIC while they go.
pub async fn storm(dir: &Path, n: u32) -> anyhow::Result<Storm> {
    let registry = Registry::open(config(dir))?;
    let keys: Vec<_> = (0..100).map(key).collect();
    let base = registry.now();
    let lead = Duration::from_secs(30);
    let mut i = 0;
    while i < n {
        let end = (i + 5_000).min(n);
        let items = (i..end)
            .map(|j| (synthetic(j, INTERFACES, &keys), lead.as_millis() as u64))
            .collect();
        // The same `now` for every chunk: every lease ends at `base + lead`.
        registry.load_bulk(base, items)?;
        i = end;
    }
    let due =
        Instant::now() + lead.saturating_sub(Duration::from_millis(registry.now().0 - base.0));
    let h = serve(registry).await;
    let (addr, pin) = (h.local_addr(), h.pin());
    let qs = queries(10_000, INTERFACES);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looking = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = RegistryClient::connect(addr, pin, "bench").await?;
            tokio::time::sleep_until((due - Duration::from_secs(2)).into()).await;
            let mut timed = Vec::new();
            for q in qs.iter().cycle() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                std::hint::black_box(client.find(q.clone()).await?);
                timed.push((t, t.elapsed().as_nanos() as u64));
            }
            client.close();
            anyhow::Ok(timed)
        })
    };
    tokio::time::sleep_until(due.into()).await;
    while h.registry().counts().0 > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all_gone_after = due.elapsed();
    let gone = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let timed = looking.await??;
    h.shutdown().await;
    let pick = |from: Instant, to: Instant| {
        let lat = timed.iter().filter(|(t, _)| *t >= from && *t <= to);
        Run::new(lat.map(|(_, l)| *l).collect(), None)
    };
    Ok(Storm {
        all_gone_after,
        calm: pick(due - Duration::from_secs(2), due),
        during: pick(due, gone),
    })
}
