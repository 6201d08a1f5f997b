//! Local logs: one JSON object per line (`Reception`, `Delivery`,
//! `TransientFailure`, `Bounce`, `Expiration`), written by one thread into
//! segment files under `log_dir`.

use crate::lua_api::LocalLogParams;
use message::Message;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, error};

/// How often the writer wakes up to close a segment past its duration.
const SEGMENT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The kind of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecordType {
    /// Accepted and spooled.
    Reception,
    /// Delivered.
    Delivery,
    /// An attempt failed; another will follow.
    TransientFailure,
    /// Failed for good.
    Bounce,
    /// Given up after `max_age`.
    Expiration,
}

/// An RFC 3463 enhanced status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// Subject.
    pub subject: u16,
    /// Detail.
    pub detail: u16,
}

/// What a step answered, in SMTP terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    /// The SMTP-style status.
    pub code: u16,
    /// The enhanced status code, when there is one.
    pub enhanced_code: Option<EnhancedCode>,
    /// Human-readable text.
    pub content: String,
}

impl Response {
    /// A response with an enhanced code `class.subject.detail`.
    pub fn new(code: u16, enhanced: (u8, u16, u16), content: impl Into<String>) -> Self {
        Response {
            code,
            enhanced_code: Some(EnhancedCode {
                class: enhanced.0,
                subject: enhanced.1,
                detail: enhanced.2,
            }),
            content: content.into(),
        }
    }
}

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// The kind.
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The message id.
    pub id: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The queue name.
    pub queue: String,
    /// Message size in bytes.
    pub size: usize,
    /// What happened.
    pub response: Response,
    /// The message's meta values.
    pub meta: Map<String, Value>,
    /// When this happened, seconds since the epoch.
    pub timestamp: u64,
    /// When the message was received, seconds since the epoch.
    pub created: u64,
    /// Delivery attempts made so far.
    pub num_attempts: u32,
    /// SMTP: the destination `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    /// SMTP: the egress source's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_source: Option<String>,
}

fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl LogRecord {
    /// A record about `message` in `queue`, timestamped now.
    pub fn new(
        kind: RecordType,
        message: &Message,
        queue: &str,
        response: Response,
        num_attempts: u32,
    ) -> Self {
        LogRecord {
            kind,
            id: message.id().to_string(),
            sender: message.sender().email(),
            recipient: message.recipient().email(),
            queue: queue.to_owned(),
            size: message.data().len(),
            response,
            meta: message.meta().clone(),
            timestamp: epoch_seconds(SystemTime::now()),
            created: epoch_seconds(message.created()),
            num_attempts,
            peer_address: None,
            egress_source: None,
        }
    }

    /// Add where an SMTP attempt went.
    pub fn via(mut self, peer_address: Option<String>, egress_source: Option<String>) -> Self {
        self.peer_address = peer_address;
        self.egress_source = egress_source;
        self
    }
}

/// Sends records to the writer thread; without `configure_local_logs` it
/// drops them.
pub struct LocalLogger {
    sender: Mutex<Option<mpsc::Sender<LogRecord>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LocalLogger {
    /// A logger that writes nothing.
    pub fn disabled() -> Self {
        LocalLogger {
            sender: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// Create `log_dir` and start the writer thread.
    pub fn start(params: LocalLogParams) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&params.log_dir).map_err(|err| {
            anyhow::anyhow!("creating log_dir {}: {err}", params.log_dir.display())
        })?;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("local-logs".into())
            .spawn(move || SegmentWriter::new(params).run(receiver))?;
        Ok(LocalLogger {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queue a record for writing.
    pub fn log(&self, record: LogRecord) {
        if let Some(sender) = self.sender.lock().as_ref() {
            let _ = sender.send(record);
        }
    }

    /// Write what is queued, close the segment and stop the thread.
    /// Blocking.
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                error!("local log writer panicked");
            }
        }
    }
}

struct Segment {
    writer: BufWriter<File>,
    path: PathBuf,
    opened: Instant,
    bytes: u64,
}

struct SegmentWriter {
    params: LocalLogParams,
    segment: Option<Segment>,
}

impl SegmentWriter {
    fn new(params: LocalLogParams) -> Self {
        SegmentWriter {
            params,
            segment: None,
        }
    }

