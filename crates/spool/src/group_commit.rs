//! Group commit: one writer thread turns everything that arrived while the
//! previous commit was running into the next single transaction.

use crate::{Spool, SpoolBatch, SpoolEntry, SpoolError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, error};

/// Most entries (stored plus removed) put into one transaction; more wait
/// for the next one, which keeps a single commit's latency bounded.
pub const MAX_BATCH_ENTRIES: usize = 4096;

enum Request {
    Store {
        entries: Vec<SpoolEntry>,
        ack: oneshot::Sender<Result<(), SpoolError>>,
    },
    Remove(String),
}

/// Counters of the writer, for logs, metrics and the benchmark note.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Entries stored.
    pub stored: AtomicU64,
    /// Entries removed.
    pub removed: AtomicU64,
    /// Store requests (callers) acknowledged.
    pub requests: AtomicU64,
    /// The largest number of store requests in one commit.
    pub max_requests_per_commit: AtomicU64,
}

/// Serializes all writes to a [`Spool`] through one thread. Callers of
/// [`GroupCommitter::store`] wait for the commit that contains their
/// entries; every request that arrived during the previous commit shares the
/// next one, so under load one fsync serves many callers. Removals are
/// never waited for: they ride along with the next commit.
pub struct GroupCommitter {
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    healthy: Arc<AtomicBool>,
    stats: Arc<CommitStats>,
}

impl GroupCommitter {
    /// Start the writer thread for `spool`.
    pub fn start(spool: Arc<dyn Spool>) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(CommitStats::default());
        let thread = {
            let healthy = healthy.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("spool-writer".into())
                .spawn(move || writer_loop(spool, receiver, &healthy, &stats))?
        };
        Ok(GroupCommitter {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            healthy,
            stats,
        })
    }

    /// Store `entries` durably; returns once they are committed (or the
    /// commit failed, or `timeout` passed — then the entries may still be
    /// committed later, and will be loaded again at the next start).
    pub async fn store(
        &self,
        entries: Vec<SpoolEntry>,
        timeout: Duration,
    ) -> Result<(), SpoolError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.send(Request::Store { entries, ack })?;
        match tokio::time::timeout(timeout, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SpoolError::Closed),
            Err(_) => Err(SpoolError::Timeout(timeout)),
        }
    }

    /// Forget a message (delivered, bounced or expired). Made durable with
    /// the next commit; a crash before it means the message is loaded again.
    pub fn remove(&self, id: String) {
        if self.send(Request::Remove(id)).is_err() {
            debug!("spool closed; removal dropped (the message will be loaded again)");
        }
    }

    fn send(&self, request: Request) -> Result<(), SpoolError> {
        match self.sender.lock().as_ref() {
            Some(sender) => sender.send(request).map_err(|_| SpoolError::Closed),
            None => Err(SpoolError::Closed),
        }
    }

    /// Whether the writer runs and its last commit worked.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && self.sender.lock().is_some()
    }

    /// The writer's counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Stop accepting requests, commit what is pending and stop the thread.
    /// Blocking.
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                error!("spool writer thread panicked");
            }
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(
    spool: Arc<dyn Spool>,
    receiver: mpsc::Receiver<Request>,
    healthy: &AtomicBool,
    stats: &CommitStats,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = SpoolBatch::default();
        let mut acks = Vec::new();
        let mut size = 0;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Store { entries, ack } => {
                    size += entries.len();
                    batch.store.extend(entries);
                    acks.push(ack);
                }
                Request::Remove(id) => {
                    size += 1;
                    batch.remove.push(id);
                }
            }
            if size < MAX_BATCH_ENTRIES {
                next = receiver.try_recv().ok();
            }
        }
        let result = spool.apply(&batch);
        match &result {
            Ok(()) => {
                healthy.store(true, Ordering::Release);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .stored
                    .fetch_add(batch.store.len() as u64, Ordering::Relaxed);
                stats
                    .removed
                    .fetch_add(batch.remove.len() as u64, Ordering::Relaxed);
                stats
                    .requests
                    .fetch_add(acks.len() as u64, Ordering::Relaxed);
                stats
                    .max_requests_per_commit
                    .fetch_max(acks.len() as u64, Ordering::Relaxed);
            }
            Err(err) => {
                healthy.store(false, Ordering::Release);
                error!(
                    stored = batch.store.len(),
                    removed = batch.remove.len(),
                    "spool commit failed: {err}"
                );
            }
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
    if let Err(err) = spool.close() {
        error!("closing the spool: {err}");
    }
    debug!("spool writer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedbSpool;

    /// A spool that fails on demand and counts batches.
    #[derive(Default)]
    struct Flaky {
        fail: AtomicBool,
        batches: Mutex<Vec<SpoolBatch>>,
    }

    impl Spool for Flaky {
        fn apply(&self, batch: &SpoolBatch) -> Result<(), SpoolError> {
            std::thread::sleep(Duration::from_millis(5));
            if self.fail.load(Ordering::Acquire) {
                return Err(SpoolError::Storage {
                    path: "flaky".into(),
                    message: "disk full".into(),
                });
            }
            self.batches.lock().push(batch.clone());
            Ok(())
        }
        fn load_all(&self) -> Result<Vec<SpoolEntry>, SpoolError> {
            Ok(Vec::new())
        }
    }

    fn entry(id: usize) -> SpoolEntry {
        SpoolEntry {
            id: format!("{id:04}"),
            meta: b"{}".to_vec(),
            data: b"x".to_vec(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_stores_share_commits() {
        let spool = Arc::new(Flaky::default());
        let committer = Arc::new(GroupCommitter::start(spool.clone()).unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let committer = committer.clone();
                tokio::spawn(async move {
                    committer
                        .store(vec![entry(i)], Duration::from_secs(10))
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = committer.stats();
        assert_eq!(stats.stored.load(Ordering::Relaxed), 64);
        assert!(
            stats.commits.load(Ordering::Relaxed) < 64,
            "no batching: {stats:?}"
        );
        assert!(committer.is_healthy());
    }

    #[tokio::test]
    async fn failures_reach_the_caller_and_health() {
        let spool = Arc::new(Flaky::default());
        let committer = GroupCommitter::start(spool.clone()).unwrap();
        spool.fail.store(true, Ordering::Release);
        let err = committer
            .store(vec![entry(1)], Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(!committer.is_healthy());
        committer.close();
        let err = committer
            .store(vec![entry(2)], Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, SpoolError::Closed));
    }

    #[tokio::test]
    async fn removals_are_flushed_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(RedbSpool::open(dir.path(), None).unwrap());
        let committer = GroupCommitter::start(spool.clone()).unwrap();
        committer
            .store(vec![entry(1), entry(2)], Duration::from_secs(10))
            .await
            .unwrap();
        committer.remove("0001".into());
        committer.close();
        let left: Vec<_> = spool
            .load_all()
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, ["0002"]);
    }
}
