//! Compiling and its caches: the size cap, the component's real interfaces read and its
//! imports checked against the policy before a byte is compiled, compilation on the
//! blocking pool, the in-memory cache of compiled components keyed by content hash, and
//! the way to and from the client's own compiled-code directory (`disk_cache`).
//!
//! Compiled code is only ever produced here from bytes whose hash the caller checked, or
//! loaded from a file this client wrote (its tag checked by `disk_cache` first); a loaded
//! component's stored imports are checked against the current policy and linked like a
//! compiled one's.

use super::Sandbox;
use super::disk_cache::{DiskCache, StoredHeader};
use super::store::RunState;
use crate::policy::{MissingCapabilities, Policy};
use courier_protocol::{ComponentInterfaces, ContentHash, InspectError, VendorKey};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre};

/// Why a component was not compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Larger than the policy's cap.
    #[error("component of {size} bytes exceeds the cap of {limit}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// Its type information could not be read.
    #[error("component unreadable: {0}")]
    Inspect(#[from] InspectError),
    /// It imports what the policy does not grant.
    #[error("{0}")]
    NotGranted(#[from] MissingCapabilities),
    /// wasmtime refused it (invalid, unsupported feature).
    #[error("compile: {0}")]
    Compile(String),
    /// Its imports do not link against the host (types differ from the host's).
    #[error("link: {0}")]
    Link(String),
    /// The compile task died.
    #[error("compile task failed: {0}")]
    Task(String),
}

/// A component compiled by this sandbox, or loaded from a file it wrote (never
/// deserialized from anything else).
pub struct Compiled {
    hash: ContentHash,
    size: usize,
    interfaces: ComponentInterfaces,
    component: Component,
    pub(super) pre: InstancePre<RunState>,
    compile_time: Duration,
    from_disk: bool,
}

/// The manifest a component is compiled for, as its compiled-code file records it (for
/// eviction across processes: revocation, trust, expiry).
#[derive(Debug, Clone)]
pub(crate) struct Provenance {
    /// The manifest's vendor key.
    pub(crate) vendor: VendorKey,
    /// Its service name.
    pub(crate) service: String,
    /// The end of its validity (ms since the Unix epoch).
    pub(crate) not_after_ms: u64,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("compile_time", &self.compile_time)
            .field("from_disk", &self.from_disk)
            .finish_non_exhaustive()
    }
}

impl Compiled {
    /// Content hash of the bytes it was compiled from.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }
    /// Size of those bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// What the component exports and imports.
    pub fn interfaces(&self) -> &ComponentInterfaces {
        &self.interfaces
    }
    /// The wasmtime component.
    pub fn component(&self) -> &Component {
        &self.component
    }
    /// How long compiling took (or loading, when loaded from the compiled-code directory).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
    /// Whether it was loaded from the client's compiled-code directory instead of compiled.
    pub fn from_disk(&self) -> bool {
        self.from_disk
    }
}

impl Sandbox {
    /// Compiled components in the cache.
    pub fn cached_components(&self) -> usize {
        self.cache.len()
    }

    /// Drops every compiled component cached in memory (the compiled-code directory keeps
    /// its files).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// The cached compilation of `hash`, if any.
    pub fn cached(&self, hash: &ContentHash) -> Option<Arc<Compiled>> {
        self.cache.get(hash)
    }

    /// Whether the cache holds a compilation of `hash`.
    pub fn holds_compiled(&self, hash: &ContentHash) -> bool {
        self.cache.contains(hash)
    }

    /// Drops the cached compilation of `hash`, in memory and in the compiled-code
    /// directory; false if there was none. A run already holding it finishes with it; the
    /// next call compiles again.
    pub fn discard_compiled(&self, hash: &ContentHash) -> bool {
        self.kept().drop_compiled(hash)
    }

