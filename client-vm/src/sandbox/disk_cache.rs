//! The compiled-code cache on disk: the machine code a client compiled, kept across
//! processes so that a one-shot client (`courier call`) does not compile the same proxy
//! again, in a directory (mode 0700) of files named by the component's content hash and a
//! fingerprint of the engine's configuration.
//!
//! `Component::deserialize` trusts its input completely (its bytes become executable
//! code), so a file is deserialized only if this client made it: each file carries an
//! HMAC-SHA256 tag, under a key only this client holds (`disk_key`), over its name and
//! everything in it. On load the tag is checked (in constant time) before anything else of
//! the file is read, then the content hash the caller expects is compared with the one
//! inside; a file that fails is deleted, counted and logged, never deserialized, and the
//! component is compiled again. A file renamed to another component's name, written with
//! another key, truncated or altered by a single bit fails the tag.
//!
//! Layout: `MAGIC | key id (8) | tag (32) | header length (u32 LE) | header | code`, the
//! header (postcard) naming the component's hash, size, real interfaces, and the vendor,
//! service name and validity end of the manifest it was compiled for; the code is
//! `Component::serialize` output. Writes go to a temporary file renamed into place (no
//! fsync: a torn file fails its tag and is compiled again).
//!
//! Eviction follows the in-memory cache's rules: when the client discards a compiled
//! component (its lease over, its key revoked or untrusted) its files go too; when the
//! client's trust changes, files whose vendor may no longer sign for their service go
//! (read from their headers, so this works across processes); a file whose manifest's
//! validity ended is deleted when it would be loaded; and the directory is bounded, the
//! least recently used files going first.

use super::CompilerChoice;
use super::disk_key::{CompiledCodeKey, DiskCacheConfig};
use courier_protocol::{ContentHash, Export, VendorKey};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How every file starts (the format's version is its last byte).
const MAGIC: &[u8; 8] = b"courCC\x00\x01";
/// Bytes before the tagged body: magic, key id, tag.
const PREFIX: usize = 8 + 8 + 32;
/// What the tag is computed under.
const TAG_DOMAIN: &[u8] = b"courier compiled-code file v1";
/// What the engine fingerprint is computed under.
const FINGERPRINT_DOMAIN: &[u8] = b"courier compiled-code engine v1";
/// The extension of cache files.
const EXTENSION: &str = "cwasm";
/// Largest header read by a sweep (which reads headers without their tag).
const MAX_HEADER: usize = 1 << 20;
/// Temporary files older than this are left over from a crash and swept.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// What a file says of the component it holds (covered by the tag).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredHeader {
    /// Content hash of the component's bytes.
    pub(super) hash: ContentHash,
    /// Their size.
    pub(super) size: u64,
    /// Its real exports.
    pub(super) exports: Vec<Export>,
    /// Its real imports.
    pub(super) imports: Vec<String>,
    /// The vendor key of the manifest it was compiled for.
    pub(super) vendor: VendorKey,
    /// That manifest's service name.
    pub(super) service: String,
    /// The end of that manifest's validity (ms since the Unix epoch).
    pub(super) not_after_ms: u64,
}

/// Why a file was refused (and deleted).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("shorter than its fixed part")]
    Truncated,
    #[error("not a compiled-code file")]
    NotOurs,
    #[error("written with another key")]
    OtherKey,
    #[error("its tag does not match its name and contents")]
    BadTag,
    #[error("malformed header: {0}")]
    Malformed(String),
    #[error("holds component {found}, not the one named")]
    OtherComponent { found: ContentHash },
    #[error("the engine refused it: {0}")]
    Deserialize(String),
}

/// What a client's compiled-code directory did since the client started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCacheStats {
    /// Components loaded from a file instead of compiled.
    pub loaded: u64,
    /// Calls to `Component::deserialize` (only ever on a file whose tag verified).
    pub deserialized: u64,
    /// Files refused and deleted (bad tag, another key, another component's name, ...).
    pub refused: u64,
    /// Files written.
    pub stored: u64,
    /// Files deleted by eviction (discard, revocation, trust, expiry, the size bound).
    pub evicted: u64,
}

