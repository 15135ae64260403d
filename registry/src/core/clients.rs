//! The clients the registry knows: each is its key, with the attributes it registered with,
//! the system data it last shared, when it last made contact and its latest outcome.
//! Pure and in memory; registrations and shared data are committed before they are applied
//! here, contacts are written behind.

use courier_protocol::limits::{MAX_CLIENT_FACTS, MAX_SYSTEM_DATA_BYTES};
use courier_protocol::{ClientInfo, ClientPage, HistoryEntry, SystemSnapshot, VendorKey};
use std::collections::{BTreeMap, BTreeSet};

/// Why a client's registration or data is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The key is not a registered client.
    #[error("{0} is not a registered client: register it first (courier client register)")]
    Unknown(VendorKey),
    /// Too many attributes or facts, or one too long.
    #[error("{0}")]
    TooLarge(String),
}

/// One client, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// When it registered, wall-clock ms.
    pub registered_at_ms: u64,
    /// When it last made contact, wall-clock ms.
    pub last_contact_ms: u64,
    /// Its latest system data.
    pub system: Option<SystemSnapshot>,
    /// Its latest reported outcome.
    pub last_outcome: Option<HistoryEntry>,
}

impl ClientRecord {
    /// The record as the protocol (and the store) carries it.
    pub fn to_info(&self, key: VendorKey) -> ClientInfo {
        ClientInfo {
            key,
            attributes: self.attributes.clone(),
            registered_at_ms: self.registered_at_ms,
            last_contact_ms: self.last_contact_ms,
            system: self.system.clone(),
            last_outcome: self.last_outcome.clone(),
        }
    }

    /// The record a stored [`ClientInfo`] stands for.
    pub fn from_info(info: ClientInfo) -> (VendorKey, Self) {
        (
            info.key,
            Self {
                attributes: info.attributes,
                registered_at_ms: info.registered_at_ms,
                last_contact_ms: info.last_contact_ms,
                system: info.system,
                last_outcome: info.last_outcome,
            },
        )
    }
}

/// Checks a map of attributes or facts against the limits: at most [`MAX_CLIENT_FACTS`]
/// entries, names of at most 64 bytes, and `max_bytes` in all.
pub fn check_map(
    what: &str,
    map: &BTreeMap<String, String>,
    max_bytes: usize,
) -> Result<(), ClientError> {
    if map.len() > MAX_CLIENT_FACTS {
        return Err(ClientError::TooLarge(format!(
            "{} {what}, at most {MAX_CLIENT_FACTS}",
            map.len()
        )));
    }
    if let Some(long) = map.keys().find(|k| k.is_empty() || k.len() > 64) {
        return Err(ClientError::TooLarge(format!(
            "{what} name {long:?} must be 1..=64 bytes"
        )));
    }
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > max_bytes {
        return Err(ClientError::TooLarge(format!(
            "{what} of {bytes} bytes, at most {max_bytes}"
        )));
    }
    Ok(())
}

/// The largest system-data snapshot accepted.
pub const MAX_FACT_BYTES: usize = MAX_SYSTEM_DATA_BYTES;

/// The clients.
#[derive(Debug, Default)]
pub struct ClientBook {
    clients: BTreeMap<VendorKey, ClientRecord>,
    /// Clients whose contact time changed since the last flush.
    dirty: BTreeSet<VendorKey>,
}

impl ClientBook {
    /// The client `key`, if registered.
    pub fn get(&self, key: &VendorKey) -> Option<&ClientRecord> {
        self.clients.get(key)
    }

    /// Whether `key` is a registered client.
    pub fn contains(&self, key: &VendorKey) -> bool {
        self.clients.contains_key(key)
    }

    /// Puts a (committed) record in place.
    pub fn put(&mut self, key: VendorKey, record: ClientRecord) {
        self.dirty.remove(&key);
        self.clients.insert(key, record);
    }

    /// Notes a contact of `key` at `at_ms` (written behind); nothing for an unknown key.
    pub fn contact(&mut self, key: &VendorKey, at_ms: u64) {
        if let Some(c) = self.clients.get_mut(key)
            && at_ms > c.last_contact_ms
        {
            c.last_contact_ms = at_ms;
            self.dirty.insert(*key);
        }
    }

    /// Notes the latest outcome of `key` (its history has it durably).
    pub fn outcome(&mut self, key: &VendorKey, entry: HistoryEntry) {
        if let Some(c) = self.clients.get_mut(key) {
            c.last_contact_ms = c.last_contact_ms.max(entry.at_ms);
            c.last_outcome = Some(entry);
            self.dirty.insert(*key);
        }
    }

    /// Takes the clients to write behind, as they are now.
    pub fn take_dirty(&mut self) -> Vec<ClientInfo> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|k| self.clients.get(&k).map(|c| c.to_info(k)))
            .collect()
    }

    /// Marks clients to write behind again (their write failed).
    pub fn mark_dirty(&mut self, keys: impl IntoIterator<Item = VendorKey>) {
        for k in keys {
            if self.clients.contains_key(&k) {
                self.dirty.insert(k);
            }
        }
    }

    /// A page of clients after `after`, sorted by key, at most `limit`.
    pub fn page(&self, after: Option<&VendorKey>, limit: usize) -> ClientPage {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut clients: Vec<ClientInfo> = self
            .clients
            .range((from, Bound::Unbounded))
            .take(limit + 1)
            .map(|(k, c)| c.to_info(*k))
            .collect();
        let next = (clients.len() > limit).then(|| {
            clients.truncate(limit);
            clients.last().map(|c| c.key)
        });
        ClientPage {
            clients,
            next: next.flatten(),
        }
    }

    /// How many clients there are.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Every client, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&VendorKey, &ClientRecord)> {
        self.clients.iter()
    }
}
