//! The key-value proxy: each `courier:kv/store` function is one call to its provider, with
//! the payload encodings of the kv service (see the team notes / provider example).

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/kv-proxy@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

use bindings::courier::proxy::provider;
use bindings::exports::courier::kv::store::Guest;

struct Proxy;

/// Decodes a UTF-8 reply.
fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| "the provider answered with invalid UTF-8".to_owned())
}

/// The error for a reply that does not follow the kv encoding.
fn malformed(method: &str) -> String {
    format!("malformed reply from the provider to `{method}`")
}

impl Guest for Proxy {
    /// `get`: payload = key; reply `[]` (absent) or `[1] ++ value`.
    fn get(key: String) -> Result<Option<String>, String> {
        let reply = provider::call("get", key.as_bytes())?;
        match reply.split_first() {
            None => Ok(None),
            Some((1, value)) => utf8(value.to_vec()).map(Some),
            Some(_) => Err(malformed("get")),
        }
    }

    /// `set`: payload = 4-byte BE key length ++ key ++ value; reply `[]`.
    fn set(key: String, value: String) -> Result<(), String> {
        let key_len = u32::try_from(key.len()).map_err(|_| "key too long".to_owned())?;
        let mut payload = Vec::with_capacity(4 + key.len() + value.len());
        payload.extend_from_slice(&key_len.to_be_bytes());
        payload.extend_from_slice(key.as_bytes());
        payload.extend_from_slice(value.as_bytes());
        let reply = provider::call("set", &payload)?;
        if reply.is_empty() {
            Ok(())
        } else {
            Err(malformed("set"))
        }
    }

    /// `delete`: payload = key; reply `[0]` (was absent) or `[1]` (removed).
    fn delete(key: String) -> Result<bool, String> {
        match provider::call("delete", key.as_bytes())?.as_slice() {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(malformed("delete")),
        }
    }

    /// `keys`: empty payload; reply = keys joined by `\n` (empty when there are none).
    fn keys() -> Result<Vec<String>, String> {
        let text = utf8(provider::call("keys", &[])?)?;
        if text.is_empty() {
            return Ok(Vec::new());
        }
        Ok(text.split('\n').map(str::to_owned).collect())
    }
}