    /// What the client checks of bytes before compiling them: the size cap, their type
    /// information (validated, then decoded), and their imports against the policy (every
    /// missing import listed). Returns the component's real imports and exports.
    pub fn inspect_within_policy(&self, bytes: &[u8]) -> Result<ComponentInterfaces, CompileError> {
        inspect_within_policy(&self.policy, bytes)
    }

    /// Checks and compiles `bytes` on a blocking thread, or returns the cached compilation
    /// of the same content. Returns whether it came from the cache. Nothing proportional to
    /// the component's size runs on the async threads: hashing, validating and decoding
    /// its types, and compiling all happen on the blocking pool.
    pub async fn compile(&self, bytes: Arc<[u8]>) -> Result<(Arc<Compiled>, bool), CompileError> {
        check_size_cap(&self.policy, bytes.len())?;
        let hashing = bytes.clone();
        let hash = tokio::task::spawn_blocking(move || ContentHash::of(&hashing))
            .await
            .map_err(|e| CompileError::Task(e.to_string()))?;
        self.compile_hashed(bytes, hash, None).await
    }

    /// [`Sandbox::compile`] of bytes whose hash the caller has just checked to be `hash`
    /// (so they are not hashed again; a wrong hash would file them under another
    /// component's name in the cache, so only this crate may say so). With `provenance`
    /// (the manifest it is compiled for), the code is also written to the compiled-code
    /// directory, if the sandbox has one.
    pub(crate) async fn compile_hashed(
        &self,
        bytes: Arc<[u8]>,
        hash: ContentHash,
        provenance: Option<Provenance>,
    ) -> Result<(Arc<Compiled>, bool), CompileError> {
        if let Some(c) = self.cache.get(&hash) {
            return Ok((c, true));
        }
        let policy = self.policy.clone();
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let disk = self.disk.clone().zip(provenance);
        let compiled = tokio::task::spawn_blocking(move || {
            let interfaces = inspect_within_policy(&policy, &bytes)?;
            let started = Instant::now();
            let component = Component::new(&engine, &*bytes)
                .map_err(|e| CompileError::Compile(format!("{e:#}")))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|e| CompileError::Link(format!("{e:#}")))?;
            let compiled = Compiled {
                hash,
                size: bytes.len(),
                interfaces,
                component,
                pre,
                compile_time: started.elapsed(),
                from_disk: false,
            };
            if let Some((disk, provenance)) = disk {
                store(&disk, &compiled, provenance);
            }
            Ok::<_, CompileError>(compiled)
        })
        .await
        .map_err(|e| CompileError::Task(e.to_string()))??;
        let compiled = Arc::new(compiled);
        self.cache.insert(hash, compiled.clone());
        Ok((compiled, false))
    }

    /// The component of `hash` from the compiled-code directory, if this client wrote it
    /// there (its tag checked before it is deserialized), its manifest's validity has not
    /// ended at `now_ms`, its imports are still granted by the policy and it links; then
    /// also kept in memory. `None` otherwise (compile it). Runs on the blocking pool.
    pub(crate) async fn load_compiled(
        &self,
        hash: ContentHash,
        now_ms: u64,
    ) -> Option<Arc<Compiled>> {
        let disk = self.disk.clone()?;
        let policy = self.policy.clone();
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let loading = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let (component, header) = disk.load(&engine, &hash, now_ms)?;
            let StoredHeader {
                size,
                exports,
                imports,
                ..
            } = header;
            let interfaces = ComponentInterfaces { exports, imports };
            let size = usize::try_from(size).ok()?;
            if let Err(e) = check_size_cap(&policy, size)
                .and_then(|()| Ok(policy.check_imports(&interfaces.imports)?))
            {
                tracing::debug!(component = %hash, "compiled code not used: {e}");
                return None;
            }
            let pre = match linker.instantiate_pre(&component) {
                Ok(pre) => pre,
                Err(e) => {
                    tracing::debug!(component = %hash, "compiled code not used: link: {e:#}");
                    return None;
                }
            };
            Some(Compiled {
                hash,
                size,
                interfaces,
                component,
                pre,
                compile_time: started.elapsed(),
                from_disk: true,
            })
        });
        let compiled = Arc::new(loading.await.ok()??);
        self.cache.insert(hash, compiled.clone());
        Some(compiled)
    }

    /// What the compiled-code directory did so far; `None` when the sandbox has none.
    pub fn disk_cache_stats(&self) -> Option<super::DiskCacheStats> {
        self.disk.as_ref().map(|d| d.stats())
    }

    /// Deletes from the compiled-code directory the files of components whose manifest's
    /// vendor `keep` no longer accepts for its service; returns how many went.
    pub(crate) fn evict_stored(&self, keep: impl Fn(&VendorKey, &str) -> bool) -> usize {
        self.disk.as_ref().map_or(0, |d| d.retain(keep))
    }
}

