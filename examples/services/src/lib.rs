//! courier's example services, written as a vendor would write its own with
//! [`courier_provider`]: the provider side of `courier:echo/echo` ([`echo`]), of
//! `courier:kv/store` ([`kv`]) and of `courier:patch/delivery` ([`patch`]), each a
//! [`ServiceBuilder`] with one handler per method, and the proxy component that calls each
//! one ([`Example::proxy`], built from `proxies/`). [`install`] is the provider side of
//! self-installing prerequisites (`courier:proxy/prerequisites` and
//! `courier:proxy/installer`), read from a catalog directory
//! ([`InstallService::from_dir`]).
//!
//! `courier provider run echo` (or `kv`, or `patch`) serves one with a TLS identity kept on
//! disk;
//! `courier demo` serves both in one process. Serving one yourself takes an identity, whose
//! pin goes into the signed manifest, and an address:
//!
//! ```no_run
//! # async fn serve() -> anyhow::Result<()> {
//! use courier_transport::Identity;
//!
//! // Made on first start, then kept: the pin stays the same across restarts.
//! let (identity, _created) = Identity::load_or_generate("echo-provider".as_ref())?;
//! let provider = courier_example_services::echo_service()
//!     .serve("127.0.0.1:7901".parse()?, &identity)
//!     .await?;
//! println!("provider pin: {}", provider.pin());
//! // ... sign and publish the proxy with that pin (`courier publish`), then, to stop:
//! provider.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod echo;
pub mod install;
pub mod kv;
pub mod patch;

pub use echo::echo_service;
pub use install::{InstallDirError, InstallService};
pub use kv::{KvStore, kv_service, kv_service_with};

use courier_provider::ServiceBuilder;

/// One of the example services, with the proxy that calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Example {
    /// The echo service ([`echo_service`]) and the `echo` proxy.
    Echo,
    /// The key-value service ([`kv_service`]) and the `kv` proxy.
    Kv,
    /// The patch service ([`patch::PatchProvider`]) and the `patch` proxy.
    Patch,
}

impl Example {
    /// Every example service.
    pub const ALL: [Example; 3] = [Example::Echo, Example::Kv, Example::Patch];

    /// Its name: `echo`, `kv` or `patch` (also the name of its proxy).
    pub fn name(self) -> &'static str {
        match self {
            Example::Echo => "echo",
            Example::Kv => "kv",
            Example::Patch => "patch",
        }
    }

    /// The service, ready to serve (a key-value service starts with an empty store; the
    /// patch service is [`patch::service_or_error`] with [`patch::PatchConfig::default`]:
    /// this machine's apt lists, no vendor patches, a store in memory).
    pub fn service(self) -> ServiceBuilder {
        match self {
            Example::Echo => echo_service(),
            Example::Kv => kv_service(),
            Example::Patch => patch::service_or_error(&patch::PatchConfig::default()),
        }
    }

    /// The proxy component (`wasm32-wasip2`) that calls this service: the bytes a vendor
    /// signs and publishes with the service's endpoint and pin.
    pub fn proxy(self) -> &'static [u8] {
        match self {
            Example::Echo => courier_proxy_artifacts::ECHO,
            Example::Kv => courier_proxy_artifacts::KV,
            Example::Patch => courier_proxy_artifacts::PATCH,
        }
    }
}
