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
    /// worker, for at most the deadline. `what` names the request in errors.
    pub fn run<T, F>(&self, what: &str, call: impl FnOnce(Client) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let deadline = self.deadline;
        let fut = call(self.client.clone());
        self.handle().spawn(async move {
            let _ = tx.send(tokio::time::timeout(deadline, fut).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(unavailable(what, &e)),
            Ok(Err(_)) => Err(StoreError::Unavailable(format!(
                "etcd did not answer {what} within {deadline:?} (no quorum, or no member reachable at {})",
                self.endpoints.join(",")
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd client stopped during {what}"
            ))),
        }
    }

    /// [`Etcd::run`] from async code: the same deadline, on the caller's runtime.
    pub async fn run_async<T, F>(
        &self,
        what: &str,
        call: impl FnOnce(Client) -> F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let join = self.handle().spawn(call(self.client.clone()));
        match tokio::time::timeout(self.deadline, join).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(unavailable(what, &e)),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("{what}: {e}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd did not answer {what} within {:?}",
                self.deadline
            ))),
        }
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
