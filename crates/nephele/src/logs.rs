//! Local logs: one JSON object per line (`Reception`, `Delivery`,
//! `TransientFailure`, `Bounce`, `Expiration`) in segment files under
//! `log_dir`, written by the `segment-log` crate's writer.

use crate::lua_api::LocalLogParams;
use message::Message;
use segment_log::{SegmentLog, SegmentLogConfig};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// nephele's local logs: plain segments (readable while they grow), written
/// by the project's [`SegmentLog`] with its bounded queue, so a delivery or
/// an injection never waits on the disk (a record that finds the queue full
/// is dropped and counted). Without `configure_local_logs` it drops records.
pub struct LocalLogger {
    log: Option<SegmentLog<LogRecord>>,
}

impl LocalLogger {
    /// A logger that writes nothing.
    pub fn disabled() -> Self {
        LocalLogger { log: None }
    }

    /// Create `log_dir` and start the writer thread.
    pub fn start(params: LocalLogParams) -> anyhow::Result<Self> {
        let log = SegmentLog::start(SegmentLogConfig {
            max_file_size: params.max_file_size,
            max_segment_duration: params.max_segment_duration,
            ..SegmentLogConfig::new("local log", params.log_dir)
        })?;
        Ok(LocalLogger { log: Some(log) })
    }

    /// Queue a record for writing. `false` when it was not queued: logging
    /// is off, or the queue is full (counted in [`LocalLogger::dropped`]).
    pub fn log(&self, record: LogRecord) -> bool {
        self.log.as_ref().is_some_and(|log| log.log(record))
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.log.as_ref().map_or(0, SegmentLog::dropped)
    }

    /// The same count as a counter to register as a metric; `None` when
    /// logging is off.
    pub fn dropped_counter(&self) -> Option<segment_log::DropCounter> {
        self.log.as_ref().map(SegmentLog::dropped_counter)
    }

    /// Write what is queued, finish the segment and stop the thread.
    /// Blocking.
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use message::EnvelopeAddress;
    use std::path::{Path, PathBuf};

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
        assert!(logger.log(record(RecordType::Reception)));
        assert!(logger.log(
            record(RecordType::Delivery).via(Some("192.0.2.1:25".into()), Some("pool-a".into()))
        ));
        logger.close();
        let files = lines(dir.path());
        assert_eq!(files.len(), 2, "one record per segment at max_file_size 1");
        let first = &files[0].1[0];
        assert_eq!(first["type"], "Reception");
        assert_eq!(first["recipient"], "b@example.com");
        assert_eq!(first["response"]["code"], 250);
        assert_eq!(first["response"]["enhanced_code"]["class"], 2);
        assert!(first.get("peer_address").is_none(), "{first}");
        let second = &files[1].1[0];
        assert_eq!(second["type"], "Delivery");
        assert_eq!(second["peer_address"], "192.0.2.1:25");
        assert_eq!(second["egress_source"], "pool-a");
        assert_eq!(logger.dropped(), 0);
        assert_eq!(logger.dropped_counter().map(|c| c.get()), Some(0));
        assert!(
            !logger.log(record(RecordType::Bounce)),
            "a closed logger queues nothing"
        );
    }

    #[test]
    fn disabled_logger_queues_nothing() {
        let logger = LocalLogger::disabled();
        assert!(!logger.log(record(RecordType::Bounce)));
        assert_eq!(logger.dropped(), 0, "not queued is not a queue overflow");
        assert!(logger.dropped_counter().is_none(), "no metric for no log");
        logger.close();
    }
}
