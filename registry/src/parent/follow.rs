//! Following the parent's event feed from the anchor: each batch of events becomes one
//! committed change here (registrations read from the parent as its catalog lists them,
//! removals with their reason, the new anchor), renewals are applied in memory. A gap the
//! parent reports (`missed`), or an anchor the parent's feed has not reached, means a new
//! copy of the catalog. While the feed is quiet the parent is asked a trivial question
//! every few seconds, so that a parent that vanished is noticed in seconds, not at QUIC's
//! idle timeout.

use super::copy::{checked, copy_catalog};
use super::{LinkError, ParentConfig, blocking, timed};
use crate::Registry;
use crate::core::state::MirrorDelta;
use crate::driver::LinkEvent;
use crate::store::{MirrorAnchor, Removal};
use courier_protocol::{EventBatch, EventKind};
use courier_transport::RegistryClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long the feed may be quiet before the parent is asked whether it is there.
const QUIET: Duration = Duration::from_secs(3);
/// How often a child says hello again while its link is up (its parent's operator may
/// have asked for a report).
const HELLO_EVERY: Duration = Duration::from_secs(2);
/// An anchor that moved only by renewals is committed at most this often.
const ANCHOR_EVERY: Duration = Duration::from_secs(5);

/// The feed of one session.
pub(super) struct Follow {
    registry: Arc<Registry>,
    client: RegistryClient,
    config: ParentConfig,
    parent: String,
    /// This registry's own key.
    own: courier_protocol::VendorKey,
    /// The next event number to apply.
    next: u64,
    /// When the anchor was last committed, and whether it moved since.
    anchor_at: Instant,
    anchor_moved: bool,
    /// The connection's received bytes as last counted.
    counted: u64,
    /// Vendors of registrations mirrored without a freshness statement (a vendor publishes
    /// it just after registering), and since when: asked about every second for 10 s.
    fresh_wanted: std::collections::HashMap<courier_protocol::VendorKey, Instant>,
}

impl Follow {
    pub(super) fn new(
        registry: Arc<Registry>,
        client: RegistryClient,
        config: ParentConfig,
    ) -> Self {
        let parent = config.pin.to_string();
        let own = courier_protocol::VendorKey::of(&config.key);
        Self {
            own,
            registry,
            client,
            config,
            parent,
            next: 0,
            anchor_at: Instant::now(),
            anchor_moved: false,
            counted: 0,
            fresh_wanted: Default::default(),
        }
    }

    /// Counts the bytes received over the link since the last count.
    fn count_received(&mut self) {
        let now = self.client.connection().stats().udp_rx.bytes;
        self.registry
            .link_event(LinkEvent::Received(now.saturating_sub(self.counted)));
        self.counted = now;
    }

