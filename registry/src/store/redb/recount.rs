//! The components' reference counts, checked at every open in the background: every
//! stored registration is read to count the registrations naming each component,
//! `blob_refs` is made to say exactly that (a store written by another version of courier
//! may not keep the counts), and then the component files nothing names, and temporary
//! files of interrupted writes, are deleted.
//!
//! It reads the whole `registrations` table, as loading the registrations does: run on its
//! own thread, it takes the other core instead of adding its time to the open (a fifth of
//! it at 100,000 registrations). Nothing that changes the counts or the component files
//! (a commit, storing or dropping a component) runs before it has finished: each of those
//! waits for it first ([`Recount::wait`]), and so does dropping the store.

use super::{BLOB_REFS, REGISTRATIONS, component_of};
use crate::store::StoreError;
use crate::store::blobs::{BlobDir, BlobSweep};
use redb::{Database, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The background recount and sweep of one open.
#[derive(Debug)]
pub(super) struct Recount {
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    Running(JoinHandle<Result<(), StoreError>>),
    Done,
    /// Why it failed; every later wait fails with it, so that nothing is committed over
    /// counts that were not checked.
    Failed(String),
}

impl Recount {
    /// Starts counting `db`'s references and sweeping `blobs` on a thread of its own.
    pub(super) fn start(db: Arc<Database>, blobs: Arc<BlobDir>) -> Result<Self, StoreError> {
        let thread = std::thread::Builder::new()
            .name("courier-recount".into())
            .spawn(move || {
                count_blob_refs(&db)?;
                let swept = sweep_blobs(&db, &blobs)?;
                if swept != BlobSweep::default() {
                    tracing::info!(
                        orphans = swept.orphans,
                        temporaries = swept.temporaries,
                        "deleted component files no registration needs"
                    );
                }
                Ok(())
            })?;
        Ok(Self {
            state: Mutex::new(State::Running(thread)),
        })
    }

    /// Returns once the recount and the sweep are done; their error if they failed.
    pub(super) fn wait(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = match std::mem::replace(&mut *state, State::Done) {
            State::Running(thread) => match thread.join() {
                Ok(Ok(())) => State::Done,
                Ok(Err(e)) => State::Failed(e.to_string()),
                Err(_) => State::Failed("the recount thread panicked".into()),
            },
            settled => settled,
        };
        match &*state {
            State::Failed(why) => Err(StoreError::Db(format!(
                "component reference counts not checked: {why}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Counts the references of the stored registrations to each component and makes
/// `blob_refs` say exactly that.
fn count_blob_refs(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let regs = txn.open_table(REGISTRATIONS)?;
        let mut counts: HashMap<[u8; 32], u64> = HashMap::new();
        for item in regs.iter()? {
            let (_, v) = item?;
            if let Some(hash) = component_of(v.value()) {
                *counts.entry(hash.0).or_default() += 1;
            }
        }
        let mut refs = txn.open_table(BLOB_REFS)?;
        let mut agreeing = 0usize;
        let mut stored = 0usize;
        for item in refs.iter()? {
            let (k, v) = item?;
            stored += 1;
            if counts.get(k.value()) == Some(&v.value()) {
                agreeing += 1;
            }
        }
        if agreeing == stored && stored == counts.len() {
            return Ok(());
        }
        if stored > 0 {
            tracing::warn!(
                "component reference counts did not match the stored registrations \
                 (a store written by another version?); counted again"
            );
        }
        refs.retain(|_, _| false)?;
        for (hash, n) in &counts {
            refs.insert(hash, *n)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Deletes component files that no stored registration names, and temporary files of
/// interrupted writes.
fn sweep_blobs(db: &Database, blobs: &BlobDir) -> Result<BlobSweep, StoreError> {
    let txn = db.begin_read()?;
    let refs = txn.open_table(BLOB_REFS)?;
    blobs.sweep(|hash| Ok(refs.get(&hash.0)?.is_some()))
}
