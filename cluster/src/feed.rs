//! The cluster's one event sequence, read off etcd's history: every node (the writer as
//! much as a standby) watches the same revisions in the same order and numbers the same
//! events from them, so a subscriber that moves to another node resumes where it was,
//! without a gap and without an event twice.
//!
//! An event's number is `revision << 16 | index`: etcd's revision of the transaction that
//! made the change, and the event's place among those the transaction made (a transaction
//! holds at most 128 operations). The numbers have holes (revisions that change no
//! registration); the registry's ring tells a hole from a missed event
//! (`EventRecord::after`).
//!
//! Per transaction, removals first (as a single registry numbers a replacement: the old
//! registration's `Replaced`, then the new one's `Registered`), then the rest in etcd's
//! order:
//! - `reg/<lease>` put (with its `lease/` row): `Registered`;
//! - `reg/<lease>` delete: why, from the transaction's `meta/gone` note (`Expired` when a
//!   delete comes without one), with the manifest etcd returns as the deleted value, so a
//!   node that had removed the registration already still describes it;
//! - `lease/<lease>` put alone, not in grace: `Renewed` (one per row a flush wrote: the
//!   renewals a node takes between two flushes are one event, not one each). A grace row
//!   (a takeover's) is no renewal.

use crate::layout::{self, Layout};
use crate::store::lease_row;
use crate::write::GoneNote;
use courier_protocol::{EventKind, LeaseId};
use courier_registry::StoreEvent;
use courier_registry::store_records::decode_manifest;
use etcd_client::{Event, EventType};
use std::collections::HashMap;

/// The number of the event at `index` in the transaction of `revision`.
pub(crate) fn seq(revision: i64, index: usize) -> u64 {
    (u64::try_from(revision).unwrap_or(0) << 16) | (index as u64 & 0xffff)
}

/// The first number after everything up to `revision`.
pub(crate) fn after(revision: i64) -> u64 {
    seq(revision.saturating_add(1), 0)
}

/// The revision of the last change a watch answer delivers (the watch goes on after it
/// when opened again); `None` for an answer without changes.
pub(crate) fn last_revision(answer: &etcd_client::WatchResponse) -> Option<i64> {
    answer.events().iter().map(revision_of).max()
}

/// The events of one watch answer (read with the deleted values), in order.
pub(crate) fn events(layout: &Layout, answer: &[Event]) -> Vec<StoreEvent> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < answer.len() {
        let revision = revision_of(&answer[start]);
        let end = answer[start..]
            .iter()
            .position(|e| revision_of(e) != revision)
            .map_or(answer.len(), |n| start + n);
        one_revision(layout, revision, &answer[start..end], &mut out);
        start = end;
    }
    out
}

fn revision_of(e: &Event) -> i64 {
    e.kv().map_or(0, |kv| kv.mod_revision())
}

/// The events of one transaction.
fn one_revision(layout: &Layout, revision: i64, changes: &[Event], out: &mut Vec<StoreEvent>) {
    let mut rows = HashMap::new();
    let mut gone = HashMap::new();
    let mut gone_at = 0;
    for e in changes {
        let (Some(kv), true) = (e.kv(), e.event_type() == EventType::Put) else {
            continue;
        };
        if let Some(lease) = layout
            .strip(kv.key(), "lease/")
            .and_then(layout::parse_lease)
        {
            if let Some(row) = lease_row(kv.value()) {
                rows.insert(lease, row);
            }
        } else if layout.strip(kv.key(), "meta/gone").is_some()
            && let Some(note) = GoneNote::decode(kv.value())
        {
            gone_at = note.at_ms;
            gone.extend(note.leases);
        }
    }
    let regs: std::collections::HashSet<LeaseId> = changes
        .iter()
        .filter(|e| e.event_type() == EventType::Put)
        .filter_map(|e| e.kv())
        .filter_map(|kv| layout.strip(kv.key(), "reg/").and_then(layout::parse_lease))
        .collect();
    let mut index = 0;
    let mut push = |kind, at_ms, lease, manifest| {
        out.push(StoreEvent {
            seq: seq(revision, index),
            kind,
            at_ms,
            lease,
            manifest,
        });
        index += 1;
    };
    for e in changes
        .iter()
        .filter(|e| e.event_type() == EventType::Delete)
    {
        let Some(kv) = e.kv() else { continue };
        if let Some(lease) = layout.strip(kv.key(), "reg/").and_then(layout::parse_lease) {
            let why = gone.get(&lease).map_or(EventKind::Expired, |w| w.event());
            let manifest = e.prev_kv().and_then(|p| decode_manifest(p.value()).ok());
            push(why, gone_at, lease, manifest);
        }
    }
    for e in changes.iter().filter(|e| e.event_type() == EventType::Put) {
        let Some(kv) = e.kv() else { continue };
        if let Some(lease) = layout.strip(kv.key(), "reg/").and_then(layout::parse_lease) {
            let at = rows.get(&lease).map_or(0, started_ms);
            push(
                EventKind::Registered,
                at,
                lease,
                decode_manifest(kv.value()).ok(),
            );
        } else if let Some(lease) = layout
            .strip(kv.key(), "lease/")
            .and_then(layout::parse_lease)
            && !regs.contains(&lease)
            && let Some(row) = rows.get(&lease).filter(|r| !r.in_grace)
        {
            push(EventKind::Renewed, started_ms(row), lease, None);
        }
    }
}

/// When a row's lease term began (its expiry less its duration): the time of the
/// registration or renewal that wrote it, on the writer's clock.
fn started_ms(row: &courier_registry::LeaseRow) -> u64 {
    row.expires_at_ms.saturating_sub(row.ttl_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_revisions_and_places() {
        assert!(seq(5, 0) < seq(5, 1));
        assert!(seq(5, 65_535) < seq(6, 0));
        assert_eq!(after(5), seq(6, 0));
        assert_eq!(seq(-1, 3), 3, "no revision numbers from 0");
    }
}
