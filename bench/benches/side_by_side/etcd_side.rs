//! etcd's side of each comparison, through its own gRPC API (the `etcd-client` crate):
//! `LeaseKeepAlive`, serializable `Range` (get), `Put` with a lease, and a bulk fill.
//! Every client gets its own connection (a TCP socket each), as separate processes would.

use anyhow::Context;
use courier_bench::stats::Run;
use etcd_client::{Client, GetOptions, PutOptions};
use std::time::{Duration, Instant};

/// Connects `n` clients, each on its own connection.
pub async fn clients(url: &str, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            Client::connect([url], None)
                .await
                .with_context(|| format!("connecting to etcd at {url}"))?,
        );
    }
    Ok(out)
}

/// Each client grants itself a lease and keeps it alive on its own `LeaseKeepAlive`
/// stream, one keep-alive in flight at a time, for `run`.
pub async fn renewals(clients: &[Client], run: Duration) -> anyhow::Result<Run> {
    let mut streams = Vec::new();
    for c in clients {
        let mut c = c.clone();
        let lease = c.lease_grant(600, None).await?.id();
        streams.push(c.lease_keep_alive(lease).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut keeper, mut stream) in streams {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            while start.elapsed() < run {
                let t = Instant::now();
                keeper.keep_alive().await?;
                stream
                    .message()
                    .await?
                    .context("etcd closed the keep-alive stream")?;
                lat.push(t.elapsed().as_nanos() as u64);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Run::new(all, Some(start.elapsed())))
}

/// Each client grants a lease and puts one key under it (etcd's registration: two writes),
/// back to back, for `run`. Keys are `prefix/<client>/<n>`, values `value_len` bytes.
pub async fn registrations(
    clients: &[Client],
    run: Duration,
    prefix: &str,
    value_len: usize,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let mut c = c.clone();
        let prefix = format!("{prefix}/{i}");
        tasks.push(tokio::spawn(async move {
            let value = vec![b'm'; value_len];
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < run {
                let t = Instant::now();
                let lease = c.lease_grant(600, None).await?.id();
                let opts = PutOptions::new().with_lease(lease);
                c.put(format!("{prefix}/{n}"), value.clone(), Some(opts))
                    .await?;
                lat.push(t.elapsed().as_nanos() as u64);
                n += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Run::new(all, Some(start.elapsed())))
}

/// Fills etcd with `n` leases (TTL `ttl_s`) and a key under each (`fill/<i>`, 512-byte
/// values, about a manifest's size), four writers on each client's connection so that
/// etcd can batch its commits. Returns the time it took.
pub async fn fill(clients: &[Client], n: u32, ttl_s: i64) -> anyhow::Result<Duration> {
    const PER_CLIENT: usize = 4;
    let start = Instant::now();
    let writers = (clients.len() * PER_CLIENT) as u32;
    let per = n.div_ceil(writers);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut c = clients[w as usize % clients.len()].clone();
        let (from, to) = ((w * per).min(n), ((w + 1) * per).min(n));
        tasks.push(tokio::spawn(async move {
            let value = vec![b'm'; 512];
            for k in from..to {
                let lease = c.lease_grant(ttl_s, None).await?.id();
                let opts = PutOptions::new().with_lease(lease);
                c.put(format!("fill/{k}"), value.clone(), Some(opts))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// `count` serializable gets (served by the member it asks, without a consensus round:
/// etcd's cheapest read) of keys among the `n` filled ones, from one client.
pub async fn gets(client: &Client, n: u32, count: usize) -> anyhow::Result<Run> {
    let mut c = client.clone();
    let mut lat = Vec::with_capacity(count);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count + 500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("fill/{}", x % u64::from(n.max(1)));
        let t = Instant::now();
        let got = c
            .get(key, Some(GetOptions::new().with_serializable()))
            .await?;
        // The first 500 warm the connection up.
        if i >= 500 {
            lat.push(t.elapsed().as_nanos() as u64);
        }
        std::hint::black_box(got);
    }
    Ok(Run::new(lat, None))
}

/// One serializable get of a filled key from a new connection, both retried every
/// millisecond for up to `limit` while the member (just started again) does not answer.
pub async fn first_get(url: &str, limit: Duration) -> anyhow::Result<()> {
    let give_up = Instant::now() + limit;
    loop {
        let answered = async {
            let mut c = Client::connect([url], None).await?;
            c.get("fill/0", Some(GetOptions::new().with_serializable()))
                .await
        };
        match answered.await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > give_up => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// How many keys are left under `fill/` (a serializable count).
pub async fn remaining(client: &Client) -> anyhow::Result<i64> {
    let mut c = client.clone();
    let opts = GetOptions::new()
        .with_prefix()
        .with_count_only()
        .with_serializable();
    Ok(c.get("fill/", Some(opts)).await?.count())
}

/// What etcd did with leases that all came due together.
pub struct Storm {
    /// From the moment they were due until the last key was gone (`None`: not within the
    /// limit).
    pub all_gone_after: Option<Duration>,
    /// Keys left when the limit ended the wait (0 when all went).
    pub left: i64,
}

/// Waits until the `fill/` keys are all gone, counting from `due`, for at most `limit`
/// after it (polled every 100 ms on a fresh connection).
pub async fn storm(url: &str, due: Instant, limit: Duration) -> anyhow::Result<Storm> {
    let client = Client::connect([url], None).await?;
    tokio::time::sleep_until(due.into()).await;
    loop {
        let left = remaining(&client).await?;
        if left == 0 {
            return Ok(Storm {
                all_gone_after: Some(due.elapsed()),
                left,
            });
        }
        if due.elapsed() > limit {
            return Ok(Storm {
                all_gone_after: None,
                left,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