    /// Copies or resumes, then follows until the link fails.
    pub(super) async fn run(&mut self) -> Result<(), LinkError> {
        let probe = timed(self.client.catalog_page(None, 1)).await?;
        self.registry.link_event(LinkEvent::ParentSeq(probe.seq));
        self.registry.link_event(LinkEvent::Connected(true));
        self.next = match self.registry.mirror_anchor() {
            Some(a) if a.parent == self.parent && a.next <= probe.seq => {
                tracing::info!(from = a.next, "resuming the parent's feed from the anchor");
                a.next
            }
            Some(a) if a.parent == self.parent => {
                tracing::warn!(
                    anchor = a.next,
                    parent_seq = probe.seq,
                    "the parent's feed is behind this registry's anchor (a parent restored from \
                     a backup?): copying its catalog again"
                );
                self.copy().await?
            }
            _ => self.copy().await?,
        };
        self.report().await;
        let mut feed = timed(self.client.subscribe(None, self.next)).await?;
        // A zero interval would panic; the CLI refuses anything under 100 ms.
        let floor = Duration::from_millis(100);
        let mut report = tokio::time::interval(self.config.report_every.max(floor));
        report.tick().await;
        let mut refresh = tokio::time::interval(self.config.refresh_every.max(floor));
        refresh.tick().await;
        let mut hello = tokio::time::interval(HELLO_EVERY);
        hello.tick().await;
        let mut soon = tokio::time::interval(Duration::from_secs(1));
        soon.tick().await;
        loop {
            tokio::select! {
                batch = tokio::time::timeout(QUIET, feed.next()) => match batch {
                    Ok(Ok(Some(batch))) => {
                        if self.apply(batch).await? {
                            feed = timed(self.client.subscribe(None, self.next)).await?;
                        }
                    }
                    Ok(Ok(None)) => return Err(LinkError::Closed),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => self.quiet().await?,
                },
                () = self.registry.rules_changed() => {
                    tracing::info!("the mirror's rules or approvals changed: copying the parent's catalog again");
                    self.copy().await?;
                    feed = timed(self.client.subscribe(None, self.next)).await?;
                }
                _ = report.tick() => self.report().await,
                _ = refresh.tick() => self.refresh().await?,
                _ = soon.tick(), if !self.fresh_wanted.is_empty() => self.fresh_soon().await?,
                _ = hello.tick() => {
                    // Its place may have changed, and its operator may want a report now.
                    let welcome = timed(self.client.child_hello()).await?;
                    self.registry.place_in_hierarchy(self.own, welcome.ancestors);
                    if welcome.report_wanted {
                        self.report().await;
                    }
                }
            }
        }
    }

    /// A copy of the catalog; the feed goes on from where it was read.
    async fn copy(&mut self) -> Result<u64, LinkError> {
        let seq = copy_catalog(&self.registry, &self.client, &self.parent).await?;
        self.next = seq;
        self.anchor_at = Instant::now();
        self.anchor_moved = false;
        self.sync_keys().await?;
        // A vendor may publish its freshness statement just after the copy read its
        // registration: asked about again for a few seconds.
        let now = Instant::now();
        for v in self.registry.mirrored_vendors() {
            self.fresh_wanted.entry(v).or_insert(now);
        }
        self.prefetch_all().await;
        self.report().await;
        Ok(seq)
    }

    /// Applies one batch. Returns whether the feed must be subscribed again (a copy was
    /// made after a gap).
    async fn apply(&mut self, batch: EventBatch) -> Result<bool, LinkError> {
        if let Some((from, to)) = batch.missed {
            tracing::warn!(
                from,
                to,
                "the parent's feed no longer holds events this registry missed: copying its catalog again"
            );
            self.copy().await?;
            return Ok(true);
        }
        let Some(last) = batch.events.last().map(|e| e.seq) else {
            return Ok(false);
        };
        self.registry
            .link_event(LinkEvent::ParentSeq(last.saturating_add(1)));
        let mut delta = MirrorDelta::default();
        let mut renewed = Vec::new();
        for event in &batch.events {
            if event.seq < self.next {
                continue;
            }
            let why = match event.kind {
                EventKind::Registered => {
                    let entry = timed(self.client.registration(event.lease)).await?;
                    if let Some(put) = entry.and_then(|e| checked(&self.registry, e)) {
                        delta.puts.push(put);
                    }
                    continue;
                }
                EventKind::Renewed
                    if self.registry.lapsed_mirror(&event.lease)
                        && !delta.puts.iter().any(|p| p.lease == event.lease) =>
                {
                    // It ran out here while the link was cut; the parent still has it.
                    let entry = timed(self.client.registration(event.lease)).await?;
                    if let Some(put) = entry.and_then(|e| checked(&self.registry, e)) {
                        delta.puts.push(put);
                    }
                    continue;
                }
                EventKind::Renewed => {
                    renewed.push(event.lease);
                    continue;
                }
                EventKind::Expired => Removal::Expired,
                EventKind::Cancelled => Removal::Cancelled,
                EventKind::Replaced => Removal::Replaced,
                EventKind::Revoked => Removal::Revoked,
            };
            // A registration put earlier in this batch and gone since is not put.
            delta.puts.retain(|p| p.lease != event.lease);
            delta.removals.push((event.lease, why));
        }
        self.next = self.next.max(last.saturating_add(1));
        // A revocation at the parent may come from a key statement: ask for those of the
        // revoked registrations' vendors once they are applied.
        let revoked: Vec<_> = delta
            .removals
            .iter()
            .filter(|(_, why)| *why == Removal::Revoked)
            .map(|(l, _)| *l)
            .collect();
        let revoked_vendors = if revoked.is_empty() {
            Vec::new()
        } else {
            self.registry.vendors_of(&revoked)
        };
        let changes = !delta.puts.is_empty() || !delta.removals.is_empty();
        self.anchor_moved = true;
        if changes || self.anchor_at.elapsed() >= ANCHOR_EVERY {
            delta.anchor = Some(self.anchor());
            delta.at_ms = crate::driver::wall_clock_ms();
            let fetch: Vec<_> = delta
                .puts
                .iter()
                .map(|p| p.manifest.component_hash)
                .collect();
            let now = Instant::now();
            for p in delta.puts.iter().filter(|p| p.freshness.is_none()) {
                self.fresh_wanted
                    .entry(p.manifest.vendor_key)
                    .or_insert(now);
            }
            blocking(&self.registry, move |r| r.mirror_apply(delta)).await??;
            self.anchor_at = Instant::now();
            self.anchor_moved = false;
            if self.config.prefetch {
                self.prefetch(fetch).await;
            }
        }
        if !renewed.is_empty() {
            self.registry.mirror_renew(&renewed);
        }
        if !revoked_vendors.is_empty() {
            self.sync_keys_of(revoked_vendors).await?;
        }
        Ok(false)
    }

