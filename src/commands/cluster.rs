//! Cluster mode: `courier registry serve --etcd ...` (a registry node whose state is in
//! etcd) and `courier cluster status`. Built with `--features cluster`; without it both
//! say in one line how to build it.

use crate::cli::{ClusterCommand, ClusterStatusArgs, ServeArgs};
use courier_protocol::VendorKey;
use courier_registry::{RegistryConfig, ServerConfig};

/// What a build without cluster mode says.
#[cfg(not(feature = "cluster"))]
const NOT_BUILT: &str = "this courier was built without cluster mode: install protoc \
    (`apt-get install protobuf-compiler`) and build with `cargo build --release --features cluster`";

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status(args) => status(args).await,
    }
}

#[cfg(not(feature = "cluster"))]
async fn status(_: ClusterStatusArgs) -> anyhow::Result<()> {
    anyhow::bail!(NOT_BUILT)
}

#[cfg(not(feature = "cluster"))]
pub async fn serve_node(
    _: ServeArgs,
    _: RegistryConfig,
    _: ServerConfig,
    _: (VendorKey, bool),
) -> anyhow::Result<()> {
    anyhow::bail!(NOT_BUILT)
}

#[cfg(feature = "cluster")]
pub use built::{serve_node, status};

#[cfg(feature = "cluster")]
mod built {
    use super::*;
    use anyhow::Context;
    use courier_cluster::{Advert, Node, NodeConfig, Session, Standby, Writer};
    use std::sync::Arc;

