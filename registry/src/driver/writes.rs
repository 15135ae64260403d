//! The registry's writes: each is planned by the state machine, committed durably, then
//! applied and answered. All of them block (disk IO and fsync): call them from a blocking
//! thread.

use super::Registry;
use crate::core::lease_table::Millis;
use crate::core::state::FlushStats;
use crate::errors::{
    FreshnessRefused, GrantError, LeaseError, RegisterError, RootPublishError, StatementRefused,
};
use crate::store::{Storage, StoreError};
use courier_protocol::inspect;
use courier_protocol::{
    ContentHash, FRESHNESS_SKEW_MS, FreshnessStatement, KeyStatement, LeaseGrant, LeaseId,
    MAX_FRESHNESS_VALIDITY_MS, Register, SignedDelegation, SignedFreshness, SignedKeyStatement,
    SignedManifest, SignedRootStatement, VendorKey,
};

/// How long after the last flush a flush commits even with nothing to write (so that the
/// time the registry was last alive stays recent).
const FLUSH_STALE_MS: u64 = 5_000;

/// A component a registration stored before it was admitted: unless the registration was
/// committed, it goes when this is dropped (still under the writer lock), if no committed
/// registration names it.
struct UnclaimedComponent<'a> {
    store: &'a dyn Storage,
    hash: ContentHash,
    claimed: bool,
}

impl Drop for UnclaimedComponent<'_> {
    fn drop(&mut self) {
        if !self.claimed
            && let Err(e) = self.store.drop_unclaimed_component(&self.hash)
        {
            tracing::warn!(hash = %self.hash, "cannot delete the component of a refused registration: {e}");
        }
    }
}

impl Registry {
    /// Registers a proxy for `key`, the vendor its connection is authenticated as. Checks,
    /// in order: the signature, that `key` signed it, the validity window, the component's
    /// hash and size, its real exports, then (in the state) the key's standing and the
    /// name's ownership. Stores the component, commits durably, and only then applies and
    /// answers. Blocking.
    pub fn register(
        &self,
        now: Millis,
        key: &VendorKey,
        req: Register,
    ) -> Result<LeaseGrant, RegisterError> {
        if req.staged && self.cluster().is_some() {
            return Err(RegisterError::StagedInCluster);
        }
        let manifest = req.manifest.verify()?;
        if manifest.vendor_key != *key {
            return Err(RegisterError::WrongVendor {
                auth: *key,
                manifest: manifest.vendor_key,
            });
        }
        manifest
            .check_times(self.wall_ms(now))
            .map_err(RegisterError::Times)?;
        manifest
            .check_component(&req.component)
            .map_err(RegisterError::Component)?;
        inspect(&req.component)?
            .check_claims(&manifest.exports)
            .map_err(RegisterError::NotExported)?;
        let manifest = manifest.into_inner();
        let hash = manifest.component_hash;
        // Stored outside the lock (its fsync must not hold up other writers); again under
        // it, which costs a stat, in case a commit in between deleted the file as the last
        // reference of a registration that went away.
        self.store.put_component(&hash, &req.component)?;
        let writer = self.writer();
        if let Some(grant) = self.register_again(
            now,
            key,
            &req.manifest,
            &manifest.name,
            req.ttl_ms,
            req.staged,
        ) {
            return Ok(grant);
        }
        self.store.put_component(&hash, &req.component)?;
        let mut unclaimed = UnclaimedComponent {
            store: &*self.store,
            hash,
            claimed: false,
        };
        let lease = LeaseId(rand::random());
        let name = manifest.name.clone();
        let planned = self.state().plan_register_as(
            now,
            lease,
            key,
            req.manifest,
            manifest,
            req.ttl_ms,
            req.staged,
        )?;
        let grant = self.commit(&writer, now, planned)?;
        unclaimed.claimed = true;
        drop(unclaimed);
        drop(writer);
        let grant = grant?;
        tracing::info!(%lease, %name, ttl_ms = grant.ttl_ms, replaced = ?grant.replaced, staged = req.staged, "registered");
        Ok(grant)
    }