    fn run(mut self, receiver: mpsc::Receiver<LogRecord>) {
        loop {
            match receiver.recv_timeout(SEGMENT_CHECK_INTERVAL) {
                Ok(record) => {
                    self.write(&record);
                    // Write whatever else is queued, then flush once.
                    while let Ok(record) = receiver.try_recv() {
                        self.write(&record);
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let (Some(max), Some(segment)) = (self.params.max_segment_duration, &self.segment) {
                if segment.opened.elapsed() >= max {
                    self.close_segment();
                }
            }
        }
        self.close_segment();
        debug!("local log writer stopped");
    }

    fn write(&mut self, record: &LogRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(err) => {
                error!(id = %record.id, "log record does not serialize: {err}");
                return;
            }
        };
        line.push(b'\n');
        if self
            .segment
            .as_ref()
            .is_some_and(|s| s.bytes > 0 && s.bytes + line.len() as u64 > self.params.max_file_size)
        {
            self.close_segment();
        }
        if self.segment.is_none() {
            match open_segment(&self.params.log_dir) {
                Ok(segment) => self.segment = Some(segment),
                Err(err) => {
                    error!(
                        "opening a log segment in {}: {err}",
                        self.params.log_dir.display()
                    );
                    return;
                }
            }
        }
        if let Some(segment) = &mut self.segment {
            match segment.writer.write_all(&line) {
                Ok(()) => segment.bytes += line.len() as u64,
                Err(err) => error!("writing {}: {err}", segment.path.display()),
            }
        }
    }

    fn flush(&mut self) {
        if let Some(segment) = &mut self.segment {
            if let Err(err) = segment.writer.flush() {
                error!("flushing {}: {err}", segment.path.display());
            }
        }
    }

    fn close_segment(&mut self) {
        if let Some(mut segment) = self.segment.take() {
            if let Err(err) = segment.writer.flush() {
                error!("closing {}: {err}", segment.path.display());
            }
            debug!(path = %segment.path.display(), bytes = segment.bytes, "log segment closed");
        }
    }
}

/// A new segment named after the current time (`YYYYMMDD-HHMMSS.micros`),
/// with a suffix if that name is taken.
fn open_segment(dir: &Path) -> std::io::Result<Segment> {
    let stamp = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let base: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T' || *c == '.')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    for n in 0..1000 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                return Ok(Segment {
                    writer: BufWriter::new(file),
                    path,
                    opened: Instant::now(),
                    bytes: 0,
                })
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other("no free segment name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use message::EnvelopeAddress;

    fn record(kind: RecordType) -> LogRecord {
        let msg = Message::new(
            EnvelopeAddress::parse("a@example.com").unwrap(),
            EnvelopeAddress::parse("b@example.com").unwrap(),
            b"Subject: x\r\n\r\ny\r\n".to_vec(),
        );
        LogRecord::new(
            kind,
            &msg,
            "example.com",
            Response::new(250, (2, 0, 0), "ok"),
            0,
        )
    }

    fn lines(dir: &Path) -> Vec<(PathBuf, Vec<Value>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap();
                let records = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                (path, records)
            })
            .collect()
    }

    #[test]
    fn writes_json_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let logger = LocalLogger::start(LocalLogParams {
            log_dir: dir.path().to_owned(),
            max_segment_duration: None,
            max_file_size: 1,
        })
        .unwrap();
        logger.log(record(RecordType::Reception));
        logger.log(record(RecordType::Delivery));
        logger.close();
        let files = lines(dir.path());
        assert_eq!(files.len(), 2, "one record per segment at max_file_size 1");
        let first = &files[0].1[0];
        assert_eq!(first["type"], "Reception");
        assert_eq!(first["recipient"], "b@example.com");
        assert_eq!(first["response"]["code"], 250);
        assert_eq!(first["response"]["enhanced_code"]["class"], 2);
        assert_eq!(files[1].1[0]["type"], "Delivery");
    }

    #[test]
    fn disabled_logger_drops_records() {
        let logger = LocalLogger::disabled();
        logger.log(record(RecordType::Bounce));
        logger.close();
    }
}
