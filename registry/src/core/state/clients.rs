//! Clients on the state: registering as a recipient of services and sharing system data
//! are committed; contacts and latest outcomes are kept in memory and written behind.

use super::{Change, Planned, RegistryState};
use crate::core::clients::{ClientError, ClientRecord, MAX_FACT_BYTES, check_map};
use crate::core::lease_table::Millis;
use crate::store::Batch;
use courier_protocol::{
    ClientInfo, ClientPage, ClientProfile, HistoryEntry, SystemData, SystemSnapshot, VendorKey,
};

/// Most bytes of attributes a client registers with.
const MAX_ATTRIBUTE_BYTES: usize = 16 * 1024;

impl RegistryState {
    /// Plans the registration of `key` as a client with `profile` (again: its attributes
    /// are replaced, what it shared is kept).
    pub fn plan_register_client(
        &self,
        now: Millis,
        key: VendorKey,
        profile: ClientProfile,
    ) -> Result<Planned<ClientUpdate>, ClientError> {
        check_map("attributes", &profile.attributes, MAX_ATTRIBUTE_BYTES)?;
        let at = self.wall_ms(now);
        let record = match self.clients.get(&key) {
            Some(old) => ClientRecord {
                attributes: profile.attributes,
                last_contact_ms: at,
                ..old.clone()
            },
            None => ClientRecord {
                attributes: profile.attributes,
                registered_at_ms: at,
                last_contact_ms: at,
                system: None,
                last_outcome: None,
            },
        };
        Ok(self.client_update(key, record))
    }

    /// Plans storing the system data `key` shares (it must be a registered client).
    pub fn plan_share_data(
        &self,
        now: Millis,
        key: VendorKey,
        data: SystemData,
    ) -> Result<Planned<ClientUpdate>, ClientError> {
        let old = self.clients.get(&key).ok_or(ClientError::Unknown(key))?;
        check_map("facts", &data.facts, MAX_FACT_BYTES)?;
        let at = self.wall_ms(now);
        let record = ClientRecord {
            last_contact_ms: at,
            system: Some(SystemSnapshot {
                at_ms: at,
                facts: data.facts,
            }),
            ..old.clone()
        };
        Ok(self.client_update(key, record))
    }

    fn client_update(&self, key: VendorKey, record: ClientRecord) -> Planned<ClientUpdate> {
        Planned {
            batch: Batch {
                clients: vec![record.to_info(key)],
                ..Default::default()
            },
            change: ClientUpdate { key, record },
        }
    }

    /// Whether `key` is a registered client.
    pub fn is_client(&self, key: &VendorKey) -> bool {
        self.clients.contains(key)
    }

    /// Notes that client `key` made contact now (written behind).
    pub fn contact(&mut self, now: Millis, key: &VendorKey) {
        let at = self.wall_ms(now);
        self.clients.contact(key, at);
    }

    /// Notes the latest outcome client `key` reported (its history has it durably).
    pub fn note_outcome(&mut self, key: &VendorKey, entry: HistoryEntry) {
        self.clients.outcome(key, entry);
    }

    /// What the registry knows of client `key`.
    pub fn client(&self, key: &VendorKey) -> Option<ClientInfo> {
        self.clients.get(key).map(|c| c.to_info(*key))
    }

    /// A page of the clients after `after`, sorted by key.
    pub fn clients_page(&self, after: Option<&VendorKey>, limit: usize) -> ClientPage {
        self.clients.page(after, limit)
    }

    /// How many clients are registered.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }
}

/// A client's record, registered or updated.
#[derive(Debug)]
pub struct ClientUpdate {
    key: VendorKey,
    record: ClientRecord,
}

impl Change for ClientUpdate {
    type Applied = ();

    fn apply(self, st: &mut RegistryState, _now: Millis, _batch: Batch) {
        // What changed in memory meanwhile (a later contact, an outcome) is kept.
        let record = match st.clients.get(&self.key) {
            Some(now) => ClientRecord {
                last_contact_ms: now.last_contact_ms.max(self.record.last_contact_ms),
                last_outcome: now.last_outcome.clone().or(self.record.last_outcome),
                ..self.record
            },
            None => self.record,
        };
        st.clients.put(self.key, record);
    }
}
