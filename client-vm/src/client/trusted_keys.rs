//! The vendor keys a client trusts, kept up to date with the key statements (rotations,
//! revocations) the registry serves, and with the revocations signed by the operators the
//! client follows. Every statement is verified here before it counts, and only statements
//! about keys the client follows (by operators it follows) are looked at, so a registry
//! can neither make the client trust or distrust a key nor make it verify without end.
//! What is learned is kept in `<state dir>/learned-keys` and verified again when loaded.

use super::SetupError;
use crate::state::KEYS_FILE;
use crate::trust::{TrustError, TrustRefusal, TrustStore};
use courier_protocol::limits::{MAX_CHAIN, MAX_STATEMENT_KEYS};
use courier_protocol::{MAX_ROOTS_ASKED, VendorKey};
use courier_transport::{ClientError, RegistryClient};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

/// Most key statements looked at per answer of the registry.
const MAX_SYNC_STATEMENTS: usize = 1024;

/// A client's trust store and its synchronisation with the registry's key statements.
pub(super) struct TrustedKeys {
    store: RwLock<TrustStore>,
    /// How often statements are asked with the next query.
    refresh: Duration,
    last_sync: Mutex<Option<Instant>>,
    /// Where learned statements are kept (`<state dir>/learned-keys`), if anywhere.
    file: Option<PathBuf>,
}

impl TrustedKeys {
    /// `trust`, plus the statements learned on earlier runs in `state_dir`.
    pub(super) fn open(
        mut trust: TrustStore,
        state_dir: Option<&Path>,
        refresh: Duration,
    ) -> Result<Self, SetupError> {
        let file = state_dir.map(|dir| dir.join(KEYS_FILE));
        if let Some(path) = &file {
            let learned =
                TrustStore::load_or_empty(path).map_err(|source| SetupError::Learned {
                    path: path.clone(),
                    source,
                })?;
            trust.absorb(&learned)?;
        }
        Ok(Self {
            store: RwLock::new(trust),
            refresh,
            last_sync: Mutex::new(None),
            file,
        })
    }

    /// The trust store, for reading.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, TrustStore> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `Ok` if `key` may sign for the service `name` now (trusted, or delegated to by a
    /// trusted root); otherwise why not.
    pub(super) fn check_for(
        &self,
        key: &VendorKey,
        name: &str,
        now_ms: u64,
    ) -> Result<(), TrustRefusal> {
        self.read().check_for(key, name, now_ms)
    }

    /// The key acting for `key` now: the end of its learned rotation chain.
    pub(super) fn current(&self, key: &VendorKey) -> VendorKey {
        self.read().current(key)
    }

    /// Trusts `key` from now on; false if it already was.
    pub(super) fn add(&self, key: VendorKey) -> Result<bool, TrustError> {
        self.store
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(key)
    }

    /// Stops trusting `key`; false if it was not listed.
    pub(super) fn remove(&self, key: &VendorKey) -> bool {
        self.store
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
    }

