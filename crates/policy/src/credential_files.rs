//! The process's credential files (`kumo.aaa.load_credentials`): one
//! parsed copy per file, shared by every Lua state (the policy's top level
//! runs once per pooled state, and each would otherwise hold its own), and
//! kept current: a file is stat'ed at most once per check interval and
//! re-read when it changed, and again whenever a state loads it (a config
//! epoch bump builds fresh states). A file that no longer parses leaves
//! the previous contents in force; the error is logged once with its line
//! number, never a hash.

use crate::{cpu_bound, KeySource};
use aaa::{CredentialSet, VerifyOptions};
use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{error, info};

/// How often a credential file is checked for changes by default.
pub const DEFAULT_CREDENTIALS_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// What identifies a file's contents on disk: a rename (editors, atomic
/// deploys) changes the inode, an edit in place the size or times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Ok(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct FileKey {
    source: KeySource,
    allow_weak: bool,
}

/// Every credential file loaded in this process (a field of
/// [`crate::AaaContext`]).
#[derive(Default)]
pub struct CredentialFiles {
    files: Mutex<HashMap<FileKey, Arc<CredentialFile>>>,
    generation: Arc<AtomicU64>,
}

impl CredentialFiles {
    /// The file for `source`, loading it on first use. An already loaded
    /// file is checked for changes now (this is how a config epoch bump
    /// re-reads it); its first `check_interval` stays in force. The first
    /// load failing is an error; later failures keep the old contents.
    pub fn open(
        &self,
        source: KeySource,
        allow_weak: bool,
        check_interval: Duration,
    ) -> anyhow::Result<Arc<CredentialFile>> {
        let key = FileKey {
            source: source.clone(),
            allow_weak,
        };
        let mut files = self.files.lock();
        if let Some(file) = files.get(&key) {
            file.refresh_now();
            return Ok(file.clone());
        }
        let file = Arc::new(CredentialFile::load(
            source,
            allow_weak,
            check_interval,
            self.generation.clone(),
        )?);
        files.insert(key, file.clone());
        Ok(file)
    }

    /// A number that changes whenever a credential file took new contents.
    /// Files whose check interval has passed are checked first, so callers
    /// that never reach the policy (cached logins) still see edits.
    pub fn generation(&self) -> u64 {
        let files: Vec<Arc<CredentialFile>> = self.files.lock().values().cloned().collect();
        for file in files {
            file.refresh_if_due();
        }
        self.generation.load(Ordering::Acquire)
    }
}

struct Watch {
    stamp: Option<FileStamp>,
    next_check: Instant,
}

/// One credential file and its current contents.
pub struct CredentialFile {
    source: KeySource,
    allow_weak: bool,
    check_interval: Duration,
    current: RwLock<Arc<CredentialSet>>,
    watch: Mutex<Watch>,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialFile({})", self.describe())
    }
}

impl CredentialFile {
    fn load(
        source: KeySource,
        allow_weak: bool,
        check_interval: Duration,
        generation: Arc<AtomicU64>,
    ) -> anyhow::Result<Self> {
        let stamp = match &source {
            KeySource::File(path) => {
                Some(FileStamp::of(path).with_context(|| format!("reading {}", path.display()))?)
            }
            KeySource::Data { .. } => None,
        };
        let set = cpu_bound(|| parse(&source, allow_weak))?;
        Ok(CredentialFile {
            current: RwLock::new(Arc::new(set)),
            watch: Mutex::new(Watch {
                stamp,
                next_check: Instant::now() + check_interval,
            }),
            source,
            allow_weak,
            check_interval,
            generation,
        })
    }

    /// The file's path, or `inline key_data`.
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// The contents in force now.
    pub fn current(&self) -> Arc<CredentialSet> {
        self.current.read().clone()
    }

    /// The groups of `username` when `password` is right (see
    /// [`CredentialSet::check`]), after checking the file for changes if
    /// its interval has passed. Hashing blocks: call it where blocking is
    /// allowed ([`cpu_bound`] does that for Lua).
    pub fn check(&self, username: &[u8], password: &[u8]) -> Option<Vec<String>> {
        self.refresh_if_due();
        self.current()
            .check(username, password)
            .map(<[String]>::to_vec)
    }

    /// Check for changes if the interval has passed; another caller
    /// already checking is left to it.
    fn refresh_if_due(&self) {
        let Some(mut watch) = self.watch.try_lock() else {
            return;
        };
        let now = Instant::now();
        if now < watch.next_check {
            return;
        }
        watch.next_check = now + self.check_interval;
        self.refresh(&mut watch);
    }

    fn refresh_now(&self) {
        let mut watch = self.watch.lock();
        watch.next_check = Instant::now() + self.check_interval;
        self.refresh(&mut watch);
    }

    /// Re-read the file if its stamp changed. Failures are logged once
    /// per change and keep the previous contents.
    fn refresh(&self, watch: &mut Watch) {
        let KeySource::File(path) = &self.source else {
            return;
        };
        let stamp = match FileStamp::of(path) {
            Ok(stamp) => stamp,
            Err(err) => {
                if watch.stamp.take().is_some() {
                    error!(path = %path.display(), error = %err, "credential file unreadable; the previous contents stay in force");
                }
                return;
            }
        };
        if watch.stamp == Some(stamp) {
            return;
        }
        watch.stamp = Some(stamp);
        match cpu_bound(|| parse(&self.source, self.allow_weak)) {
            Ok(set) => {
                let users = set.len();
                *self.current.write() = Arc::new(set);
                self.generation.fetch_add(1, Ordering::AcqRel);
                info!(path = %path.display(), users, "credential file reloaded");
            }
            Err(err) => {
                error!(path = %path.display(), error = format!("{err:#}"), "credential file not reloaded; the previous contents stay in force");
            }
        }
    }
}

fn parse(source: &KeySource, allow_weak: bool) -> anyhow::Result<CredentialSet> {
    let bytes = source.load()?;
    CredentialSet::parse(&bytes, VerifyOptions { allow_weak })
        .with_context(|| format!("credential file {}", source.describe()))
}

#[cfg(test)]
#[path = "credential_files_tests.rs"]
mod tests;