#[derive(Default)]
struct Counters {
    loaded: AtomicU64,
    deserialized: AtomicU64,
    refused: AtomicU64,
    stored: AtomicU64,
    evicted: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One client's compiled-code directory.
pub(super) struct DiskCache {
    dir: PathBuf,
    key: CompiledCodeKey,
    key_id: [u8; 8],
    fingerprint: [u8; 32],
    max_bytes: u64,
    counters: Counters,
}

impl DiskCache {
    /// Opens (making it, mode 0700) the directory of `config` for code compiled by
    /// `engine` with `compiler`.
    pub(super) fn open(
        config: &DiskCacheConfig,
        engine: &Engine,
        compiler: CompilerChoice,
    ) -> std::io::Result<Self> {
        make_private_dir(&config.dir)?;
        Ok(Self {
            dir: config.dir.clone(),
            key_id: config.key.id(),
            key: config.key.clone(),
            fingerprint: fingerprint(engine, compiler),
            max_bytes: config.max_bytes,
            counters: Counters::default(),
        })
    }

    /// What it did so far.
    pub(super) fn stats(&self) -> DiskCacheStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DiskCacheStats {
            loaded: get(&c.loaded),
            deserialized: get(&c.deserialized),
            refused: get(&c.refused),
            stored: get(&c.stored),
            evicted: get(&c.evicted),
        }
    }

    /// The file name of `hash`'s code for this engine.
    fn name(&self, hash: &ContentHash) -> String {
        format!(
            "{}-{}.{EXTENSION}",
            hash.to_hex(),
            hex::encode(&self.fingerprint[..16])
        )
    }

    /// The component of `hash` compiled before by this client, with what its file says of
    /// it; `None` when there is no such file or it was refused (then deleted) or its
    /// manifest's validity ended at `now_ms` (then evicted).
    pub(super) fn load(
        &self,
        engine: &Engine,
        hash: &ContentHash,
        now_ms: u64,
    ) -> Option<(Component, StoredHeader)> {
        let name = self.name(hash);
        let path = self.dir.join(&name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!(file = %path.display(), "compiled code unreadable: {e}");
                return None;
            }
        };
        let (header, code) = match self.authenticate(&name, &bytes, hash) {
            Ok(found) => found,
            Err(refusal) => {
                self.refuse(&path, &refusal);
                return None;
            }
        };
        if header.not_after_ms <= now_ms {
            tracing::debug!(file = %path.display(), "compiled code evicted: its manifest expired");
            self.evict(&path);
            return None;
        }
        bump(&self.counters.deserialized, 1);
        match deserialize_authenticated(engine, code) {
            Ok(component) => {
                bump(&self.counters.loaded, 1);
                touch(&path);
                Some((component, header))
            }
            Err(e) => {
                self.refuse(&path, &Refusal::Deserialize(format!("{e:#}")));
                None
            }
        }
    }

    /// Checks `bytes`, read from the file `name` and expected to hold `hash`: the tag
    /// first, over the name and everything after it, in constant time; only then the
    /// header it covers. Returns the header and the code.
    fn authenticate<'a>(
        &self,
        name: &str,
        bytes: &'a [u8],
        hash: &ContentHash,
    ) -> Result<(StoredHeader, &'a [u8]), Refusal> {
        if bytes.len() < PREFIX + 4 {
            return Err(Refusal::Truncated);
        }
        let (magic, rest) = bytes.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(Refusal::NotOurs);
        }
        let (key_id, rest) = rest.split_at(8);
        if key_id != self.key_id {
            return Err(Refusal::OtherKey);
        }
        let (tag, body) = rest.split_at(32);
        self.tagger(name, body)
            .verify_slice(tag)
            .map_err(|_| Refusal::BadTag)?;
        // Authenticated from here on: written by this client, under this name.
        let (len, rest) = body.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > rest.len() {
            return Err(Refusal::Malformed(format!("header of {len} bytes")));
        }
        let (header, code) = rest.split_at(len);
        let header: StoredHeader =
            postcard::from_bytes(header).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if header.hash != *hash {
            return Err(Refusal::OtherComponent { found: header.hash });
        }
        Ok((header, code))
    }

    /// The MAC of a file named `name` with tagged part `body`.
    fn tagger(&self, name: &str, body: &[u8]) -> hmac::Hmac<Sha256> {
        let mut mac = self.key.mac();
        mac.update(TAG_DOMAIN);
        mac.update(&self.key_id);
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(body);
        mac
    }

    /// Writes `component`, described by `header`, to its file (replacing any), then keeps
    /// the directory within its bound.
    pub(super) fn store(&self, component: &Component, header: &StoredHeader) -> Result<(), String> {
        let code = component.serialize().map_err(|e| format!("{e:#}"))?;
        let head = postcard::to_stdvec(header).map_err(|e| e.to_string())?;
        let len = u32::try_from(head.len()).map_err(|_| "header too large".to_string())?;
        let mut body = Vec::with_capacity(4 + head.len() + code.len());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&head);
        body.extend_from_slice(&code);
        let name = self.name(&header.hash);
        let tag = self.tagger(&name, &body).finalize().into_bytes();
        let mut file = Vec::with_capacity(PREFIX + body.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&self.key_id);
        file.extend_from_slice(&tag);
        file.extend_from_slice(&body);
        write_replacing(&self.dir, &name, &file).map_err(|e| e.to_string())?;
        bump(&self.counters.stored, 1);
        self.bound();
        Ok(())
    }

    /// Deletes every file of `hash` (for any engine); false if there was none.
    pub(super) fn remove(&self, hash: &ContentHash) -> bool {
        let prefix = format!("{}-", hash.to_hex());
        let mut removed = false;
        for (path, _) in self.files() {
            let named = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix));
            if named {
                removed |= self.evict(&path);
            }
        }
        removed
    }

    /// Deletes every file whose header's vendor `keep` no longer accepts for its service
    /// (and every file whose header cannot be read). The headers are read without checking
    /// their tags: this only deletes, and whatever stays is still authenticated on load.
    /// Returns how many went.
    pub(super) fn retain(&self, keep: impl Fn(&VendorKey, &str) -> bool) -> usize {
        let mut gone = 0;
        for (path, _) in self.files() {
            let kept = read_header(&path).is_ok_and(|h| keep(&h.vendor, &h.service));
            if !kept && self.evict(&path) {
                gone += 1;
            }
        }
        gone
    }

    /// Keeps the directory within its bound, the least recently used files going first,
    /// and sweeps temporary files a crash left behind.
    fn bound(&self) {
        let mut files = self.files();
        let now = SystemTime::now();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let temp = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(courier_durable::TEMP_PREFIX));
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP);
                if temp && stale {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut total: u64 = files.iter().map(|(_, m)| m.len()).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort_by_key(|(_, m)| m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        for (path, meta) in files {
            if total <= self.max_bytes {
                break;
            }
            if self.evict(&path) {
                tracing::debug!(file = %path.display(), "compiled code evicted: directory full");
                total = total.saturating_sub(meta.len());
            }
        }
    }

    /// The cache files in the directory, with their metadata.
    fn files(&self) -> Vec<(PathBuf, std::fs::Metadata)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == EXTENSION))
            .filter_map(|p| {
                let meta = std::fs::symlink_metadata(&p).ok()?;
                meta.is_file().then_some((p, meta))
            })
            .collect()
    }

    /// Deletes a refused file, and says so.
    fn refuse(&self, path: &Path, refusal: &Refusal) {
        bump(&self.counters.refused, 1);
        tracing::debug!(file = %path.display(), "compiled code refused, compiling again: {refusal}");
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!(file = %path.display(), "cannot delete refused compiled code: {e}");
        }
    }

    /// Deletes an evicted file; false if it was not there.
    fn evict(&self, path: &Path) -> bool {
        let gone = std::fs::remove_file(path).is_ok();
        if gone {
            bump(&self.counters.evicted, 1);
        }
        gone
    }
}