    /// Asks `registry` for the key statements about the keys followed (and the keys they
    /// rotated to), verifies each, and learns the valid ones; persists them when there is
    /// a state directory. Returns how many were new.
    pub(super) async fn sync(&self, registry: &RegistryClient) -> Result<usize, ClientError> {
        let mut learned = 0;
        // A rotation learned leads to a key whose own statements are asked next.
        for _ in 0..MAX_CHAIN {
            let keys = self.read().followed_keys();
            if keys.is_empty() {
                break;
            }
            let keys = keys[..keys.len().min(MAX_STATEMENT_KEYS)].to_vec();
            let statements = registry.key_statements(keys).await?;
            let mut new = 0;
            {
                let mut trust = self.store.write().unwrap_or_else(|p| p.into_inner());
                // Only statements about keys this client follows are verified (a lying
                // registry cannot make it spend time on others), and only so many.
                for s in statements.iter().take(MAX_SYNC_STATEMENTS) {
                    if !s.peek().is_ok_and(|st| trust.follows(&st.key)) {
                        continue;
                    }
                    match trust.learn(s) {
                        Ok(true) => {
                            tracing::info!(statement = ?s, "learned key statement");
                            new += 1;
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!("key statement from the registry refused: {e}"),
                    }
                }
            }
            learned += new;
            if new == 0 {
                break;
            }
        }
        learned += self.sync_operators(registry).await?;
        learned += self.sync_roots(registry).await?;
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if learned > 0
            && let Some(path) = &self.file
        {
            let learned_only = self.read().learned_only();
            if let Err(e) = learned_only.save(path) {
                tracing::warn!("learned key statements not saved: {e}");
            }
        }
        Ok(learned)
    }

    /// Asks `registry` for the operator statements about the keys followed (when the client
    /// follows an operator) and learns those of followed operators that verify. Returns how
    /// many were new.
    async fn sync_operators(&self, registry: &RegistryClient) -> Result<usize, ClientError> {
        let keys = {
            let trust = self.read();
            if trust.operators().next().is_none() {
                return Ok(0);
            }
            trust.followed_keys()
        };
        if keys.is_empty() {
            return Ok(0);
        }
        let keys = keys[..keys.len().min(MAX_STATEMENT_KEYS)].to_vec();
        let statements = registry.operator_statements(keys).await?;
        let mut new = 0;
        let mut trust = self.store.write().unwrap_or_else(|p| p.into_inner());
        for s in statements.iter().take(MAX_SYNC_STATEMENTS) {
            // Only about keys followed, by operators followed: nothing else is verified.
            let relevant = s.peek().is_ok_and(|st| {
                trust.follows(&st.subject) && trust.operators().any(|o| *o == st.operator)
            });
            if !relevant {
                continue;
            }
            match trust.learn_operator(s) {
                Ok(true) => {
                    tracing::info!(statement = ?s, "learned operator statement");
                    new += 1;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("operator statement from the registry refused: {e}"),
            }
        }
        Ok(new)
    }

    /// Asks `registry` for the statements of the trusted roots newer than those held, and
    /// the further delegations under them; learns those that verify, in version order.
    /// Returns how many were new.
    async fn sync_roots(&self, registry: &RegistryClient) -> Result<usize, ClientError> {
        let mut roots = self.read().root_versions();
        if roots.is_empty() {
            return Ok(0);
        }
        roots.truncate(MAX_ROOTS_ASKED);
        let asked: Vec<_> = roots.iter().map(|r| r.root).collect();
        let batch = registry.root_statements(roots).await?;
        let mut trust = self.store.write().unwrap_or_else(|p| p.into_inner());
        // Only statements about roots asked about are verified (a lying registry cannot
        // make this client keep or check others), and only so many.
        let mut statements: Vec<_> = batch
            .statements
            .iter()
            .take(MAX_ROOTS_ASKED)
            .filter_map(|s| s.peek().ok().map(|p| (p, s)))
            .filter(|(p, _)| asked.contains(&p.root))
            .map(|(p, s)| (p.version, s))
            .collect();
        statements.sort_by_key(|(version, _)| *version);
        let mut new = 0;
        let learned = statements.into_iter().map(|(_, s)| trust.learn_root(s));
        let results: Vec<_> = learned.collect();
        let delegations = batch.delegations.iter().take(MAX_SYNC_STATEMENTS);
        let delegations = delegations.filter(|d| d.peek().is_ok_and(|p| asked.contains(&p.root)));
        let delegations: Vec<_> = delegations.map(|d| trust.learn_delegation(d)).collect();
        for result in results.into_iter().chain(delegations) {
            match result {
                Ok(learned) => new += usize::from(learned),
                Err(e) => tracing::warn!("root statement from the registry refused: {e}"),
            }
        }
        Ok(new)
    }

    /// Syncs if the last sync is older than the refresh interval (a failure is logged).
    /// Returns how many statements were new.
    pub(super) async fn sync_if_due(&self, registry: impl FnOnce() -> RegistryClient) -> usize {
        let due = self
            .last_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= self.refresh);
        if !due {
            return 0;
        }
        match self.sync(&registry()).await {
            Ok(learned) => learned,
            Err(e) => {
                tracing::warn!("key statements not refreshed: {e}");
                0
            }
        }
    }
}
