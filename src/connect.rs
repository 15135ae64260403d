//! Reaching the registry from the command line: address and pin from flags or environment.

use anyhow::Context;
use courier_protocol::SpkiPin;
use courier_transport::{PinBook, RegistryClient};
use std::path::PathBuf;

/// Where the registry is and which key it must present.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registry address (host:port).
    #[arg(
        long = "registry",
        env = "COURIER_REGISTRY",
        default_value = "127.0.0.1:7800"
    )]
    pub addr: String,
    /// The registry's TLS key pin, as printed by `courier registry serve` (sha256:...).
    /// Required: courier never trusts a registry on first use.
    #[arg(long = "registry-pin", env = "COURIER_REGISTRY_PIN")]
    pub pin: Option<String>,
    /// Where moves of the registry's pin are kept: when the registry rotates its TLS
    /// identity, a pin it proves moved (by a statement the pinned key signed) is recorded
    /// here, so --registry-pin keeps working after the rotation's overlap.
    #[arg(
        long = "registry-pins",
        env = "COURIER_REGISTRY_PINS",
        default_value = "courier-registry-pins"
    )]
    pub pins_file: PathBuf,
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

    /// Like [`RegistryArgs::connect`], with the pin moves kept in `pins`.
    pub async fn connect_with(
        &self,
        agent: &str,
        pins: &PinBook,
    ) -> anyhow::Result<RegistryClient> {
        let pin = self.pin()?;
        let addr = courier_transport::resolve(&self.addr)
            .await
            .with_context(|| format!("registry address {}", self.addr))?;
        let endpoint = courier_transport::client_endpoint(addr)?;
        RegistryClient::connect_recording(endpoint, addr, pin, agent, pins)
            .await
            .with_context(|| format!("cannot reach the registry at {addr}"))
    }
}
