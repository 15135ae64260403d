//! The key-value service: an in-memory store of UTF-8 keys and values behind four methods,
//! with the payload encodings its proxy (`proxies/kv`, exporting `courier:kv/store`) uses.
//!
//! - `get`: key -> `[]` if absent, `[1] ++ value` if present;
//! - `set`: 4-byte big-endian key length ++ key ++ value -> `[]`;
//! - `delete`: key -> `[0]` (was absent) or `[1]` (removed);
//! - `keys` (empty payload) -> the keys sorted, joined by `\n`.
//!
//! The store is bounded ([`MAX_KEYS`], [`MAX_KEY_LEN`], [`MAX_BYTES`]): a provider serves
//! anyone who holds its proxy, so it refuses to grow without end.

use courier_provider::ServiceBuilder;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Most keys the example store holds.
pub const MAX_KEYS: usize = 100_000;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Most bytes of keys and values the example store holds in all.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// The key-value store behind [`kv_service`], shared by its handlers (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct KvStore(Arc<Mutex<KvMap>>);

/// The map and the bytes of its keys and values.
#[derive(Debug, Default)]
struct KvMap {
    map: BTreeMap<String, String>,
    bytes: usize,
}

impl KvStore {
    fn map(&self) -> MutexGuard<'_, KvMap> {
        // A panic while holding the lock cannot leave the map half-updated (each operation
        // updates the map and its byte count without anything that can panic between), so
        // a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.map().map.get(key).cloned()
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(format!("key length must be 1..={MAX_KEY_LEN} bytes"));
        }
        if key.contains('\n') {
            return Err("key must not contain a newline".into());
        }
        let mut kv = self.map();
        let old = kv.map.get(key).map(|v| key.len() + v.len());
        if kv.map.len() >= MAX_KEYS && old.is_none() {
            return Err(format!("store is full ({MAX_KEYS} keys)"));
        }
        let bytes = kv.bytes - old.unwrap_or(0) + key.len() + value.len();
        if bytes > MAX_BYTES {
            return Err(format!("store is full ({} MiB)", MAX_BYTES >> 20));
        }
        kv.map.insert(key.to_string(), value.to_string());
        kv.bytes = bytes;
        Ok(())
    }

    /// Removes `key`; true if it was there.
    pub fn delete(&self, key: &str) -> bool {
        let mut kv = self.map();
        match kv.map.remove(key) {
            Some(v) => {
                kv.bytes -= key.len() + v.len();
                true
            }
            None => false,
        }
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.map().map.keys().cloned().collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map().map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map().map.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.map().bytes
    }
}

/// The key-value service with a fresh, empty store.
pub fn kv_service() -> ServiceBuilder {
    kv_service_with(KvStore::default())
}

/// The key-value service over `store` (keep a clone to look at the state).
pub fn kv_service_with(store: KvStore) -> ServiceBuilder {
    let (get, set, delete, keys) = (store.clone(), store.clone(), store.clone(), store);
    ServiceBuilder::new()
        .method("get", move |payload: Vec<u8>| {
            let store = get.clone();
            async move {
                let key = utf8(&payload, "key")?;
                Ok(encode_get_reply(store.get(key).as_deref()))
            }
        })
        .method("set", move |payload: Vec<u8>| {
            let store = set.clone();
            async move {
                let (key, value) = decode_set(&payload)?;
                store.set(key, value)?;
                Ok(Vec::new())
            }
        })
        .method("delete", move |payload: Vec<u8>| {
            let store = delete.clone();
            async move {
                let key = utf8(&payload, "key")?;
                Ok(vec![u8::from(store.delete(key))])
            }
        })
        .method("keys", move |payload: Vec<u8>| {
            let store = keys.clone();
            async move {
                if !payload.is_empty() {
                    return Err("keys takes no payload".to_string());
                }
                Ok(store.keys().join("\n").into_bytes())
            }
        })
}

