//! The writer as its users see it: files on disk, rotation, the bounded
//! queue's drop-and-count.

use segment_log::{Compression, SegmentLog, SegmentLogConfig};
use serde::{Serialize, Serializer};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on waiting for the writer thread.
const WAIT: Duration = Duration::from_secs(10);

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

fn plain_lines(dir: &Path) -> Vec<serde_json::Value> {
    segments(dir)
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn plain_segments_rotate_by_size_and_are_readable_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SegmentLogConfig::new("test log", dir.path());
    config.max_file_size = 1; // one record per segment
    let log = SegmentLog::start(config).unwrap();
    assert!(log.log(serde_json::json!({"n": 1})));
    assert!(log.log(serde_json::json!({"n": 2})));
    log.close();
    let paths = segments(dir.path());
    assert_eq!(paths.len(), 2, "{paths:?}");
    for path in &paths {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.len() >= 15 && name.as_bytes()[8] == b'-',
            "segment name {name}"
        );
    }
    let records = plain_lines(dir.path());
    assert_eq!(
        records,
        [serde_json::json!({"n": 1}), serde_json::json!({"n": 2})]
    );

    // A segment below its limits is flushed after each burst, so a reader
    // sees the record before the log is closed.
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::start(SegmentLogConfig::new("test log", dir.path())).unwrap();
    log.log("first");
    wait_until("the record on disk", || {
        plain_lines(dir.path()) == [serde_json::json!("first")]
    });
}

#[test]
fn zstd_segments_are_finished_by_age_without_closing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SegmentLogConfig::new("test log", dir.path());
    config.compression = Compression::Zstd { level: 3 };
    config.max_segment_duration = Some(Duration::from_millis(50));
    let log = SegmentLog::start(config).unwrap();
    log.log(serde_json::json!({"who": "bob"}));
    let decoded = || -> Option<String> {
        let path = segments(dir.path()).into_iter().next()?;
        let bytes = zstd::decode_all(std::fs::File::open(path).ok()?).ok()?;
        Some(String::from_utf8(bytes).unwrap())
    };
    wait_until("a finished zstd segment", || decoded().is_some());
    assert_eq!(decoded().unwrap(), "{\"who\":\"bob\"}\n");
    drop(log);
}

/// A record whose serialization waits for the test: it holds the writer
/// thread so the queue behind it fills up.
struct Gate {
    entered: mpsc::Sender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Serialize for Gate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let _ = self.entered.send(());
        let _ = self.release.lock().unwrap().recv();
        serializer.serialize_str("gate")
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Record {
    Gate(Gate),
    Number(u32),
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SegmentLogConfig::new("test log", dir.path());
    config.queue_capacity = 2;
    let log = SegmentLog::start(config).unwrap();
    let counter = log.dropped_counter();
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    log.log(Record::Gate(Gate {
        entered: entered_tx,
        release: Arc::new(Mutex::new(release_rx)),
    }));
    entered
        .recv_timeout(WAIT)
        .expect("the writer took the gate");

    // The writer is held: two records fill the queue, the rest are dropped
    // at once (this would hang if `log` waited for room).
    let started = Instant::now();
    let queued: Vec<bool> = (1..=5).map(|n| log.log(Record::Number(n))).collect();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(queued, [true, true, false, false, false]);
    assert_eq!(log.dropped(), 3);
    assert_eq!(counter.get(), 3, "the metric handle shares the count");

    release.send(()).unwrap();
    log.close();
    assert_eq!(
        plain_lines(dir.path()),
        [
            serde_json::json!("gate"),
            serde_json::json!(1),
            serde_json::json!(2)
        ]
    );
    assert!(!log.log(Record::Number(9)), "a closed log takes nothing");
}

#[test]
fn start_names_a_log_dir_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = SegmentLog::<u32>::start(SegmentLogConfig::new("test log", file.join("logs")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a-file/logs"), "{err}");
}
