//! The project's one segmented log writer: records (anything `Serialize`)
//! become JSON lines in segment files under a directory, written by a
//! thread of their own. nephele's local logs (`kumo.configure_local_logs`)
//! and the accounting log (`kumo.aaa.configure_acct_log`) both use it.
//!
//! - **Segments** are named by their opening time in UTC,
//!   `YYYYMMDD-HHMMSS` (`.1`, `.2`, ... when several open within one
//!   second). A segment is finished once `max_file_size` uncompressed bytes
//!   went in, `max_segment_duration` after it opened (even when idle), and
//!   when the log closes. Plain segments, or one zstd frame per segment.
//! - **Flushing**: after each burst of records (everything queued when the
//!   writer woke up), so a plain segment can be read while it grows; a zstd
//!   segment is a complete frame only once finished.
//! - **Back-pressure: none.** Records reach the writer through a bounded
//!   queue ([`SegmentLogConfig::queue_capacity`]). When it is full, because
//!   the disk is slower than the records come, a new record is dropped and
//!   counted ([`SegmentLog::dropped`], [`SegmentLog::dropped_counter`] for a
//!   metric) and a warning is logged at most once per
//!   [`DROP_WARNING_INTERVAL`]. A log must never block or refuse a login or
//!   a delivery, and must not grow memory without bound either.
//!
//! It knows nothing of what the records mean.

mod writer;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{error, warn};

pub use writer::segment_name;

/// The count of dropped records, as a Prometheus counter (clones share the
/// count), so a binary can register it as a metric.
pub type DropCounter = Counter;

/// Default [`SegmentLogConfig::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
/// At most one "records dropped" warning per this interval, per log.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Default [`SegmentLogConfig::max_file_size`]: 128 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// How segment files are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain JSON lines.
    None,
    /// One zstd frame per segment, at this level (1..=22).
    Zstd {
        /// The zstd compression level.
        level: i32,
    },
}

/// Where and how a [`SegmentLog`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLogConfig {
    /// What the log is, for warnings and the writer thread's name
    /// (e.g. `"accounting log"`).
    pub name: &'static str,
    /// Directory of the segments (created if missing).
    pub log_dir: PathBuf,
    /// A segment is finished once this many uncompressed bytes went in.
    pub max_file_size: u64,
    /// A segment is finished this long after it opened, even when idle.
    pub max_segment_duration: Option<Duration>,
    /// Plain or zstd.
    pub compression: Compression,
    /// Records waiting for the writer at most; past it new ones are dropped.
    pub queue_capacity: usize,
}

impl SegmentLogConfig {
    /// Plain segments in `log_dir` with the default size, no age limit and
    /// the default queue.
    pub fn new(name: &'static str, log_dir: impl Into<PathBuf>) -> Self {
        SegmentLogConfig {
            name,
            log_dir: log_dir.into(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_segment_duration: None,
            compression: Compression::None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// A running log. [`SegmentLog::close`] (or dropping it) writes what is
/// queued and finishes the open segment.
pub struct SegmentLog<T> {
    name: &'static str,
    sender: Mutex<Option<SyncSender<T>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped: Counter,
    last_drop_warning: Mutex<Option<Instant>>,
}

impl<T: Serialize + Send + 'static> SegmentLog<T> {
    /// Create `log_dir` and start the writer thread. The error names the
    /// directory.
    pub fn start(config: SegmentLogConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.log_dir).map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("creating log_dir {}: {err}", config.log_dir.display()),
            )
        })?;
        let name = config.name;
        // A zero-capacity channel would be a rendezvous, blocking callers.
        let (sender, receiver) = sync_channel(config.queue_capacity.max(1));
        let writer = std::thread::Builder::new()
            .name(name.replace(' ', "-"))
            .spawn(move || writer::SegmentWriter::new(config).run(receiver))?;
        Ok(SegmentLog {
            name,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            dropped: Counter::default(),
            last_drop_warning: Mutex::new(None),
        })
    }

    /// Queue `record` for writing without waiting. `false` when it was
    /// dropped: the queue is full (counted) or the log is closed.
    pub fn log(&self, record: T) -> bool {
        let sender = self.sender.lock().clone();
        let Some(sender) = sender else {
            return false;
        };
        match sender.try_send(record) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.count_drop();
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn count_drop(&self) {
        let dropped = self.dropped.inc() + 1;
        let mut last = self.last_drop_warning.lock();
        if last.is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            warn!(
                log = self.name,
                dropped,
                "log queue full (the disk is slower than the records); records are being dropped"
            );
        }
    }
}

impl<T> SegmentLog<T> {
    /// Records dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// The drop counter, to register as a metric (clones share the count).
    pub fn dropped_counter(&self) -> DropCounter {
        self.dropped.clone()
    }

    /// Stop accepting records, let the writer write what is queued and
    /// finish the open segment. Blocking; idempotent.
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            if writer.join().is_err() {
                error!(log = self.name, "log writer panicked");
            }
        }
    }
}

impl<T> Drop for SegmentLog<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> std::fmt::Debug for SegmentLog<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentLog")
            .field("name", &self.name)
            .field("dropped", &self.dropped())
            .finish()
    }
}