    /// The very manifest `key` has live under `name` (same bytes, same signature),
    /// registered again: its lease, renewed for `ttl_ms`, instead of a new lease that
    /// replaces it. A vendor whose registration timed out registers again, and the first
    /// request may still be committed after the second: without this, the lease the
    /// vendor holds would be replaced by the one it never heard of. The caller holds the
    /// writer lock, so two such requests never both pass.
    fn register_again(
        &self,
        now: Millis,
        key: &VendorKey,
        signed: &SignedManifest,
        name: &str,
        ttl_ms: u64,
        staged: bool,
    ) -> Option<LeaseGrant> {
        let lease = self.state().live_lease_named_as(now, key, name, staged)?;
        let held = self.store.manifests(&[lease]).ok()?.pop().flatten()?;
        if held.bytes != signed.bytes || held.signature != signed.signature {
            return None;
        }
        let grant = self.renew(now, key, lease, ttl_ms).ok()?;
        tracing::info!(%lease, %name, ttl_ms = grant.ttl_ms, "registered again: the same manifest keeps its lease");
        Some(grant)
    }

    /// Cancels a lease of `key`, durably. Blocking.
    pub fn cancel(&self, now: Millis, key: &VendorKey, lease: LeaseId) -> Result<(), LeaseError> {
        let writer = self.writer();
        let planned = self.state().plan_cancel(now, key, lease)?;
        self.commit(&writer, now, planned)??;
        tracing::info!(%lease, "cancelled");
        Ok(())
    }

    /// Applies a key statement published by the key it is about (`key`, the connection's):
    /// verifies it, checks it against the statements in force, commits it durably, then
    /// follows it. A rotation passes the old key's names and grants to the new key; a
    /// revocation removes the key's registrations at once (event `revoked`). Returns the
    /// statement, and whether it changed anything (the same revocation twice changes
    /// nothing). Blocking.
    pub fn key_statement(
        &self,
        now: Millis,
        key: &VendorKey,
        signed: SignedKeyStatement,
    ) -> Result<(KeyStatement, bool), StatementRefused> {
        let statement = signed.verify()?.into_inner();
        if statement.key != *key {
            return Err(StatementRefused::WrongKey {
                auth: *key,
                key: statement.key,
            });
        }
        let changed = self.change_keys(now, statement.clone(), Some(signed))?;
        tracing::info!(%statement, changed, "key statement");
        Ok((statement, changed))
    }

    /// Keeps a vendor root's statement: verifies it follows the newest held for its root
    /// (or is a root's first), commits it durably, then serves it. Registrations of the
    /// root's names by keys it no longer delegates them to are removed at once (event
    /// `revoked`). Returns whether it was new. Blocking.
    pub fn root_statement(
        &self,
        now: Millis,
        signed: SignedRootStatement,
    ) -> Result<bool, RootPublishError> {
        let writer = self.writer();
        let Some(planned) = self.state().plan_root_statement(now, signed)? else {
            return Ok(false);
        };
        let statement = self.commit(&writer, now, planned)?;
        tracing::info!(root = %statement.root, version = statement.version, "root statement");
        Ok(true)
    }

    /// Keeps a further delegation an online key made under a root, if it stays within
    /// what the key holds. Returns whether it was new. Blocking.
    pub fn delegation(&self, signed: SignedDelegation) -> Result<bool, RootPublishError> {
        let writer = self.writer();
        let Some(planned) = self.state().plan_delegation(signed)? else {
            return Ok(false);
        };
        let statement = self.commit(&writer, self.now(), planned)?;
        tracing::info!(root = %statement.root, parent = %statement.parent, key = %statement.delegation.key, "delegation");
        Ok(true)
    }

    /// Keeps a freshness statement published by its vendor (`key`, the connection's):
    /// verifies it, checks that it has not expired, that the key is active and owns (or
    /// was granted) every service it names, and that it is newer than the one held for
    /// each, commits it durably, then serves it with those services' candidates. The same
    /// statement again changes nothing. Blocking.
    pub fn freshness(
        &self,
        now: Millis,
        key: &VendorKey,
        signed: SignedFreshness,
    ) -> Result<FreshnessStatement, FreshnessRefused> {
        let statement = signed.verify()?.into_inner();
        if statement.vendor != *key {
            return Err(FreshnessRefused::WrongKey {
                auth: *key,
                vendor: statement.vendor,
            });
        }
        statement.check_time(
            self.wall_ms(now),
            MAX_FRESHNESS_VALIDITY_MS,
            FRESHNESS_SKEW_MS,
        )?;
        let writer = self.writer();
        let planned = self
            .state()
            .plan_freshness(now, key, statement.clone(), signed)?;
        if let Some(planned) = planned {
            self.commit(&writer, now, planned)?;
            tracing::debug!(%statement, "freshness statement");
        }
        Ok(statement)
    }

