//! The accounting log: one JSON line per authentication attempt and per
//! authorization decision, written by a background thread into
//! zstd-compressed segments named by their opening time (`YYYYMMDD-HHMMSS`).
//!
//! Records travel to the writer through a bounded queue so the request path
//! never waits on a disk. When the queue is full (the disk is slower than
//! the request rate) a new record is dropped, counted in
//! [`AccountingLog::dropped`], and a warning is logged at most once per
//! [`DROP_WARNING_INTERVAL`]; the request itself goes on.

use crate::{Access, AccessControlRule, AccessDecision, AuthInfo, Identity};
use parking_lot::Mutex;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tracing::{error, warn};

/// Records waiting for the writer at most; past it new records are dropped.
pub const ACCOUNTING_QUEUE_CAPACITY: usize = 8192;
/// At most one "records dropped" warning per this interval.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Default `max_file_size`: uncompressed bytes per segment.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 128 * 1024 * 1024;
/// Default `max_segment_duration`: a segment is finished (and readable) at
/// the latest this long after it was opened.
pub const DEFAULT_MAX_SEGMENT_DURATION: Duration = Duration::from_secs(300);
/// Default zstd `compression_level`.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// What to log and where (`kumo.aaa.configure_acct_log { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountingConfig {
    /// Directory the segments are written to (created if missing).
    pub log_dir: PathBuf,
    /// Log successful authentications.
    pub log_authn_ok: bool,
    /// Log failed authentications.
    pub log_authn_fail: bool,
    /// Log allowed authorization decisions.
    pub log_authz_allow: bool,
    /// Log denied authorization decisions.
    pub log_authz_deny: bool,
    /// A segment is finished once this many uncompressed bytes went in.
    pub max_file_size: u64,
    /// A segment is finished this long after it was opened, even when idle.
    pub max_segment_duration: Option<Duration>,
    /// zstd level (1..=22).
    pub compression_level: i32,
}

impl AccountingConfig {
    /// Logging everything into `log_dir` with the default limits.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        AccountingConfig {
            log_dir: log_dir.into(),
            log_authn_ok: true,
            log_authn_fail: true,
            log_authz_allow: true,
            log_authz_deny: true,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_segment_duration: Some(DEFAULT_MAX_SEGMENT_DURATION),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

/// One line of the accounting log. Neither variant has a place for a
/// password or a token: only identities, groups, addresses and decisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum AccountingRecord {
    /// A login attempt and its outcome.
    Authentication {
        /// RFC 3339, UTC.
        timestamp: String,
        /// Who the peer claimed to be.
        attempted_identity: Identity,
        /// Whether the claim was accepted.
        success: bool,
        /// What is known about the peer after the attempt.
        auth_info: AuthInfo,
    },
    /// An authorization decision.
    Authorization {
        /// RFC 3339, UTC.
        timestamp: String,
        /// The most specific resource name asked about.
        target_resource: String,
        /// The privilege asked for.
        privilege: String,
        /// The outcome.
        access: Access,
        /// The resource name whose ACL decided, if any.
        matching_resource: Option<String>,
        /// The deciding rule; `null` means denied by default.
        rule: Option<AccessControlRule>,
        /// Who asked.
        auth_info: AuthInfo,
        /// The names tried, in order.
        considered_resources: Vec<String>,
    },
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// A running accounting log. Dropping it (or [`AccountingLog::close`])
/// finishes the open segment.
pub struct AccountingLog {
    config: AccountingConfig,
    sender: Mutex<Option<SyncSender<AccountingRecord>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
    last_drop_warning: Mutex<Option<Instant>>,
}

impl AccountingLog {
    /// Create `log_dir` and start the writer thread.
    pub fn start(config: AccountingConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.log_dir)?;
        let (sender, receiver) = sync_channel(ACCOUNTING_QUEUE_CAPACITY);
        let writer_config = config.clone();
        let writer = std::thread::Builder::new()
            .name("acct-log".into())
            .spawn(move || write_segments(receiver, &writer_config))?;
        Ok(AccountingLog {
            config,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            dropped: AtomicU64::new(0),
            last_drop_warning: Mutex::new(None),
        })
    }