/// Writes `compiled` to the compiled-code directory; a failure is logged (the next process
/// compiles again).
fn store(disk: &DiskCache, compiled: &Compiled, provenance: Provenance) {
    let header = StoredHeader {
        hash: compiled.hash,
        size: compiled.size as u64,
        exports: compiled.interfaces.exports.clone(),
        imports: compiled.interfaces.imports.clone(),
        vendor: provenance.vendor,
        service: provenance.service,
        not_after_ms: provenance.not_after_ms,
    };
    if let Err(e) = disk.store(&compiled.component, &header) {
        tracing::debug!(component = %compiled.hash, "compiled code not kept on disk: {e}");
    }
}

/// The compiled-component cache: keyed by content hash, insertion-ordered, bounded (the
/// oldest entry goes first). Disabled, it keeps nothing: strict discard.
pub(super) struct ComponentCache {
    enabled: bool,
    capacity: usize,
    entries: Mutex<CacheEntries>,
}

#[derive(Default)]
struct CacheEntries {
    map: HashMap<ContentHash, Arc<Compiled>>,
    order: VecDeque<ContentHash>,
}

impl ComponentCache {
    /// A cache of at most `capacity` components (at least one), or none if not `enabled`.
    pub(super) fn new(enabled: bool, capacity: usize) -> Self {
        Self {
            enabled,
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheEntries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, hash: &ContentHash) -> Option<Arc<Compiled>> {
        if !self.enabled {
            return None;
        }
        self.lock().map.get(hash).cloned()
    }

    fn insert(&self, hash: ContentHash, compiled: Arc<Compiled>) {
        if !self.enabled {
            return;
        }
        let mut c = self.lock();
        if c.map.insert(hash, compiled).is_none() {
            c.order.push_back(hash);
        }
        while c.map.len() > self.capacity {
            match c.order.pop_front() {
                Some(old) => {
                    c.map.remove(&old);
                }
                None => break,
            }
        }
    }

    fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn contains(&self, hash: &ContentHash) -> bool {
        self.lock().map.contains_key(hash)
    }

    /// Drops the entry of `hash`; false if there was none.
    pub(super) fn remove(&self, hash: &ContentHash) -> bool {
        let mut c = self.lock();
        if c.map.remove(hash).is_none() {
            return false;
        }
        c.order.retain(|h| h != hash);
        true
    }

    fn clear(&self) {
        let mut c = self.lock();
        c.map.clear();
        c.order.clear();
    }
}

/// The size cap on what the client compiles.
fn check_size_cap(policy: &Policy, len: usize) -> Result<(), CompileError> {
    let limit = policy.limits.component_bytes;
    if len as u64 > limit {
        return Err(CompileError::TooLarge {
            size: len as u64,
            limit,
        });
    }
    Ok(())
}

/// The checks before compiling: the size cap, the component's real imports and exports
/// (validated, then decoded), its imports against the policy.
fn inspect_within_policy(
    policy: &Policy,
    bytes: &[u8],
) -> Result<ComponentInterfaces, CompileError> {
    check_size_cap(policy, bytes.len())?;
    let interfaces = courier_protocol::inspect(bytes)?;
    policy.check_imports(&interfaces.imports)?;
    Ok(interfaces)
}