    pub async fn status(args: ClusterStatusArgs) -> anyhow::Result<()> {
        let cluster = args.cluster.clone();
        let st = tokio::task::spawn_blocking(move || courier_cluster::status(&args.etcd, &cluster))
            .await??;
        if args.json {
            let nodes: Vec<_> = st
                .nodes
                .iter()
                .map(|n| {
                    serde_json::json!({
                        "name": n.name,
                        "writer": n.writer,
                        "addr": n.advert.as_ref().map(|a| a.addr.to_string()),
                        "pin": n.advert.as_ref().map(|a| a.pin.to_string()),
                        "session_ttl_s": n.session_ttl_s,
                        "lag_revisions": n.lag.map(|(behind, _)| behind),
                        "lag_said_s_ago": n.lag.map(|(_, ago)| ago),
                    })
                })
                .collect();
            let members: Vec<_> = st
                .members
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "name": m.name,
                        "id": format!("{:x}", m.id),
                        "client_urls": m.client_urls,
                        "leader": m.leader,
                        "healthy": m.healthy,
                    })
                })
                .collect();
            let out = serde_json::json!({
                "cluster": st.cluster,
                "revision": st.revision,
                "writer": st.writer,
                "registrations": st.registrations,
                "nodes": nodes,
                "etcd_members": members,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        println!(
            "cluster {}: {} registrations, etcd revision {}",
            st.cluster, st.registrations, st.revision
        );
        println!("writer: {}", st.writer.as_deref().unwrap_or("none elected"));
        println!("\nnodes:");
        println!(
            "  {:<12} {:<8} {:>8}  {:<14} {:<22} PIN",
            "NAME", "ROLE", "SESSION", "LAG", "ADDRESS"
        );
        for n in &st.nodes {
            let role = if n.writer { "writer" } else { "standby" };
            let (addr, pin) = n.advert.as_ref().map_or_else(
                || ("-".to_string(), "-".to_string()),
                |a| (a.addr.to_string(), a.pin.to_string()),
            );
            // Revisions of etcd a standby had not applied when it last said, and when.
            let lag = match (n.writer, n.lag) {
                (true, _) => "-".to_string(),
                (false, Some((behind, ago))) => format!("{behind} ({ago}s ago)"),
                (false, None) => "not said yet".to_string(),
            };
            println!(
                "  {:<12} {:<8} {:>7}s  {:<14} {:<22} {pin}",
                n.name, role, n.session_ttl_s, lag, addr
            );
        }
        println!("\netcd members:");
        for m in &st.members {
            println!(
                "  {:<12} {:<28} {}{}",
                m.name,
                m.client_urls.join(","),
                if m.healthy {
                    "healthy"
                } else {
                    "NOT ANSWERING"
                },
                if m.leader { ", leader" } else { "" }
            );
        }
        Ok(())
    }

    /// How a node's time in the cluster ended.
    enum Ended {
        /// Ctrl-C: it left the cluster.
        Stopped,
        /// Its etcd session ended (etcd unreachable for longer than the session's TTL):
        /// it no longer holds its name or its election.
        SessionLost {
            /// Whether it was the writer (and so stepped down).
            was_writer: bool,
        },
    }

    /// How long a node whose session ended waits between tries to join again.
    const REJOIN_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

    /// Joins the cluster and serves: as a standby (lookups, fetches and reads from the
    /// writer's commits, followed through etcd) until this node is elected the writer, then
    /// as the writer (the registry opened on etcd through the restart rule), until Ctrl-C.
    /// A node whose etcd session ends steps down and joins again by itself, as a standby,
    /// once etcd answers. Errors at the first join (etcd unreachable, a name taken, another
    /// cluster's directory) end the command.
    pub async fn serve_node(
        args: ServeArgs,
        config: RegistryConfig,
        server: ServerConfig,
        operator: (VendorKey, bool),
    ) -> anyhow::Result<()> {
        let mut first = true;
        loop {
            let ended = serve_once(&args, config.clone(), server.clone(), operator).await;
            let node = &args.cluster.node;
            match ended {
                Ok(Ended::Stopped) => return Ok(()),
                Ok(Ended::SessionLost { was_writer }) => eprintln!(
                    "node {node} lost its etcd session{}: joining the cluster again as a standby",
                    if was_writer {
                        " and stepped down (another node may write now)"
                    } else {
                        ""
                    }
                ),
                Err(e) if first => return Err(e),
                Err(e) => eprintln!(
                    "node {node} cannot join the cluster again yet ({e:#}); trying again in {}s",
                    REJOIN_PAUSE.as_secs()
                ),
            }
            first = false;
            tokio::select! {
                () = tokio::time::sleep(REJOIN_PAUSE) => {}
                r = tokio::signal::ctrl_c() => return r.context("waiting for Ctrl-C"),
            }
        }
    }

    /// One membership of the cluster, from joining to Ctrl-C or the session's end.
    async fn serve_once(
        args: &ServeArgs,
        config: RegistryConfig,
        server: ServerConfig,
        operator: (VendorKey, bool),
    ) -> anyhow::Result<Ended> {
        let c = &args.cluster;
        let node_config = NodeConfig {
            session_ttl: c.session_ttl,
            ..NodeConfig::new(c.etcd.clone(), &c.cluster, &c.node)
        };
        let node = tokio::task::spawn_blocking(move || Node::join(node_config))
            .await?
            .with_context(|| format!("node {} cannot join cluster {}", c.node, c.cluster))?;
        let node = Arc::new(node);
        let writer = {
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.leader()).await??
        };
        println!(
            "node {} joined cluster {} on etcd {}",
            c.node,
            c.cluster,
            c.etcd.join(",")
        );
        let dir = args.data_dir.clone();
        let (identity, _) = tokio::task::spawn_blocking(move || {
            courier_transport::Identity::load_or_generate(&dir)
        })
        .await?
        .context("the node's TLS identity")?;
        let advert = Advert {
            addr: c.advertise.unwrap_or(args.listen),
            pin: identity.pin(),
        };
        {
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.advertise(&advert))
                .await?
                .context("cannot advertise the node in etcd")?;
        }
        // Until elected, a standby: it follows the writer's commits and answers lookups,
        // fetches, reads and the renewals of the vendors connected to it; other writes go
        // to the writer.
        let (n, dir, standby_config) = (node.clone(), args.data_dir.clone(), config.clone());
        let standby = tokio::task::spawn_blocking(move || Standby::open(&n, &dir, standby_config))
            .await?
            .context("cannot open the standby's registry on etcd")?;
        // This node's own key, as a parent of child registries (each node has its own).
        let (own, _) = super::super::registry::data_key(
            &args.data_dir,
            crate::cli::REGISTRY_KEY_FILE,
            "registry key",
        )?;
        standby.registry().place_in_hierarchy(own, Vec::new());
        let standby_handle = courier_registry::serve(standby.registry().clone(), server.clone())
            .await
            .with_context(|| format!("cannot serve on {}", args.listen))?;
        println!(
            "  serves at {} with pin {}",
            c.advertise.unwrap_or(standby_handle.local_addr()),
            identity.pin()
        );
        if let Some(w) = writer {
            println!(
                "  standby: {w} writes; this node answers lookups, fetches and renewals, copies the \
                 writer's components and takes over when it goes"
            );
        }
        let mut session = node.session();
        let lost = async move {
            while session.changed().await.is_ok() {
                if *session.borrow() == Session::Lost {
                    return;
                }
            }
        };
        let fence = tokio::select! {
            f = node.lead() => f?,
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                standby_handle.shutdown().await;
                let n = node.clone();
                tokio::task::spawn_blocking(move || n.leave()).await?;
                return Ok(Ended::Stopped);
            }
            () = lost => {
                standby_handle.shutdown().await;
                return Ok(Ended::SessionLost { was_writer: false });
            }
        };
        // The standby's socket stays bound: connections that come while the state loads
        // wait for the writer's server instead of finding nothing at this address.
        let listener = standby_handle.hand_over().await;
        println!("  elected the cluster's writer: loading its state from etcd");
        let (dir, n) = (args.data_dir.clone(), node.clone());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // The last writer's clock carried on: this node's never compared with it. Vendors
        // connected to the other nodes renew there: their rows move the writer's
        // deadlines on.
        // The standby's events go on at the writer: subscribers lose nothing.
        let writer = tokio::task::spawn_blocking(move || {
            Writer::take_over(standby, &n, &dir, fence, config, now_ms)
        })
        .await?
        .context("cannot open the registry on etcd")?;
        let registry = writer.registry().clone();
        registry.place_in_hierarchy(own, Vec::new());
        registry.set_cluster(courier_protocol::ClusterNodes {
            answered_by: c.node.clone(),
            writer: Some(c.node.clone()),
        });
        let handle = courier_registry::serve_after(registry, server, listener)
            .await
            .with_context(|| format!("cannot serve on {}", args.listen))?;
        let advert = Advert {
            addr: c.advertise.unwrap_or(handle.local_addr()),
            pin: handle.pin(),
        };
        {
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.advertise(&advert))
                .await?
                .context("cannot advertise the node in etcd")?;
        }
        super::super::registry::print_banner(&handle, args, operator);
        println!(
            "Node {} of cluster {} (the writer). Ctrl-C stops it.",
            c.node, c.cluster
        );
        let mut session = node.session();
        let lost = async {
            while session.changed().await.is_ok() {
                if *session.borrow() == Session::Lost {
                    return;
                }
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                eprintln!("stopping: closing connections and flushing leases");
                handle.shutdown().await;
                let n = node.clone();
                tokio::task::spawn_blocking(move || n.leave()).await?;
                Ok(Ended::Stopped)
            }
            () = lost => {
                handle.shutdown().await;
                Ok(Ended::SessionLost { was_writer: true })
            }
        }
    }
}