    /// Operator action: revokes `key` without a statement of the key itself (so clients do
    /// not learn of it; the registry stops matching its proxies and refuses it). Durable
    /// before it returns; returns whether it was new. Blocking.
    pub fn revoke_by_operator(
        &self,
        now: Millis,
        key: &VendorKey,
    ) -> Result<bool, StatementRefused> {
        let statement = KeyStatement::revoke(*key, self.wall_ms(now));
        self.change_keys(now, statement, None)
    }

    fn change_keys(
        &self,
        now: Millis,
        statement: KeyStatement,
        signed: Option<SignedKeyStatement>,
    ) -> Result<bool, StatementRefused> {
        let writer = self.writer();
        let Some(planned) = self.state().plan_key_change(statement, signed)? else {
            return Ok(false);
        };
        self.commit(&writer, now, planned)?;
        Ok(true)
    }

    /// Operator action: lets `key` register (and so replace, renew, cancel its own
    /// registrations of) `name`. An unowned name becomes `key`'s. Durable before it
    /// returns. Blocking.
    pub fn grant(&self, name: &str, key: &VendorKey) -> Result<(), GrantError> {
        let writer = self.writer();
        let planned = self.state().plan_grant(name, key)?;
        self.commit(&writer, self.now(), planned)?;
        tracing::info!(name, %key, "name granted");
        Ok(())
    }

    /// Writes renewed and expired leases behind, in one durable transaction, with the time
    /// the registry is alive at (and more event numbers, when they run low). Skips the
    /// commit when nothing changed and the last one is recent. Blocking.
    ///
    /// A cluster's standby writes the rows of the leases it renewed, and nothing else.
    pub fn flush(&self, now: Millis) -> Result<FlushStats, StoreError> {
        let writer = self.writer();
        if self.standby {
            let (planned, ticket) = {
                let mut st = self.state();
                (st.plan_held_flush(), st.held_ticket())
            };
            let result = match planned {
                Some(planned) => self.commit(&writer, now, planned),
                // The renewals numbered so far left nothing to write (their leases went).
                None => Ok(FlushStats::default()),
            };
            self.held.finished(ticket, result.is_ok());
            return result;
        }
        let Some(planned) = self.state().plan_flush(now, FLUSH_STALE_MS) else {
            return Ok(FlushStats::default());
        };
        self.commit(&writer, now, planned)
    }

    /// Durably reserves more event numbers if fewer than `need` (plus a margin) are left.
    /// Blocking.
    pub fn reserve_events(&self, need: u64) -> Result<(), StoreError> {
        let writer = self.writer();
        let Some(planned) = self.state().plan_reserve(need) else {
            return Ok(());
        };
        self.commit(&writer, self.now(), planned)
    }

    /// Loads many registrations at once in one durable transaction, checking signatures,
    /// validity and ownership but not components (none are given, and none are stored).
    /// For benchmarks: the network never reaches it. Blocking.
    #[cfg(feature = "bench")]
    pub fn load_bulk(
        &self,
        now: Millis,
        items: Vec<(courier_protocol::SignedManifest, u64)>,
    ) -> Result<Vec<LeaseId>, RegisterError> {
        let mut checked = Vec::with_capacity(items.len());
        for (signed, ttl_ms) in items {
            let m = signed.verify()?;
            m.check_times(self.wall_ms(now))
                .map_err(RegisterError::Times)?;
            checked.push((LeaseId(rand::random()), signed, m.into_inner(), ttl_ms));
        }
        let writer = self.writer();
        let planned = self.state().plan_bulk_load(now, checked)?;
        self.commit(&writer, now, planned)?
    }

    /// Registers `signed` staged for `ttl_ms`, checking its signature, validity and
    /// ownership but not its component (none is given, none is stored). For benchmarks.
    /// Blocking.
    #[cfg(feature = "bench")]
    pub fn load_staged(
        &self,
        now: Millis,
        signed: courier_protocol::SignedManifest,
        ttl_ms: u64,
    ) -> Result<LeaseId, RegisterError> {
        let m = signed.verify()?.into_inner();
        m.check_times(self.wall_ms(now))
            .map_err(RegisterError::Times)?;
        let key = m.vendor_key;
        let lease = LeaseId(rand::random());
        let writer = self.writer();
        let planned = self
            .state()
            .plan_register_as(now, lease, &key, signed, m, ttl_ms, true)?;
        self.commit(&writer, now, planned)??;
        Ok(lease)
    }
}
