//! Reaching the registry from the command line: address and pin from flags or environment.

use anyhow::Context;
use courier_protocol::SpkiPin;
use courier_transport::RegistryClient;

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

    /// Connects and says Hello.
    pub async fn connect(&self, agent: &str) -> anyhow::Result<RegistryClient> {
        let pin = self.pin()?;
        let addr = courier_transport::resolve(&self.addr)
            .await
            .with_context(|| format!("registry address {}", self.addr))?;
        RegistryClient::connect(addr, pin, agent)
            .await
            .with_context(|| format!("cannot reach the registry at {addr}"))
    }
}
