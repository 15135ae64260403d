//! The patch service's provider: what a vendor runs so that client machines can ask what
//! applies to them, fetch patches and report how their installs went.
//!
//! Its catalog has two parts: apt `Packages` indexes ([`IndexSource`]: by default this
//! machine's own lists), from which the upgrades of a client's packages are chosen as apt
//! would choose them, and vendor patch records with their payload files from a catalog
//! folder ([`VendorCatalog`]). An embedded store ([`PatchStore`]) keeps each client's
//! latest inventory and every install report; a patch with `failure_threshold` failure
//! reports within `failure_window` is withdrawn (no longer offered to anyone), and a patch
//! that failed on a client is not offered to that client again until the vendor changes
//! its record (a new edition: any change to the record, its files or its fingerprint).
//!
//! Its methods ([`courier_patch_api::methods`]) take and give postcard messages:
//! `fingerprints`, `recommend`, `patch`, `chunk`, `report`.

mod catalog;
mod indexes;
mod machine;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_patch_api::fingerprint::{self, Finding};
use courier_patch_api::messages::{DecodeError, decode, encode};
use courier_patch_api::{
    ChunkRequest, Digest, GatherList, InstallReport, Inventory, PatchOffer, PatchRecord,
    Recommendation, methods,
};
use courier_provider::ServiceBuilder;

pub use catalog::{CatalogError, ChunkError, VendorCatalog};
pub use indexes::{IndexLoadError, IndexSource, PackageIndex};
pub use machine::machine_inventory;
pub use store::{FailedHere, PatchStore, StoreError, StoredInventory, StoredReport};

/// How a patch provider is set up.
#[derive(Debug, Clone)]
pub struct PatchConfig {
    /// The vendor's catalog folder (`patches/`, `payloads/`); none: upgrades only.
    pub catalog: Option<PathBuf>,
    /// Where the package indexes come from.
    pub indexes: IndexSource,
    /// The store's file; none: kept in memory.
    pub store: Option<PathBuf>,
    /// Failure reports within the window that withdraw a patch (3).
    pub failure_threshold: u64,
    /// The window (24 h).
    pub failure_window: Duration,
}

