//! The accounting log: one JSON line per authentication attempt and per
//! authorization decision, in zstd-compressed segments written by the
//! project's one segmented log writer ([`segment_log`]: segments named
//! `YYYYMMDD-HHMMSS` by their opening time in UTC, a bounded queue, records
//! dropped and counted in [`AccountingLog::dropped`] when it is full, so a
//! login never waits on a disk).

use crate::{Access, AccessControlRule, AccessDecision, AuthInfo, Identity};
use segment_log::{Compression, SegmentLog, SegmentLogConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Records waiting for the writer at most; past it new records are dropped.
pub const ACCOUNTING_QUEUE_CAPACITY: usize = segment_log::DEFAULT_QUEUE_CAPACITY;
/// Default `max_file_size`: uncompressed bytes per segment.
pub const DEFAULT_MAX_FILE_SIZE: u64 = segment_log::DEFAULT_MAX_FILE_SIZE;
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
    /// Log one record per proxy tunnel when it ends.
    pub log_sessions: bool,
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
            log_sessions: true,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_segment_duration: Some(DEFAULT_MAX_SEGMENT_DURATION),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

/// One line of the accounting log. No variant has a place for a password
/// or a token: only identities, groups, addresses, byte counts and
/// decisions.
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
    /// One proxy tunnel, written when it ended (or was refused by a
    /// per-identity limit).
    Session(Box<SessionRecord>),
}

/// How a proxy tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The client ended its side first.
    ClientClose,
    /// The destination ended its side first.
    DestinationClose,
    /// Nothing moved either way for the listener's `idle_timeout`.
    IdleTimeout,
    /// Closed through the admin API (`/api/admin/proxy/disconnect/v1`).
    DisconnectedByAdmin,
    /// Refused before connecting: a per-identity limit was reached.
    Limit,
    /// A socket error ended the relay.
    Error,
}

/// The accounting record of one tunnel (`"type": "Session"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRecord {
    /// RFC 3339, UTC: when the record was written (the tunnel's end).
    pub timestamp: String,
    /// The listener's bound `ip:port`.
    pub listener: String,
    /// The client's `ip:port`.
    pub peer: String,
    /// The login's identities and groups (empty without a login).
    pub auth_info: AuthInfo,
    /// The source address a BIND selected, if any.
    pub source_address: Option<String>,
    /// The destination as the client wrote it (`host:port` or `ip:port`).
    pub requested_destination: String,
    /// The address actually connected to; `null` when refused.
    pub connected_destination: Option<String>,
    /// Bytes relayed from the client to the destination.
    pub bytes_client_to_dest: u64,
    /// Bytes relayed from the destination to the client.
    pub bytes_dest_to_client: u64,
    /// RFC 3339, UTC: when the CONNECT was answered.
    pub start: String,
    /// Seconds from `start` to the end.
    pub duration_seconds: f64,
    /// How the tunnel ended.
    pub end_reason: SessionEnd,
}

fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `time` as RFC 3339 with microseconds, UTC (the log's timestamp format).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// A running accounting log: [`AccountingRecord`]s filtered by the
/// `log_*` switches, written by the project's [`SegmentLog`]. Dropping it
/// (or [`AccountingLog::close`]) finishes the open segment.
pub struct AccountingLog {
    config: AccountingConfig,
    log: SegmentLog<AccountingRecord>,
}

impl AccountingLog {
    /// Create `log_dir` and start the writer thread.
    pub fn start(config: AccountingConfig) -> std::io::Result<Self> {
        let log = SegmentLog::start(SegmentLogConfig {
            name: "accounting log",
            log_dir: config.log_dir.clone(),
            max_file_size: config.max_file_size,
            max_segment_duration: config.max_segment_duration,
            compression: Compression::Zstd {
                level: config.compression_level,
            },
            queue_capacity: ACCOUNTING_QUEUE_CAPACITY,
        })?;
        Ok(AccountingLog { config, log })
    }

    /// The configuration this log was started with.
    pub fn config(&self) -> &AccountingConfig {
        &self.config
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.log.dropped()
    }

    /// The same count as a counter to register as a metric.
    pub fn dropped_counter(&self) -> segment_log::DropCounter {
        self.log.dropped_counter()
    }

    /// Record a login attempt by `attempted`, if its outcome is switched on.
    pub fn log_authentication(&self, attempted: &Identity, success: bool, auth_info: &AuthInfo) {
        let wanted = if success {
            self.config.log_authn_ok
        } else {
            self.config.log_authn_fail
        };
        if wanted {
            self.log.log(AccountingRecord::Authentication {
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
            self.log.log(AccountingRecord::Authorization {
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

    /// Record a finished tunnel, if session records are switched on.
    pub fn log_session(&self, record: SessionRecord) {
        if self.config.log_sessions {
            self.log.log(AccountingRecord::Session(Box::new(record)));
        }
    }

    /// Stop accepting records, let the writer drain the queue and finish
    /// the open segment. Idempotent.
    pub fn close(&self) {
        self.log.close();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AclMap, IdentityContext, Resource};
    use std::fs::File;
    use std::path::Path;
    use std::time::Instant;

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
    fn session_records_are_tagged_and_switchable() {
        let record = SessionRecord {
            timestamp: rfc3339(SystemTime::UNIX_EPOCH),
            listener: "127.0.0.1:1080".into(),
            peer: "127.0.0.1:5000".into(),
            auth_info: AuthInfo::from_identity("carol", IdentityContext::ProxyAuthRfc1929),
            source_address: None,
            requested_destination: "example.test:80".into(),
            connected_destination: Some("192.0.2.1:80".into()),
            bytes_client_to_dest: 10,
            bytes_dest_to_client: 20,
            start: rfc3339(SystemTime::UNIX_EPOCH),
            duration_seconds: 1.5,
            end_reason: SessionEnd::DisconnectedByAdmin,
        };
        let dir = tempfile::tempdir().unwrap();
        let log = AccountingLog::start(AccountingConfig::new(dir.path())).unwrap();
        log.log_session(record.clone());
        log.close();
        let records = read_records(dir.path());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["type"], "Session");
        assert_eq!(records[0]["end_reason"], "disconnected_by_admin");
        assert_eq!(records[0]["bytes_dest_to_client"], 20);
        assert_eq!(
            records[0]["auth_info"]["identities"][0]["identity"],
            "carol"
        );
        let quiet = tempfile::tempdir().unwrap();
        let mut config = AccountingConfig::new(quiet.path());
        config.log_sessions = false;
        let log = AccountingLog::start(config).unwrap();
        log.log_session(record);
        log.close();
        assert!(read_records(quiet.path()).is_empty());
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
