//! The patch provider's store (redb, embedded): each client's latest inventory, every
//! install report, the failures of each patch by time, so that a patch failing too often
//! in the current window stops being offered, and the edition of each patch that failed on
//! each client, so that it is not offered to that client again until it changes.

use std::path::Path;

use courier_patch_api::messages::{decode, encode};
use courier_patch_api::{Digest, InstallReport, Inventory, Stage};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// client → its latest inventory and when it came.
const INVENTORIES: TableDefinition<&str, &[u8]> = TableDefinition::new("inventories");
/// (client, time, sequence) → a report.
const REPORTS: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("reports");
/// (patch, time, sequence) → the client that reported the failure.
const FAILURES: TableDefinition<(&str, u64, u64), &str> = TableDefinition::new("failures");
/// (client, patch) → the [`FailedHere`] of the patch's last failure on the client.
const FAILED_HERE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("failed-here");
/// `seq` → the last sequence number used.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The store.
pub struct PatchStore {
    db: Database,
}

/// A stored inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInventory {
    /// When it came (ms since the Unix epoch).
    pub at_ms: u64,
    /// The inventory.
    pub inventory: Inventory,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// When it came (ms since the Unix epoch).
    pub at_ms: u64,
    /// The report.
    pub report: InstallReport,
}

/// A patch's last failure on one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedHere {
    /// When it was reported (ms since the Unix epoch).
    pub at_ms: u64,
    /// The digest of the patch record the client was served then.
    pub edition: Digest,
    /// The report's line about it.
    pub detail: String,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("patch store: {0}")]
    Db(#[from] redb::Error),
    /// A stored record does not decode.
    #[error("patch store: damaged record: {0}")]
    Corrupt(String),
}

impl PatchStore {
    /// The store in the file `path` (created if absent).
    pub fn open(path: &Path) -> Result<PatchStore, StoreError> {
        let db = Database::create(path).map_err(redb::Error::from)?;
        PatchStore::init(db)
    }

    /// A store in memory, gone when dropped.
    pub fn in_memory() -> Result<PatchStore, StoreError> {
        let backend = redb::backends::InMemoryBackend::new();
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(redb::Error::from)?;
        PatchStore::init(db)
    }

    fn init(db: Database) -> Result<PatchStore, StoreError> {
        let tables = || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            tx.open_table(INVENTORIES)?;
            tx.open_table(REPORTS)?;
            tx.open_table(FAILURES)?;
            tx.open_table(FAILED_HERE)?;
            tx.open_table(META)?;
            Ok(tx.commit()?)
        };
        tables()?;
        Ok(PatchStore { db })
    }

    /// Keeps `inventory` as its client's latest.
    pub fn put_inventory(&self, inventory: &Inventory, at_ms: u64) -> Result<(), StoreError> {
        let stored = encode(&StoredInventory {
            at_ms,
            inventory: inventory.clone(),
        });
        let put = || -> Result<(), redb::Error> {
            let tx = self.db.begin_write()?;
            tx.open_table(INVENTORIES)?
                .insert(inventory.client.as_str(), stored.as_slice())?;
            Ok(tx.commit()?)
        };
        Ok(put()?)
    }

    /// The latest inventory of `client`.
    pub fn inventory(&self, client: &str) -> Result<Option<StoredInventory>, StoreError> {
        let get = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(INVENTORIES)?;
            Ok(table.get(client)?.map(|v| v.value().to_vec()))
        };
        get()?
            .map(|bytes| decode("stored inventory", &bytes))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Keeps `report`, and each failure in it under its patch. `edition` gives the digest
    /// of the record a patch id is served as: a failure of a known patch is also kept as
    /// the patch's [`FailedHere`] on the client, and a later report that it is in place
    /// (or removed) forgets it.
    pub fn add_report(
        &self,
        report: &InstallReport,
        at_ms: u64,
        edition: &dyn Fn(&str) -> Option<Digest>,
    ) -> Result<(), StoreError> {
        let add = || -> Result<(), redb::Error> {
            let tx = self.db.begin_write()?;
            {
                let mut meta = tx.open_table(META)?;
                let seq = meta.get("seq")?.map_or(0, |v| v.value()) + 1;
                meta.insert("seq", seq)?;
                let client = report.client.as_str();
                tx.open_table(REPORTS)?
                    .insert((client, at_ms, seq), encode(report).as_slice())?;
                let mut failures = tx.open_table(FAILURES)?;
                let mut failed_here = tx.open_table(FAILED_HERE)?;
                for entry in &report.entries {
                    let key = (client, entry.id.as_str());
                    if entry.stage.is_failure() {
                        failures.insert((entry.id.as_str(), at_ms, seq), client)?;
                        if let Some(edition) = edition(&entry.id) {
                            let failed = FailedHere {
                                at_ms,
                                edition,
                                detail: entry.detail.clone(),
                            };
                            failed_here.insert(key, encode(&failed).as_slice())?;
                        }
                    } else if entry.stage.in_place() || entry.stage == Stage::Removed {
                        failed_here.remove(key)?;
                    }
                }
            }
            Ok(tx.commit()?)
        };
        Ok(add()?)
    }

    /// The last failure of `patch` on `client`, unless a later report said it is in place.
    pub fn failed_here(&self, client: &str, patch: &str) -> Result<Option<FailedHere>, StoreError> {
        let get = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(FAILED_HERE)?;
            Ok(table.get((client, patch))?.map(|v| v.value().to_vec()))
        };
        get()?
            .map(|bytes| decode("stored failure", &bytes))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The reports of `client`, oldest first.
    pub fn reports(&self, client: &str) -> Result<Vec<StoredReport>, StoreError> {
        let rows = || -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(REPORTS)?;
            let range = table.range((client, 0, 0)..=(client, u64::MAX, u64::MAX))?;
            range
                .map(|row| {
                    let (key, value) = row?;
                    Ok((key.value().1, value.value().to_vec()))
                })
                .collect()
        };
        rows()?
            .into_iter()
            .map(|(at_ms, bytes)| {
                let report = decode("stored report", &bytes)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(StoredReport { at_ms, report })
            })
            .collect()
    }

    /// How many failures of `patch` were reported at or after `since_ms`.
    pub fn failures_since(&self, patch: &str, since_ms: u64) -> Result<u64, StoreError> {
        let count = || -> Result<u64, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(FAILURES)?;
            let mut count = 0;
            for row in table.range((patch, since_ms, 0)..=(patch, u64::MAX, u64::MAX))? {
                row?;
                count += 1;
            }
            Ok(count)
        };
        Ok(count()?)
    }
}
