//! Black-box test support: start the real `nephele` binary with a policy in
//! a private directory, detect readiness from its `http listener on ADDR`
//! line, talk to it with curl, and read what it leaves on disk.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const NEPHELE_BIN: &str = env!("CARGO_BIN_EXE_nephele");
/// Bound for loading the policy and binding.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for anything the daemon does in the background (deliveries, logs).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
const LISTENER_MARKER: &str = "http listener on ";

/// Users of the test policies' Basic auth database.
pub const POLICY_AUTH: &str = r#"
kumo.on('http_server_validate_auth_basic', function(user, password)
  local password_database = { ['scott'] = 'tiger', ['some.one'] = 'secret' }
  if not password or password == '' then return false end
  return password_database[user] == password
end)
"#;

/// The standard `init`: spool, logs and a listener on a free port, all under
/// `@DIR@`.
pub const POLICY_INIT: &str = r#"
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '@DIR@/spool/data' }
  kumo.define_spool { name = 'meta', path = '@DIR@/spool/meta' }
  kumo.configure_local_logs { log_dir = '@DIR@/logs' }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
"#;

/// A queue config delivering into `@DIR@/maildir` with one-second retries.
pub const POLICY_MAILDIR_QUEUE: &str = r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = '@DIR@/maildir' },
    retry_interval = '1 second',
    max_retry_interval = '1 second',
  }
end)
"#;

/// A directory holding a policy file, reused across restarts.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Write `policy` (with `@DIR@` replaced) as `policy.lua`.
    pub fn new(policy: &str) -> Self {
        let ws = Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        ws.write("policy.lua", policy);
        ws
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file (with `@DIR@` replaced).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(name);
        let dir = self.dir().to_str().expect("utf-8 dir");
        std::fs::write(&path, contents.replace("@DIR@", dir)).expect("write file");
        path
    }

    /// Start the daemon and wait for its listener.
    pub fn start(&self) -> Daemon {
        Daemon::start(&self.dir().join("policy.lua"), &[])
    }

    /// Messages in `maildir/new`, sorted by file name.
    pub fn maildir_messages(&self) -> Vec<String> {
        self.messages_in("maildir")
    }

    /// Messages in `MAILDIR/new` (relative to the directory), sorted by file
    /// name.
    pub fn messages_in(&self, maildir: &str) -> Vec<String> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(self.dir().join(maildir).join("new"))
        {
            Ok(entries) => entries.map(|e| e.expect("dir entry").path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
            .into_iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).expect("read message")).into_owned())
            .collect()
    }

    /// Every log record written so far under `logs/`.
    pub fn log_records(&self) -> Vec<serde_json::Value> {
        let mut records = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dir().join("logs")) else {
            return records;
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(file).expect("read log segment");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A line being written may be incomplete; the next poll sees it.
                if let Ok(record) = serde_json::from_str(line) {
                    records.push(record);
                }
            }
        }
        records
    }

    /// Log records of one type.
    pub fn records_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.log_records()
            .into_iter()
            .filter(|r| r["type"] == kind)
            .collect()
    }

    /// The `kind` records once at least `count` are on disk: the log writer
    /// runs beside delivery, so a message can land before its record.
    pub fn wait_for_records(&self, kind: &str, count: usize) -> Vec<serde_json::Value> {
        wait_for(&format!("{count} {kind} record(s)"), WAIT_TIMEOUT, || {
            let records = self.records_of(kind);
            (records.len() >= count).then_some(records)
        })
    }
}

/// Poll `check` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: bool,
}

/// A running daemon; killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
    /// The HTTP listener's address.
    pub addr: SocketAddr,
}

impl Daemon {
    /// `nephele --policy POLICY ARGS`, waiting for `http listener on ADDR`.
    pub fn start(policy: &Path, args: &[&str]) -> Self {
        Self::start_with_env(policy, args, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub fn start_with_env(policy: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(NEPHELE_BIN);
        command
            .arg("--policy")
            .arg(policy)
            .args(args)
            .envs(envs.iter().copied());
        Self::start_command(command)
    }

    /// Run `command` (the daemon, perhaps behind a wrapper such as
    /// `prlimit`), waiting for `http listener on ADDR`.
    pub fn start_command(mut command: Command) -> Self {
        let mut child = command
            .env("NEPHELE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nephele");
        let stderr = child.stderr.take().expect("stderr");
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let reader_output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lock, cond) = &*reader_output;
                lock.lock().unwrap().lines.push(line);
                cond.notify_all();
            }
            let (lock, cond) = &*reader_output;
            lock.lock().unwrap().closed = true;
            cond.notify_all();
        });
        let mut daemon = Daemon {
            child,
            output,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = daemon.wait_for_line(LISTENER_MARKER, START_TIMEOUT);
        let addr = line
            .split(LISTENER_MARKER)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        daemon.addr = addr;
        daemon
    }

    /// Wait for a stderr line containing `needle`; panics with the output
    /// so far on timeout or exit.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.output;
        let mut output = lock.lock().unwrap();
        loop {
            if let Some(line) = output.lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let now = Instant::now();
            if output.closed || now >= deadline {
                panic!(
                    "no line containing {needle:?}; output:\n{}",
                    output.lines.join("\n")
                );
            }
            output = cond.wait_timeout(output, deadline - now).unwrap().0;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything written to stderr so far.
    pub fn output(&self) -> String {
        self.output.0.lock().unwrap().lines.join("\n")
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "exit {status}; output:\n{}",
                    self.output()
                );
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What curl got: status and body.
#[derive(Debug)]
pub struct HttpReply {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl HttpReply {
    /// Assert a refusal: `status`, with `needle` in the body.
    #[track_caller]
    pub fn assert_refused(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.body.contains(needle),
            "{needle:?} not in {}",
            self.body
        );
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }
}

/// Run `curl -s ARGS URL` and return status and body.
pub fn curl(url: &str, args: &[&str]) -> HttpReply {
    let output = Command::new("curl")
        .args(["-s", "-S", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl (is it installed?)");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    HttpReply {
        status: status.trim().parse().expect("status code"),
        body: body.to_owned(),
    }
}

/// POST a JSON body to `/api/inject/v1`, with extra curl args (e.g. `-u`).
/// A large body goes through a file (an argument has a size limit).
pub fn inject(daemon: &Daemon, body: &serde_json::Value, args: &[&str]) -> HttpReply {
    let body = body.to_string();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let data = if body.len() > 64 * 1024 {
        std::fs::write(file.path(), &body).expect("write the body");
        format!("@{}", file.path().display())
    } else {
        body
    };
    let mut all = vec![
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
    ];
    all.extend_from_slice(args);
    curl(&daemon.url("/api/inject/v1"), &all)
}

/// The `X-KumoRef` line nephele prepends by default (upstream's
/// supplemental trace header): base64 of `{"_@_":"\\_/","recipient":RCPT}`,
/// folded every 78 characters of value.
pub fn kumo_ref_header(recipient: &str) -> String {
    use base64::Engine;
    let payload = serde_json::json!({"_@_": "\\_/", "recipient": recipient});
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
    let chunks: Vec<&str> = encoded
        .as_bytes()
        .chunks(78)
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
        .collect();
    format!("X-KumoRef: {}\r\n", chunks.join("\r\n\t"))
}
