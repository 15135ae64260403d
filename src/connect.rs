//! Reaching the registry from the command line: address and pin from flags or environment.

use anyhow::Context;
use courier_protocol::SpkiPin;
use courier_transport::{PinBook, RegistryClient};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the registry is and which key it must present.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registry address (host:port).
    #[arg(
        long = "registry",
        global = true,
        env = "COURIER_REGISTRY",
        default_value = "127.0.0.1:7800"
    )]
    pub addr: String,
    /// The registry's TLS key pin, as printed by `courier registry serve` (sha256:...).
    /// Required: courier never trusts a registry on first use.
    #[arg(long = "registry-pin", global = true, env = "COURIER_REGISTRY_PIN")]
    pub pin: Option<String>,
    /// Where moves of the registry's pin are kept: when the registry rotates its TLS
    /// identity, a pin it proves moved (by a statement the pinned key signed) is recorded
    /// here, so --registry-pin keeps working after the rotation's overlap.
    #[arg(
        long = "registry-pins",
        global = true,
        env = "COURIER_REGISTRY_PINS",
        default_value = "courier-registry-pins"
    )]
    pub pins_file: PathBuf,
    /// Another node of a registry cluster, `address=pin` (repeat, or comma-separate in
    /// the environment): tried in turn when the registry cannot be reached, and where a
    /// vendor's lease is renewed when its node goes.
    #[arg(
        long = "other-node",
        global = true,
        env = "COURIER_OTHER_NODES",
        value_delimiter = ',',
        value_parser = crate::cli::parse_key_value
    )]
    pub other_nodes: Vec<(String, String)>,
}

impl RegistryArgs {
    /// The parsed pin, or a one-line explanation of how to get it.
    pub fn pin(&self) -> anyhow::Result<SpkiPin> {
        let Some(pin) = &self.pin else {
            anyhow::bail!(
                "no registry pin: pass --registry-pin sha256:... or set COURIER_REGISTRY_PIN \
                 (courier registry serve prints it)"
            );
        };
        pin.parse().context("--registry-pin")
    }

    /// The moves of registry pins kept so far.
    pub fn pins(&self) -> anyhow::Result<PinBook> {
        PinBook::open(&self.pins_file).context("--registry-pins")
    }

    /// Connects and says Hello, following (and recording) the registry's pin moves.
    pub async fn connect(&self, agent: &str) -> anyhow::Result<RegistryClient> {
        self.connect_with(agent, &self.pins()?).await
    }

    /// The other nodes of the registry's cluster, resolved.
    pub async fn other_nodes(&self) -> anyhow::Result<Vec<(SocketAddr, SpkiPin)>> {
        let mut out = Vec::with_capacity(self.other_nodes.len());
        for (node, pin) in &self.other_nodes {
            let addr = courier_transport::resolve(node)
                .await
                .with_context(|| format!("--other-node address {node}"))?;
            let pin = pin
                .parse()
                .map_err(|e| anyhow::anyhow!("--other-node {node}: pin {pin}: {e}"))?;
            out.push((addr, pin));
        }
        Ok(out)
    }

    /// Like [`RegistryArgs::connect`], with the pin moves kept in `pins`. With other nodes,
    /// each is tried in turn (the registry first) until one answers.
    pub async fn connect_with(
        &self,
        agent: &str,
        pins: &PinBook,
    ) -> anyhow::Result<RegistryClient> {
        let pin = self.pin()?;
        let addr = courier_transport::resolve(&self.addr)
            .await
            .with_context(|| format!("registry address {}", self.addr))?;
        let nodes: Vec<_> = std::iter::once((addr, pin))
            .chain(self.other_nodes().await?)
            .collect();
        match RegistryClient::connect_first(&nodes, agent, pins).await {
            Ok(client) => Ok(client),
            Err(mut failures) if failures.len() == 1 => {
                let (_, e) = failures.remove(0);
                Err(anyhow::Error::new(e).context(format!("cannot reach the registry at {addr}")))
            }
            Err(failures) => {
                let why: Vec<String> = failures.iter().map(|(a, e)| format!("{a}: {e}")).collect();
                anyhow::bail!("cannot reach any node of the registry ({})", why.join("; "))
            }
        }
    }
}