impl Default for PatchConfig {
    /// This machine's apt lists, no vendor patches, a store in memory, 3 failures a day.
    fn default() -> Self {
        Self {
            catalog: None,
            indexes: IndexSource::Machine(PathBuf::from("/")),
            store: None,
            failure_threshold: 3,
            failure_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// A loaded patch provider.
pub struct PatchProvider {
    catalog: VendorCatalog,
    packages: PackageIndex,
    store: PatchStore,
    threshold: u64,
    window_ms: u64,
}

/// Why a patch provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum PatchOpenError {
    /// The catalog folder could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The index folder could not be read.
    #[error(transparent)]
    Indexes(#[from] IndexLoadError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The payload is not the message the method takes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The client id is empty, over 128 bytes or holds control characters.
    #[error("client id {0:?} is not 1-128 printable characters")]
    Client(String),
    /// No such patch.
    #[error("no patch {0}")]
    UnknownPatch(String),
    /// A chunk could not be served.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PatchProvider {
    /// Loads the catalog and the indexes and opens the store.
    pub fn open(config: &PatchConfig) -> Result<PatchProvider, PatchOpenError> {
        let catalog = match &config.catalog {
            Some(dir) => VendorCatalog::load(dir)?,
            None => VendorCatalog::default(),
        };
        let packages = PackageIndex::load(&config.indexes)?;
        let store = match &config.store {
            Some(path) => PatchStore::open(path)?,
            None => PatchStore::in_memory()?,
        };
        Ok(PatchProvider {
            catalog,
            packages,
            store,
            threshold: config.failure_threshold,
            window_ms: u64::try_from(config.failure_window.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The vendor patches.
    pub fn catalog(&self) -> &VendorCatalog {
        &self.catalog
    }

    /// The package indexes.
    pub fn packages(&self) -> &PackageIndex {
        &self.packages
    }

    /// The store.
    pub fn store(&self) -> &PatchStore {
        &self.store
    }

    /// `fingerprints`: the files whose digests the proxy gathers.
    pub fn gather_list(&self) -> GatherList {
        self.catalog.gather_list()
    }

    /// `recommend`: keeps the inventory, then says what applies, at time `now_ms`.
    pub fn recommend(
        &self,
        inventory: &Inventory,
        now_ms: u64,
    ) -> Result<Recommendation, RequestError> {
        check_client(&inventory.client)?;
        self.store.put_inventory(inventory, now_ms)?;
        let mut answer = Recommendation::default();
        answer.notes.extend(self.packages.notes().iter().cloned());
        answer.notes.extend(self.catalog.notes().iter().cloned());
        let dpkg = matches!(inventory.package_manager.as_str(), "" | "dpkg");
        if dpkg {
            let (upgrades, skipped) = self.packages.upgrades(inventory);
            answer.upgrades = upgrades;
            if skipped > 0 {
                answer.notes.push(format!(
                    "{skipped} packages have versions dpkg would not accept"
                ));
            }
        } else {
            answer.notes.push(format!(
                "package upgrades are chosen for dpkg machines only, not {}",
                inventory.package_manager
            ));
        }
        let since = now_ms.saturating_sub(self.window_ms);
        for record in self.catalog.records() {
            let id = &record.id;
            if let Err(why) = fingerprint::requirements_met(&record.fingerprint.requires, inventory)
            {
                answer
                    .notes
                    .push(format!("{id}: not for this machine ({why})"));
                continue;
            }
            let failures = self.store.failures_since(id, since)?;
            if failures >= self.threshold {
                answer.notes.push(format!(
                    "{id}: withdrawn after {failures} failure reports in the current window"
                ));
                continue;
            }
            if inventory.applied.contains(id) {
                answer.notes.push(format!("{id}: already applied"));
                continue;
            }
            if let Some(failed) = self.store.failed_here(&inventory.client, id)?
                && failed.edition == edition(record)
            {
                answer.notes.push(format!(
                    "{id}: failed on this machine ({}); not offered again until the vendor \
                     changes it",
                    failed.detail
                ));
                continue;
            }
            match fingerprint::existence_in(&record.fingerprint, inventory) {
                Finding::Needed { reason } => answer.patches.push(offer(record, reason)),
                other => answer.notes.push(format!("{id}: {}", other.describe())),
            }
        }
        Ok(answer)
    }

    /// `patch`: the record of `id`.
    pub fn record(&self, id: &str) -> Result<&PatchRecord, RequestError> {
        self.catalog
            .record(id)
            .ok_or_else(|| RequestError::UnknownPatch(id.into()))
    }

    /// `chunk`: payload bytes.
    pub fn chunk(&self, request: &ChunkRequest) -> Result<Vec<u8>, RequestError> {
        Ok(self.catalog.chunk(request)?)
    }

    /// `report`: keeps an install report, at time `now_ms`.
    pub fn report(&self, report: &InstallReport, now_ms: u64) -> Result<(), RequestError> {
        check_client(&report.client)?;
        let edition = |id: &str| self.catalog.record(id).map(edition);
        Ok(self.store.add_report(report, now_ms, &edition)?)
    }

    /// The service, one handler per method.
    pub fn service(self: Arc<Self>) -> ServiceBuilder {
        let (p1, p2, p3, p4, p5) = (self.clone(), self.clone(), self.clone(), self.clone(), self);
        ServiceBuilder::new()
            .method(methods::FINGERPRINTS, move |_payload: Vec<u8>| {
                let answer = encode(&p1.gather_list());
                async move { Ok(answer) }
            })
            .method(methods::RECOMMEND, move |payload: Vec<u8>| {
                let provider = p2.clone();
                blocking(move || {
                    let inventory: Inventory = decode("inventory", &payload)?;
                    Ok(encode(&provider.recommend(&inventory, now_ms())?))
                })
            })
            .method(methods::PATCH, move |payload: Vec<u8>| {
                let answer = String::from_utf8(payload)
                    .map_err(|_| "patch id is not UTF-8".to_owned())
                    .and_then(|id| p3.record(&id).map(encode).map_err(|e| e.to_string()));
                async move { answer }
            })
            .method(methods::CHUNK, move |payload: Vec<u8>| {
                let provider = p4.clone();
                blocking(move || {
                    let request: ChunkRequest = decode("chunk request", &payload)?;
                    provider.chunk(&request)
                })
            })
            .method(methods::REPORT, move |payload: Vec<u8>| {
                let provider = p5.clone();
                blocking(move || {
                    let report: InstallReport = decode("install report", &payload)?;
                    provider.report(&report, now_ms())?;
                    Ok(Vec::new())
                })
            })
    }
}

/// The service of a provider opened with `config`; when it cannot open, a service whose
/// every method answers why (the error is also logged).
pub fn service_or_error(config: &PatchConfig) -> ServiceBuilder {
    match PatchProvider::open(config) {
        Ok(provider) => Arc::new(provider).service(),
        Err(error) => {
            tracing::error!("the patch provider cannot start: {error}");
            let message = format!("the patch provider cannot start: {error}");
            [
                methods::FINGERPRINTS,
                methods::RECOMMEND,
                methods::PATCH,
                methods::CHUNK,
                methods::REPORT,
            ]
            .into_iter()
            .fold(ServiceBuilder::new(), |service, method| {
                let message = message.clone();
                service.method(method, move |_payload: Vec<u8>| {
                    let message = message.clone();
                    async move { Err(message) }
                })
            })
        }
    }
}

/// Runs `work` (store writes, file reads) off the async threads.
async fn blocking(
    work: impl FnOnce() -> Result<Vec<u8>, RequestError> + Send + 'static,
) -> Result<Vec<u8>, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the patch provider failed on this request".into()),
    }
}

fn offer(record: &PatchRecord, reason: String) -> PatchOffer {
    PatchOffer {
        id: record.id.clone(),
        title: record.title.clone(),
        severity: record.severity,
        reason,
    }
}

/// The edition of a record: the digest of its encoding, so that any change the vendor
/// makes to it is a new edition.
fn edition(record: &PatchRecord) -> Digest {
    Digest::of(&encode(record))
}

fn check_client(client: &str) -> Result<(), RequestError> {
    let ok = (1..=128).contains(&client.len()) && !client.chars().any(char::is_control);
    ok.then_some(())
        .ok_or_else(|| RequestError::Client(client.into()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
