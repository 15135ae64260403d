//! Compiling and its cache: the size cap, the component's real interfaces read and its
//! imports checked against the policy before a byte is compiled, compilation on the
//! blocking pool, and the in-memory cache of compiled components keyed by content hash.
//!
//! Compiled code is only ever produced here from bytes whose hash the caller checked; this
//! module never calls `Component::deserialize`.

use super::Sandbox;
use super::store::RunState;
use crate::policy::{MissingCapabilities, Policy};
use courier_protocol::{ComponentInterfaces, ContentHash, InspectError};
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

/// A component compiled by this sandbox (never deserialized from outside).
pub struct Compiled {
    hash: ContentHash,
    size: usize,
    interfaces: ComponentInterfaces,
    component: Component,
    pub(super) pre: InstancePre<RunState>,
    compile_time: Duration,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("compile_time", &self.compile_time)
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
    /// How long compiling took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

impl Sandbox {
    /// Compiled components in the cache.
    pub fn cached_components(&self) -> usize {
        self.cache.len()
    }

    /// Drops every cached compiled component.
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

    /// Drops the cached compilation of `hash`; false if there was none. A run already
    /// holding it finishes with it; the next call compiles again.
    pub fn discard_compiled(&self, hash: &ContentHash) -> bool {
        self.cache.remove(hash)
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
        self.compile_hashed(bytes, hash).await
    }

    /// [`Sandbox::compile`] of bytes whose hash the caller has just checked to be `hash`
    /// (so they are not hashed again; a wrong hash would file them under another
    /// component's name in the cache, so only this crate may say so).
    pub(crate) async fn compile_hashed(
        &self,
        bytes: Arc<[u8]>,
        hash: ContentHash,
    ) -> Result<(Arc<Compiled>, bool), CompileError> {
        if let Some(c) = self.cache.get(&hash) {
            return Ok((c, true));
        }
        let policy = self.policy.clone();
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let interfaces = inspect_within_policy(&policy, &bytes)?;
            let started = Instant::now();
            let component = Component::new(&engine, &*bytes)
                .map_err(|e| CompileError::Compile(format!("{e:#}")))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|e| CompileError::Link(format!("{e:#}")))?;
            Ok::<_, CompileError>(Compiled {
                hash,
                size: bytes.len(),
                interfaces,
                component,
                pre,
                compile_time: started.elapsed(),
            })
        })
        .await
        .map_err(|e| CompileError::Task(e.to_string()))??;
        let compiled = Arc::new(compiled);
        self.cache.insert(hash, compiled.clone());
        Ok((compiled, false))
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