    /// The configuration this log was started with.
    pub fn config(&self) -> &AccountingConfig {
        &self.config
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Record a login attempt by `attempted`, if its outcome is switched on.
    pub fn log_authentication(&self, attempted: &Identity, success: bool, auth_info: &AuthInfo) {
        let wanted = if success {
            self.config.log_authn_ok
        } else {
            self.config.log_authn_fail
        };
        if wanted {
            self.enqueue(AccountingRecord::Authentication {
                timestamp: now_rfc3339(),
                attempted_identity: attempted.clone(),
                success,
                auth_info: auth_info.clone(),
            });
        }
    }

    /// Record an authorization decision, if its outcome is switched on.
    pub fn log_authorization(&self, decision: &AccessDecision, auth_info: &AuthInfo) {
        let wanted = if decision.allow {
            self.config.log_authz_allow
        } else {
            self.config.log_authz_deny
        };
        if wanted {
            self.enqueue(AccountingRecord::Authorization {
                timestamp: now_rfc3339(),
                target_resource: decision.target_resource.clone(),
                privilege: decision.privilege.clone(),
                access: if decision.allow {
                    Access::Allow
                } else {
                    Access::Deny
                },
                matching_resource: decision.matching_resource.clone(),
                rule: decision.rule.clone(),
                auth_info: auth_info.clone(),
                considered_resources: decision.considered_resources.clone(),
            });
        }
    }

    fn enqueue(&self, record: AccountingRecord) {
        let sender = self.sender.lock().clone();
        let Some(sender) = sender else {
            return;
        };
        match sender.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let mut last = self.last_drop_warning.lock();
                if last.is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL) {
                    *last = Some(Instant::now());
                    warn!(
                        dropped,
                        "accounting log queue full; records are being dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Stop accepting records, let the writer drain the queue and finish
    /// the open segment. Idempotent.
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for AccountingLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for AccountingLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountingLog")
            .field("config", &self.config)
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// The segment being written.
struct Segment {
    path: PathBuf,
    encoder: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    opened: Instant,
    written: u64,
}

impl Segment {
    fn open(dir: &Path, level: i32) -> std::io::Result<Self> {
        let (path, file) = create_segment_file(dir, SystemTime::now())?;
        let encoder = zstd::stream::write::Encoder::new(BufWriter::new(file), level)?;
        Ok(Segment {
            path,
            encoder,
            opened: Instant::now(),
            written: 0,
        })
    }

    fn finish(self) {
        let path = self.path;
        let result = self
            .encoder
            .finish()
            .and_then(|mut file| file.flush().map(|()| file))
            .and_then(|file| file.into_inner().map_err(|err| err.into_error()))
            .and_then(|file| file.sync_data());
        if let Err(err) = result {
            error!(path = %path.display(), error = %err, "finishing accounting segment failed");
        }
    }
}

/// `YYYYMMDD-HHMMSS` of `at` in UTC; a second segment opened within the
/// same second gets `.1`, `.2`, ... appended.
fn create_segment_file(dir: &Path, at: SystemTime) -> std::io::Result<(PathBuf, File)> {
    let name = segment_name(at);
    for attempt in 0..1000 {
        let file_name = if attempt == 0 {
            name.clone()
        } else {
            format!("{name}.{attempt}")
        };
        let path = dir.join(file_name);
        match File::options().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!(
        "no free accounting segment name for {name}"
    )))
}

/// `YYYYMMDD-HHMMSS` (UTC).
pub fn segment_name(at: SystemTime) -> String {
    // `2024-05-06T07:08:09Z` → `20240506-070809`
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

fn write_segments(receiver: Receiver<AccountingRecord>, config: &AccountingConfig) {
    let mut segment: Option<Segment> = None;
    let mut line = Vec::with_capacity(512);
    loop {
        let deadline = segment
            .as_ref()
            .zip(config.max_segment_duration)
            .map(|(segment, max)| max.saturating_sub(segment.opened.elapsed()));
        let received = match deadline {
            Some(left) => receiver.recv_timeout(left),
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let record = match received {
            Ok(record) => record,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(done) = segment.take() {
                    done.finish();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        line.clear();
        if let Err(err) = serde_json::to_writer(&mut line, &record) {
            error!(error = %err, "accounting record does not serialize");
            continue;
        }
        line.push(b'\n');
        if segment.is_none() {
            match Segment::open(&config.log_dir, config.compression_level) {
                Ok(opened) => segment = Some(opened),
                Err(err) => {
                    error!(dir = %config.log_dir.display(), error = %err, "opening accounting segment failed; record lost");
                    continue;
                }
            }
        }
        let Some(current) = segment.as_mut() else {
            continue;
        };
        if let Err(err) = current.encoder.write_all(&line) {
            error!(path = %current.path.display(), error = %err, "writing accounting record failed");
        }
        current.written += line.len() as u64;
        let too_old = config
            .max_segment_duration
            .is_some_and(|max| current.opened.elapsed() >= max);
        if current.written >= config.max_file_size || too_old {
            if let Some(done) = segment.take() {
                done.finish();
            }
        }
    }
    if let Some(done) = segment.take() {
        done.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AclMap, IdentityContext, Resource};

    fn read_records(dir: &Path) -> Vec<serde_json::Value> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        names.sort();
        let mut records = Vec::new();
        for path in names {
            let text = zstd::decode_all(File::open(&path).unwrap()).unwrap();
            for line in String::from_utf8(text).unwrap().lines() {
                records.push(serde_json::from_str(line).unwrap());
            }
        }
        records
    }

    #[test]
    fn segment_names_are_utc_timestamps() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_715_000_000);
        assert_eq!(segment_name(at), "20240506-125320");
    }

    #[test]
    fn writes_switchable_records_into_zstd_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AccountingConfig::new(dir.path());
        config.log_authz_allow = false;
        config.max_file_size = 1; // one record per segment
        let log = AccountingLog::start(config).unwrap();
        let mut alice = AuthInfo::from_identity("alice", IdentityContext::HttpBasicAuth);
        alice.add_group("ops");
        log.log_authentication(&alice.identities[0], true, &alice);
        log.log_authentication(&alice.identities[0], false, &AuthInfo::default());
        let resource = Resource::http_listener("127.0.0.1:80".parse().unwrap(), "/secret");
        let denied = AclMap::default_map().query(&resource, &alice, "GET");
        log.log_authorization(&denied, &alice);
        let allowed = AclMap::default_map().query(
            &Resource::http_listener("127.0.0.1:80".parse().unwrap(), "/proxy/status"),
            &alice,
            "GET",
        );
        log.log_authorization(&allowed, &alice); // switched off
        log.close();
        let records = read_records(dir.path());
        assert_eq!(records.len(), 3, "{records:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        assert_eq!(records[0]["type"], "Authentication");
        assert_eq!(records[0]["success"], true);
        assert_eq!(records[0]["attempted_identity"]["identity"], "alice");
        assert_eq!(records[0]["auth_info"]["groups"][0], "ops");
        assert_eq!(records[1]["success"], false);
        assert_eq!(records[2]["type"], "Authorization");
        assert_eq!(records[2]["access"], "Deny");
        assert_eq!(records[2]["privilege"], "GET");
        assert_eq!(records[2]["rule"], serde_json::Value::Null);
        assert_eq!(
            records[2]["target_resource"],
            "http_listener/127.0.0.1:80/secret"
        );
        assert_eq!(
            records[2]["considered_resources"].as_array().unwrap().len(),
            4
        );
    }

    #[test]
    fn idle_segments_are_finished_after_max_segment_duration() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AccountingConfig::new(dir.path());
        config.max_segment_duration = Some(Duration::from_millis(50));
        let log = AccountingLog::start(config).unwrap();
        let bob = AuthInfo::from_identity("bob", IdentityContext::ProxyAuthRfc1929);
        log.log_authentication(&bob.identities[0], true, &bob);
        // Readable without closing the log: the writer finished it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .any(|e| {
                    zstd::decode_all(File::open(e.path()).unwrap()).is_ok_and(|d| !d.is_empty())
                });
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "segment never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(read_records(dir.path()).len(), 1);
    }
}
