//! The connection to etcd: an `etcd-client` [`Client`] on a small runtime of its own, so
//! that the registry's blocking store calls can wait for etcd from any thread that is not
//! an async worker, each under a deadline. A call that etcd does not answer in time (no
//! quorum, no member reachable) is [`StoreError::Unavailable`], never a hang.

use crate::ClusterError;
use courier_registry::StoreError;
use etcd_client::{Client, ConnectOptions};
use std::future::Future;
use std::time::Duration;

/// How long one etcd request may take before it counts as unavailable.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// A client of one etcd cluster.
pub struct Etcd {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    endpoints: Vec<String>,
    deadline: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`) and checks that it
    /// answers within `deadline`: an unreachable cluster is an error naming the URLs.
    pub fn connect(endpoints: &[String], deadline: Duration) -> Result<Etcd, ClusterError> {
        if endpoints.is_empty() {
            return Err(ClusterError::NoEndpoints);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("courier-etcd")
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let options = ConnectOptions::new()
            .with_connect_timeout(deadline)
            .with_timeout(deadline)
            .with_keep_alive(Duration::from_secs(2), deadline)
            .with_require_leader(true);
        let urls = endpoints.to_vec();
        let connect = runtime.block_on(async move {
            tokio::time::timeout(deadline, async move {
                let mut client = Client::connect(&urls, Some(options)).await?;
                client.status().await?;
                Ok::<_, etcd_client::Error>(client)
            })
            .await
        });
        let unreachable = |why: String| ClusterError::Unreachable {
            endpoints: endpoints.join(","),
            why,
        };
        let client = match connect {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {deadline:?}"))),
        };
        Ok(Etcd {
            runtime: Some(runtime),
            client,
            endpoints: endpoints.to_vec(),
            deadline,
        })
    }

    /// The URLs given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A handle of the client (cheap: it shares the connection).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The runtime the client runs on, for tasks of the node (session keep-alive).
    pub fn handle(&self) -> tokio::runtime::Handle {
        match &self.runtime {
            Some(rt) => rt.handle().clone(),
            None => unreachable!("the runtime lives until drop"),
        }
    }

    /// Runs `call` on the client and waits for it, from a thread that is not an async
    /// worker, for at most the deadline. `what` names the request in errors. A transient
    /// failure (etcd electing a leader, a member that does not answer while others do) is
    /// tried again within the deadline: every request made here is idempotent (reads, and
    /// transactions that put and delete given values under a fence).
    pub fn run<T, F, C>(&self, what: &str, call: C) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        C: FnOnce(Client) -> F + Clone + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let deadline = self.deadline;
        let client = self.client.clone();
        self.handle().spawn(async move {
            let _ = tx.send(retried(deadline, client, call).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(unavailable(what, &e)),
            Ok(Err(Elapsed)) => Err(StoreError::Unavailable(format!(
                "etcd did not answer {what} within {deadline:?} (no quorum, or no member reachable at {})",
                self.endpoints.join(",")
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd client stopped during {what}"
            ))),
        }
    }
}

/// The deadline passed.
struct Elapsed;

/// Pause between tries of a request that failed transiently.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs `call` until it succeeds, fails for good, or `deadline` passes.
async fn retried<T, F, C>(
    deadline: Duration,
    client: Client,
    call: C,
) -> Result<Result<T, etcd_client::Error>, Elapsed>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
    C: FnOnce(Client) -> F + Clone,
{
    let start = tokio::time::Instant::now();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, (call.clone())(client.clone())).await {
            Err(_) => return Err(Elapsed),
            Ok(Err(e)) if transient(&e) && start.elapsed() + RETRY_PAUSE < deadline => {
                tracing::debug!("etcd request failed, trying again: {e}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Ok(done) => return Ok(done),
        }
    }
}

/// Whether trying again may succeed: etcd without a leader for now, a request that timed
/// out inside etcd, a member that cannot be reached.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        // gRPC's UNAVAILABLE (14: no leader, leader changed, request timed out, connection
        // refused) and DEADLINE_EXCEEDED (4).
        // A connection to a member that went away surfaces as UNKNOWN "transport error".
        etcd_client::Error::GRpcStatus(s) => {
            matches!(s.code() as i32, 4 | 14) || s.message().contains("transport error")
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// An error etcd answered: unavailable (nothing was written, or it is unknown whether it
/// was: the caller never acknowledged it either way).
fn unavailable(what: &str, e: &etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd {what}: {e}"))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Dropped possibly inside another runtime's async context: never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Why a watch stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchError {
    /// etcd no longer holds the history from where the watch was (compacted up to this
    /// revision): the store must be read again.
    #[error("etcd's history is compacted past the watch (to revision {0})")]
    Compacted(i64),
    /// The watch broke (etcd, or the connection to it, lost): it can be opened again from
    /// where it was, and nothing is missed.
    #[error("{0}")]
    Broken(String),
}

/// The changes under a prefix from a revision on, one watch answer at a time.
pub(crate) struct Changes(etcd_client::WatchStream);

impl Changes {
    /// Watches every key under `prefix` from revision `from` on, each change with the value
    /// it replaced or deleted (a removal's event describes what was removed).
    pub(crate) async fn open(
        mut client: Client,
        prefix: Vec<u8>,
        from: i64,
    ) -> Result<Self, WatchError> {
        let options = etcd_client::WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_prev_key();
        let stream = client
            .watch(prefix, Some(options))
            .await
            .map_err(|e| WatchError::Broken(e.to_string()))?;
        Ok(Self(stream))
    }

    /// The next answer; `None` when the watch ended, an error when it broke or etcd
    /// cancelled it (its history compacted past where the watch was).
    pub(crate) async fn next(&mut self) -> Result<Option<etcd_client::WatchResponse>, WatchError> {
        let Some(resp) = self
            .0
            .message()
            .await
            .map_err(|e| WatchError::Broken(e.to_string()))?
        else {
            return Ok(None);
        };
        if resp.canceled() {
            return Err(match resp.compact_revision() {
                0 => WatchError::Broken(format!("watch cancelled: {}", resp.cancel_reason())),
                r => WatchError::Compacted(r),
            });
        }
        Ok(Some(resp))
    }
}
