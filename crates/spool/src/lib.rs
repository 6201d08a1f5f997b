//! Durable storage for messages that were acknowledged and not yet
//! delivered.
//!
//! It owns the [`Spool`] trait (store and remove entries in one durable
//! step, list what is stored), its redb backend ([`RedbSpool`], data and meta
//! in one or two database files) and the [`GroupCommitter`] that batches the
//! commits of concurrent callers into one transaction while never answering
//! a caller before its entries are durable. Entries are opaque bytes under
//! an id: this crate knows nothing of the message format, queues or
//! delivery.

mod group_commit;
mod redb_spool;

pub use group_commit::{
    CommitStats, GroupCommitter, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, PROBE_INTERVAL,
};
pub use redb_spool::{RedbSpool, CACHE_SIZE};

/// One stored message: its id, its meta record and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    /// The message id (the key).
    pub id: String,
    /// The meta record (envelope, meta values).
    pub meta: Vec<u8>,
    /// The message bytes; empty for a record stored as its meta alone.
    pub data: Vec<u8>,
}

/// Entries to add and ids to remove, made durable together.
#[derive(Debug, Default, Clone)]
pub struct SpoolBatch {
    /// New entries.
    pub store: Vec<SpoolEntry>,
    /// Ids whose entries are no longer needed (delivered, bounced, expired).
    pub remove: Vec<String>,
}

impl SpoolBatch {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty() && self.remove.is_empty()
    }
}

/// Why the spool could not do what was asked. The text names the spool's
/// file; it never contains message content. It is for logs: what an HTTP
/// client is told says only that the spool is unavailable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// The storage engine failed (I/O, corruption, full disk).
    #[error("spool {path}: {message}")]
    Storage {
        /// The database file.
        path: String,
        /// The engine's error.
        message: String,
    },
    /// The spool's writer has stopped (shutting down, or it failed).
    #[error("the spool is closed")]
    Closed,
    /// The store failed before and could not be made usable again yet;
    /// nothing was tried.
    #[error("the spool is failing; writes are retried every second")]
    Unavailable,
    /// The commit did not finish in time.
    #[error("the spool commit did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

/// A durable message store.
pub trait Spool: Send + Sync + 'static {
    /// Make `batch` durable: when this returns `Ok`, a crash no longer loses
    /// the stored entries nor brings back the removed ones. Blocking.
    fn apply(&self, batch: &SpoolBatch) -> Result<(), SpoolError>;

    /// Every stored entry, in id order. Blocking; reads every body, so it
    /// is for tests and tools: start-up uses [`Spool::scan_meta`].
    fn load_all(&self) -> Result<Vec<SpoolEntry>, SpoolError> {
        let mut ids = Vec::new();
        self.scan_meta(&mut |id, _| ids.push(id.to_owned()))?;
        let mut entries = Vec::with_capacity(ids.len());
        for id in ids {
            entries.extend(self.load(&id)?);
        }
        Ok(entries)
    }

    /// Call `visit(id, meta)` for every stored entry, in id order, without
    /// reading any message data; data records left without a meta record
    /// (an interrupted store) are deleted first. Blocking; for start-up.
    fn scan_meta(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), SpoolError>;

    /// One entry (meta and data), `None` when it is not stored. Blocking.
    fn load(&self, id: &str) -> Result<Option<SpoolEntry>, SpoolError>;

    /// After a failed commit: make the store usable again (the redb backend
    /// reopens its files, since redb refuses every operation after an I/O
    /// error) and prove it with a small durable write. Blocking.
    fn recover(&self) -> Result<(), SpoolError> {
        Ok(())
    }

    /// Finish deferred work before the process exits. Blocking.
    fn close(&self) -> Result<(), SpoolError> {
        Ok(())
    }
}
