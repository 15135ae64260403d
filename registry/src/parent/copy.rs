//! What a child reads of its parent becomes a [`MirrorDelta`]: each manifest's signature
//! is checked first (one that fails is dropped, counted and reported, never stored), and a
//! whole copy of the parent's catalog is read in pages.

use super::{LinkError, blocking, timed};
use crate::Registry;
use crate::core::state::{MirrorDelta, MirrorPut};
use crate::driver::LinkEvent;
use crate::store::MirrorAnchor;
use courier_protocol::CatalogEntry;
use courier_protocol::limits::MAX_CATALOG_PAGE;
use courier_transport::RegistryClient;
use std::collections::HashSet;
use std::sync::Arc;

/// An entry of the parent's, its signature checked: `None` (counted) if it fails, or if
/// the lease state does not describe the manifest.
pub(super) fn checked(registry: &Registry, entry: CatalogEntry) -> Option<MirrorPut> {
    let lease = entry.lease;
    let manifest = match entry.manifest.verify() {
        Ok(m) => m.into_inner(),
        Err(e) => {
            registry.link_event(LinkEvent::BadSignature);
            tracing::warn!(lease = %lease.lease, "the parent sent a manifest whose signature fails; dropped: {e}");
            return None;
        }
    };
    if manifest.name != lease.name || manifest.component_hash != lease.component {
        registry.link_event(LinkEvent::BadSignature);
        tracing::warn!(lease = %lease.lease, "the parent's lease state does not describe its manifest; dropped");
        return None;
    }
    // A statement whose signature fails is left out (clients of this registry then
    // refuse the candidate, as they would at the parent).
    let freshness = entry.freshness.and_then(|signed| match signed.verify() {
        Ok(st) => Some((st.get().clone(), signed)),
        Err(e) => {
            registry.link_event(LinkEvent::BadSignature);
            tracing::warn!(lease = %lease.lease, "the parent sent a freshness statement whose signature fails; dropped: {e}");
            None
        }
    });
    Some(MirrorPut {
        lease: lease.lease,
        signed: entry.manifest,
        manifest,
        remaining_ms: lease.remaining_ms,
        ttl_ms: lease.ttl_ms,
        renewals: lease.renewals,
        freshness,
    })
}

/// Copies the parent's whole catalog, page by page (each committed as it comes), then
/// removes what is mirrored and no longer listed and keeps the anchor: the feed position
/// the first page was read at. Returns it.
pub(super) async fn copy_catalog(
    registry: &Arc<Registry>,
    client: &RegistryClient,
    parent: &str,
) -> Result<u64, LinkError> {
    let mut after = None;
    let mut listed = HashSet::new();
    let mut start = None;
    let mut added = 0;
    loop {
        let page = timed(client.catalog_page(after, MAX_CATALOG_PAGE)).await?;
        let seq = *start.get_or_insert(page.seq);
        registry.link_event(LinkEvent::ParentSeq(page.seq));
        listed.extend(page.entries.iter().map(|e| e.lease.lease));
        let puts: Vec<MirrorPut> = page
            .entries
            .into_iter()
            .filter_map(|e| checked(registry, e))
            .collect();
        let at_ms = crate::driver::wall_clock_ms();
        let applied = blocking(registry, move |r| {
            r.mirror_apply(MirrorDelta {
                puts,
                at_ms,
                ..Default::default()
            })
        })
        .await??;
        added += applied.added;
        match page.next {
            Some(next) => after = Some(next),
            None => {
                let anchor = MirrorAnchor {
                    parent: parent.to_string(),
                    next: seq,
                };
                let at_ms = crate::driver::wall_clock_ms();
                let applied = blocking(registry, move |r| {
                    r.mirror_apply(MirrorDelta {
                        listed: Some(listed),
                        anchor: Some(anchor),
                        at_ms,
                        ..Default::default()
                    })
                })
                .await??;
                registry.link_event(LinkEvent::Copied);
                tracing::info!(
                    added,
                    removed = applied.removed,
                    from_seq = seq,
                    "copied the parent's catalog"
                );
                return Ok(seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::{LeaseId, LeaseInfo, SignedManifest};

    fn entry(manifest: SignedManifest) -> CatalogEntry {
        let m = manifest.peek().unwrap();
        CatalogEntry {
            lease: LeaseInfo {
                lease: LeaseId([1; 16]),
                name: m.name.clone(),
                version: m.version.clone(),
                vendor: m.vendor_key,
                interfaces: m.exports.iter().map(|e| e.interface.clone()).collect(),
                component: m.component_hash,
                endpoints: m.endpoints.clone(),
                remaining_ms: 10_000,
                ttl_ms: 30_000,
                renewals: 0,
                in_grace: false,
                mirrored: None,
                last_renewal_ms: 0,
                clients_served: 0,
                holder: None,
            },
            manifest,
            freshness: None,
        }
    }

    #[test]
    fn what_the_parent_sends_is_checked_before_anything_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(crate::RegistryConfig::new(dir.path())).unwrap();
        let good = courier_test_support::signed_manifest_for(b"component", 3);
        assert!(checked(&registry, entry(good.clone())).is_some());

        // One byte of the manifest changed: its signature fails.
        let mut tampered = good.clone();
        let last = tampered.bytes.len() - 1;
        tampered.bytes[last] ^= 1;
        let mut e = entry(good.clone());
        e.manifest = tampered;
        assert!(checked(&registry, e).is_none());

        // Lease state that describes another registration.
        let mut e = entry(good.clone());
        e.lease.name = "other/name".into();
        assert!(checked(&registry, e).is_none());

        // A freshness statement whose signature fails is left out; the entry stays.
        let mut e = entry(good);
        let statement = courier_protocol::FreshnessStatement::new(
            e.lease.vendor,
            [(e.lease.name.clone(), "1.0.0".to_string())],
            1,
            1_000,
        );
        let mut signed =
            courier_protocol::SignedFreshness::sign(&statement, &courier_test_support::key(4));
        signed.signature[0] ^= 1;
        e.freshness = Some(signed);
        assert!(checked(&registry, e).unwrap().freshness.is_none());
        assert_eq!(registry.mirror_status().0.bad_signatures, 3);
    }
}