    /// The statements the feed does not announce, for the vendors of the mirrored
    /// registrations: their latest freshness statements (vendors publish one every few
    /// minutes) and key statements. Two requests per 256 vendors, whatever the number of
    /// registrations. With `prefetch`, what is still missing is fetched again.
    async fn refresh(&mut self) -> Result<(), LinkError> {
        let vendors = self.registry.mirrored_vendors();
        self.fetch_freshness(&vendors).await?;
        self.sync_keys_of(vendors).await?;
        // Newer statements of the vendor roots this registry holds (clients that trust a
        // root ask for them here).
        let held = self.registry.held_roots();
        for chunk in held.chunks(courier_protocol::MAX_ROOTS_ASKED) {
            let batch = timed(self.client.root_statements(chunk.to_vec())).await?;
            if !batch.statements.is_empty() || !batch.delegations.is_empty() {
                let asked = chunk.to_vec();
                blocking(&self.registry, move |r| {
                    r.keep_root_statements(&asked, batch)
                })
                .await?;
            }
        }
        self.prefetch_all().await;
        Ok(())
    }

    /// Asks again about the vendors whose registrations came without a freshness
    /// statement; a vendor is dropped once one is held, or after 10 s (the minute's
    /// refresh asks again).
    async fn fresh_soon(&mut self) -> Result<(), LinkError> {
        let vendors: Vec<_> = self.fresh_wanted.keys().copied().collect();
        let got = self.fetch_freshness(&vendors).await?;
        self.fresh_wanted
            .retain(|v, since| !got.contains(v) && since.elapsed() < Duration::from_secs(10));
        Ok(())
    }

    /// The freshness statements the parent holds about `vendors`, kept here (see
    /// `plan_mirror`). Returns the vendors a statement came for.
    async fn fetch_freshness(
        &mut self,
        vendors: &[courier_protocol::VendorKey],
    ) -> Result<Vec<courier_protocol::VendorKey>, LinkError> {
        let mut delta = MirrorDelta::default();
        for chunk in vendors.chunks(courier_protocol::limits::MAX_STATEMENT_KEYS) {
            let statements = timed(self.client.freshness_statements(chunk.to_vec())).await?;
            for signed in statements {
                match signed.verify() {
                    Ok(st) if chunk.contains(&st.get().vendor) => {
                        delta.freshness.push((st.get().clone(), signed));
                    }
                    Ok(_) => tracing::debug!("the parent sent a freshness statement not asked for"),
                    Err(e) => {
                        self.registry.link_event(LinkEvent::BadSignature);
                        tracing::warn!(
                            "the parent sent a freshness statement whose signature fails: {e}"
                        );
                    }
                }
            }
        }
        let got: Vec<_> = delta.freshness.iter().map(|(st, _)| st.vendor).collect();
        if !delta.freshness.is_empty() {
            blocking(&self.registry, move |r| r.mirror_apply(delta)).await??;
        }
        Ok(got)
    }