// The payload encodings, for providers, tests and Rust clients.

/// The payload of `set`: 4-byte big-endian key length, key, value.
pub fn encode_set(key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + value.len());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value.as_bytes());
    out
}

/// Splits a `set` payload into key and value.
pub fn decode_set(payload: &[u8]) -> Result<(&str, &str), String> {
    let (len, rest) = payload
        .split_first_chunk::<4>()
        .ok_or_else(|| "set payload shorter than its 4-byte key length".to_string())?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() {
        return Err(format!(
            "set payload announces a {len}-byte key but has {} bytes",
            rest.len()
        ));
    }
    let (key, value) = rest.split_at(len);
    Ok((utf8(key, "key")?, utf8(value, "value")?))
}

/// The reply of `get`: empty if absent, `[1] ++ value` if present.
pub fn encode_get_reply(value: Option<&str>) -> Vec<u8> {
    match value {
        None => Vec::new(),
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v.as_bytes());
            out
        }
    }
}

/// Reads the reply of `get`.
pub fn decode_get_reply(reply: &[u8]) -> Result<Option<String>, String> {
    match reply.split_first() {
        None => Ok(None),
        Some((1, value)) => Ok(Some(utf8(value, "value")?.to_string())),
        Some(_) => Err("get reply does not start with 1".into()),
    }
}

/// Reads the reply of `delete`.
pub fn decode_delete_reply(reply: &[u8]) -> Result<bool, String> {
    match reply {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err("delete reply is not [0] or [1]".into()),
    }
}

/// Reads the reply of `keys`.
pub fn decode_keys_reply(reply: &[u8]) -> Result<Vec<String>, String> {
    let text = utf8(reply, "keys")?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text.split('\n').map(str::to_string).collect())
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kv_payloads_round_trip() {
        let p = encode_set("k€y", "välue");
        assert_eq!(
            &p[..4],
            &(u32::try_from("k€y".len()).unwrap()).to_be_bytes()
        );
        assert_eq!(decode_set(&p).unwrap(), ("k€y", "välue"));
        assert_eq!(decode_set(&encode_set("k", "")).unwrap(), ("k", ""));
        assert!(decode_set(&[0, 0]).is_err());
        assert!(decode_set(&[0, 0, 0, 9, b'a']).is_err());
        assert_eq!(decode_get_reply(&encode_get_reply(None)).unwrap(), None);
        assert_eq!(
            decode_get_reply(&encode_get_reply(Some("v")))
                .unwrap()
                .as_deref(),
            Some("v")
        );
        assert!(decode_get_reply(&[2]).is_err());
        assert!(decode_delete_reply(&[1]).unwrap());
        assert!(decode_keys_reply(b"").unwrap().is_empty());
        assert_eq!(decode_keys_reply(b"a\nb").unwrap(), ["a", "b"]);
    }

    #[test]
    fn store_refuses_bad_keys() {
        let s = KvStore::default();
        assert!(s.set("", "v").is_err());
        assert!(s.set("a\nb", "v").is_err());
        assert!(s.set(&"k".repeat(MAX_KEY_LEN + 1), "v").is_err());
        s.set("b", "2").unwrap();
        s.set("a", "1").unwrap();
        assert_eq!(s.keys(), ["a", "b"]);
        assert!(s.delete("a"));
        assert!(!s.delete("a"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn store_holds_a_bounded_number_of_bytes() {
        let s = KvStore::default();
        let big = "v".repeat(MAX_BYTES / 2);
        s.set("a", &big).unwrap();
        assert!(s.set("b", &big).is_err(), "over the byte cap");
        // Replacing a value counts the new size, not both.
        s.set("a", &big).unwrap();
        s.set("a", "small").unwrap();
        assert_eq!(s.bytes(), "a".len() + "small".len());
        s.set("b", &big).unwrap();
        assert!(s.delete("b"));
        assert_eq!(s.bytes(), 6);
    }
}
