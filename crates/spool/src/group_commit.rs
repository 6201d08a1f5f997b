//! Group commit: one writer thread turns everything that arrived while the
//! previous commit was running into the next single transaction.

use crate::{Spool, SpoolBatch, SpoolEntry, SpoolError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, error, info};

/// Most entries (stored plus removed) put into one transaction; more wait
/// for the next one, which keeps a single commit's latency bounded.
pub const MAX_BATCH_ENTRIES: usize = 4096;

/// Most bytes (meta and data) stored by one transaction, so that the
/// writer's memory stays bounded with large messages (a single request
/// larger than this still commits whole).
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// While the last commit failed, how often the writer tries to reopen the
/// store and prove a write works, with no request waiting.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Commits that failed.
    pub failures: AtomicU64,
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

    /// Whether the writer runs and its last commit (or recovery) worked.
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
    // Removals of a failed commit, tried again with the next one.
    let mut retry_removals = Vec::new();
    loop {
        let first = if healthy.load(Ordering::Acquire) {
            receiver.recv().ok()
        } else {
            match receiver.recv_timeout(PROBE_INTERVAL) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    recover(&*spool, healthy);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            }
        };
        let Some(first) = first else { break };
        if !healthy.load(Ordering::Acquire) && !recover(&*spool, healthy) {
            // Still failing: answer at once rather than try a commit that
            // cannot work.
            fail_batch(first, &receiver, &mut retry_removals);
            continue;
        }
        let (mut batch, acks) = collect_batch(first, &receiver);
        batch.remove.append(&mut retry_removals);
        let result = spool.apply(&batch);
        match &result {
            Ok(()) => {
                healthy.store(true, Ordering::Release);
                count_commit(stats, &batch, acks.len());
            }
            Err(err) => {
                healthy.store(false, Ordering::Release);
                stats.failures.fetch_add(1, Ordering::Relaxed);
                error!(
                    stored = batch.store.len(),
                    removed = batch.remove.len(),
                    "spool commit failed: {err}"
                );
                retry_removals = std::mem::take(&mut batch.remove);
            }
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
    if !retry_removals.is_empty() {
        let batch = SpoolBatch {
            store: Vec::new(),
            remove: retry_removals,
        };
        if let Err(err) = spool.apply(&batch) {
            error!("spool removals at close: {err}");
        }
    }
    if let Err(err) = spool.close() {
        error!("closing the spool: {err}");
    }
    debug!("spool writer stopped");
}

/// `first` and whatever else is waiting, up to the batch bounds.
fn collect_batch(
    first: Request,
    receiver: &mpsc::Receiver<Request>,
) -> (SpoolBatch, Vec<oneshot::Sender<Result<(), SpoolError>>>) {
    let mut batch = SpoolBatch::default();
    let mut acks = Vec::new();
    let (mut size, mut bytes) = (0, 0);
    let mut next = Some(first);
    while let Some(request) = next.take() {
        match request {
            Request::Store { entries, ack } => {
                size += entries.len();
                bytes += entries
                    .iter()
                    .map(|e| e.data.len() + e.meta.len())
                    .sum::<usize>();
                batch.store.extend(entries);
                acks.push(ack);
            }
            Request::Remove(id) => {
                size += 1;
                batch.remove.push(id);
            }
        }
        if size < MAX_BATCH_ENTRIES && bytes < MAX_BATCH_BYTES {
            next = receiver.try_recv().ok();
        }
    }
    (batch, acks)
}

/// While the store is failing: refuse `first` and every store waiting, keep
/// the removals for later.
fn fail_batch(first: Request, receiver: &mpsc::Receiver<Request>, removals: &mut Vec<String>) {
    let (mut batch, acks) = collect_batch(first, receiver);
    removals.append(&mut batch.remove);
    for ack in acks {
        let _ = ack.send(Err(SpoolError::Unavailable));
    }
}

/// Try to make the store usable again; `true` (and healthy) when it is.
fn recover(spool: &dyn Spool, healthy: &AtomicBool) -> bool {
    match spool.recover() {
        Ok(()) => {
            info!("spool writes work again; accepting messages");
            healthy.store(true, Ordering::Release);
            true
        }
        Err(err) => {
            debug!("spool still failing: {err}");
            false
        }
    }
}

fn count_commit(stats: &CommitStats, batch: &SpoolBatch, requests: usize) {
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats
        .stored
        .fetch_add(batch.store.len() as u64, Ordering::Relaxed);
    stats
        .removed
        .fetch_add(batch.remove.len() as u64, Ordering::Relaxed);
    stats.requests.fetch_add(requests as u64, Ordering::Relaxed);
    stats
        .max_requests_per_commit
        .fetch_max(requests as u64, Ordering::Relaxed);
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
        recoveries: AtomicU64,
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
        fn scan_meta(&self, _: &mut dyn FnMut(&str, &[u8])) -> Result<(), SpoolError> {
            Ok(())
        }
        fn load(&self, _: &str) -> Result<Option<SpoolEntry>, SpoolError> {
            Ok(None)
        }
        fn recover(&self) -> Result<(), SpoolError> {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            if self.fail.load(Ordering::Acquire) {
                return Err(SpoolError::Storage {
                    path: "flaky".into(),
                    message: "still full".into(),
                });
            }
            Ok(())
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
    async fn recovers_by_itself_and_keeps_removals() {
        let spool = Arc::new(Flaky::default());
        let committer = GroupCommitter::start(spool.clone()).unwrap();
        spool.fail.store(true, Ordering::Release);
        committer.remove("gone".into());
        let err = committer
            .store(vec![entry(1)], Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(!committer.is_healthy(), "{err}");
        // Refused at once while recovery fails, without a commit.
        let err = committer
            .store(vec![entry(2)], Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, SpoolError::Unavailable), "{err}");
        spool.fail.store(false, Ordering::Release);
        // No request needed: the writer probes on its own.
        let deadline = std::time::Instant::now() + 10 * PROBE_INTERVAL;
        while !committer.is_healthy() {
            assert!(std::time::Instant::now() < deadline, "never recovered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        committer
            .store(vec![entry(3)], Duration::from_secs(10))
            .await
            .unwrap();
        let batches = spool.batches.lock();
        let last = batches.last().unwrap();
        assert_eq!(last.store, [entry(3)]);
        assert!(
            batches
                .iter()
                .any(|b| b.remove.contains(&"gone".to_owned())),
            "the failed removal was dropped: {batches:?}"
        );
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
