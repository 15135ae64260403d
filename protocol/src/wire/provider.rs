//! Messages between a proxy (through its client host) and its own provider.
use serde::{Deserialize, Serialize};

/// First message on a provider connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderHello {
    /// Protocol version.
    pub version: u16,
}

/// One call of a method of the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Method name.
    pub method: String,
    /// Opaque payload (the service's own encoding).
    pub payload: Vec<u8>,
}

/// The provider's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The method's result.
    Ok(Vec<u8>),
    /// The method failed; a message for the proxy.
    Err(String),
}