    /// The key statements (rotations, revocations) the parent holds about the vendors of
    /// the mirrored registrations, kept here as if their vendors had published them here
    /// (each verified; a revocation removes the key's registrations), so that this
    /// registry's clients learn them from it.
    async fn sync_keys(&mut self) -> Result<(), LinkError> {
        let vendors = self.registry.mirrored_vendors();
        self.sync_keys_of(vendors).await
    }

    /// The key statements the parent holds about `vendors`, kept here.
    async fn sync_keys_of(
        &mut self,
        vendors: Vec<courier_protocol::VendorKey>,
    ) -> Result<(), LinkError> {
        for chunk in vendors.chunks(courier_protocol::limits::MAX_STATEMENT_KEYS) {
            let statements = timed(self.client.key_statements(chunk.to_vec())).await?;
            for signed in statements {
                let r = blocking(&self.registry, move |r| {
                    let key = signed.peek().map(|s| s.key);
                    key.map(|key| r.key_statement(r.now(), &key, signed))
                })
                .await?;
                match r {
                    Ok(Ok((statement, true))) => {
                        tracing::info!(%statement, "a key statement from the parent is in force here");
                    }
                    Ok(Ok((_, false))) => {}
                    Ok(Err(e)) => {
                        tracing::debug!("a key statement from the parent is not kept: {e}")
                    }
                    Err(e) => {
                        self.registry.link_event(LinkEvent::BadSignature);
                        tracing::warn!("the parent sent a key statement that does not read: {e}");
                    }
                }
            }
        }
        Ok(())
    }

    /// A quiet feed: is the parent there? The anchor is committed if it moved.
    async fn quiet(&mut self) -> Result<(), LinkError> {
        self.count_received();
        let probe = timed(self.client.catalog_page(None, 1)).await?;
        self.registry.link_event(LinkEvent::ParentSeq(probe.seq));
        if self.anchor_moved {
            let anchor = self.anchor();
            blocking(&self.registry, move |r| {
                r.mirror_apply(MirrorDelta {
                    anchor: Some(anchor),
                    ..Default::default()
                })
            })
            .await??;
            self.anchor_at = Instant::now();
            self.anchor_moved = false;
        }
        Ok(())
    }

    fn anchor(&self) -> MirrorAnchor {
        MirrorAnchor {
            parent: self.parent.clone(),
            next: self.next,
        }
    }

    /// Sends a report up; its activity goes in the next one if the parent does not take it.
    async fn report(&mut self) {
        self.count_received();
        let report = self.registry.child_report_up();
        match timed(self.client.child_report(report.clone())).await {
            Ok(()) => {}
            // Refused as it is: sending it again would be refused again.
            Err(LinkError::Client(courier_transport::ClientError::Registry(e)))
                if e.kind == courier_protocol::ErrorKind::BadQuery =>
            {
                tracing::warn!("the parent refused a report: {e}; its activity is dropped");
            }
            Err(e) => {
                tracing::debug!("the parent did not take a report: {e}");
                self.registry.report_not_taken(report);
            }
        }
    }

    /// With `prefetch`: every mirrored component, fetched now.
    async fn prefetch_all(&self) {
        if self.config.prefetch {
            let hashes = self.registry.mirrored_components();
            self.prefetch(hashes).await;
        }
    }

    async fn prefetch(&self, hashes: Vec<courier_protocol::ContentHash>) {
        for hash in hashes {
            let r = blocking(&self.registry, move |r| r.component_size(&hash)).await;
            if let Ok(Err(e)) = r {
                tracing::debug!(%hash, "prefetch: {e}");
            }
        }
    }
}