/// Turns authenticated `code` back into a component.
#[allow(unsafe_code)]
fn deserialize_authenticated(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` requires bytes produced by `Component::serialize`
    // or `Engine::precompile_component` of a compatible engine, unaltered. `code` comes
    // from a file whose HMAC tag, under a key only this client holds, verified over the
    // file's name (the component's hash and this engine's configuration fingerprint) and
    // all its contents: it is exactly what `DiskCache::store` wrote from
    // `Component::serialize` of a component this client compiled with an engine of the
    // same fingerprint. It was read into memory before the check, so the file changing
    // afterwards cannot change it. wasmtime checks the engine compatibility again itself.
    unsafe { Component::deserialize(engine, code) }
}

/// The fingerprint of the code `engine` makes with `compiler`: wasmtime's own
/// compatibility hash (its version, target, flags, tunables, features), courier's version
/// and the compiler choice.
fn fingerprint(engine: &Engine, compiler: CompilerChoice) -> [u8; 32] {
    use std::hash::Hash;
    let mut h = ShaHasher(Sha256::new());
    std::hash::Hasher::write(&mut h, FINGERPRINT_DOMAIN);
    std::hash::Hasher::write(&mut h, env!("CARGO_PKG_VERSION").as_bytes());
    let choice: &[u8] = match compiler {
        CompilerChoice::Cranelift => b"cranelift",
        CompilerChoice::Winch => b"winch",
    };
    std::hash::Hasher::write(&mut h, choice);
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().into()
}

/// A `Hasher` feeding SHA-256, so that the fingerprint is the same in every process (std's
/// `DefaultHasher` promises no such thing).
struct ShaHasher(Sha256);

impl std::hash::Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// Makes `dir` (and its parents) readable by its owner only, or narrows an existing one.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        let meta = std::fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Writes `bytes` to `dir/name` through a temporary file (owner-only) renamed over it.
fn write_replacing(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut nonce = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let temp = dir.join(format!(
        "{}{}",
        courier_durable::TEMP_PREFIX,
        hex::encode(nonce)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&temp, dir.join(name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Marks a file as just used (for the size bound's least-recently-used order).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// The header of the file at `path`, read without checking its tag (for sweeps only).
fn read_header(path: &Path) -> Result<StoredHeader, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut fixed = [0u8; PREFIX + 4];
    file.read_exact(&mut fixed).map_err(|e| e.to_string())?;
    if &fixed[..MAGIC.len()] != MAGIC {
        return Err("not a compiled-code file".into());
    }
    let len = u32::from_le_bytes([
        fixed[PREFIX],
        fixed[PREFIX + 1],
        fixed[PREFIX + 2],
        fixed[PREFIX + 3],
    ]) as usize;
    if len > MAX_HEADER {
        return Err(format!("header of {len} bytes"));
    }
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    postcard::from_bytes(&header).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_proxy_artifacts as artifacts;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.strategy(wasmtime::Strategy::Winch);
        Engine::new(&config).unwrap()
    }

    const DEFAULT_BYTES: u64 = super::super::DEFAULT_DISK_CACHE_BYTES;

    fn cache(dir: &Path, max_bytes: u64, engine: &Engine) -> DiskCache {
        let config = DiskCacheConfig {
            dir: dir.to_path_buf(),
            key: CompiledCodeKey::from_bytes([5; 32]),
            max_bytes,
        };
        DiskCache::open(&config, engine, CompilerChoice::Winch).unwrap()
    }

    fn header(bytes: &[u8], not_after_ms: u64) -> StoredHeader {
        StoredHeader {
            hash: ContentHash::of(bytes),
            size: bytes.len() as u64,
            exports: vec![],
            imports: vec![],
            vendor: VendorKey::of(&courier_protocol::SigningKey::from_bytes(&[1; 32])),
            service: "acme/echo".into(),
            not_after_ms,
        }
    }

    #[test]
    fn a_file_whose_manifest_expired_is_evicted_instead_of_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let disk = cache(dir.path(), DEFAULT_BYTES, &engine);
        let component = Component::new(&engine, artifacts::ECHO).unwrap();
        let hash = ContentHash::of(artifacts::ECHO);
        disk.store(&component, &header(artifacts::ECHO, 1_000))
            .unwrap();
        assert!(disk.load(&engine, &hash, 999).is_some());
        assert!(disk.load(&engine, &hash, 1_000).is_none());
        let st = disk.stats();
        assert_eq!((st.loaded, st.evicted, st.refused), (1, 1, 0));
        assert!(disk.files().is_empty());
    }

    #[test]
    fn the_directory_keeps_within_its_bound_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let proxies = [artifacts::KV, artifacts::ECHO, artifacts::ECHO_DIGEST];
        let unbounded = cache(dir.path(), DEFAULT_BYTES, &engine);
        let mut sizes = Vec::new();
        for bytes in proxies {
            let component = Component::new(&engine, bytes).unwrap();
            unbounded
                .store(&component, &header(bytes, u64::MAX))
                .unwrap();
            let path = dir.path().join(unbounded.name(&ContentHash::of(bytes)));
            sizes.push(std::fs::metadata(path).unwrap().len());
            std::thread::sleep(Duration::from_millis(20));
        }
        // Room for the echo and digest proxies' files, not for the kv proxy's as well.
        let bound = sizes[1] + sizes[2] + sizes[0] / 2;
        let disk = cache(dir.path(), bound, &engine);
        // The echo proxy's file is used, then the digest's written again: the kv proxy's
        // is the least recently used.
        assert!(
            disk.load(&engine, &ContentHash::of(artifacts::ECHO), 0)
                .is_some()
        );
        std::thread::sleep(Duration::from_millis(20));
        let digest = Component::new(&engine, artifacts::ECHO_DIGEST).unwrap();
        disk.store(&digest, &header(artifacts::ECHO_DIGEST, u64::MAX))
            .unwrap();
        let kept = |bytes: &[u8]| dir.path().join(disk.name(&ContentHash::of(bytes))).exists();
        assert!(!kept(artifacts::KV), "the least recently used goes first");
        assert!(kept(artifacts::ECHO) && kept(artifacts::ECHO_DIGEST));
        assert_eq!(disk.stats().evicted, 1);
    }
}
