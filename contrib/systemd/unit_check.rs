//! Checks of the shipped systemd units, shared by the tests of both
//! binaries (`crates/proxy-server/tests/systemd_unit.rs` and
//! `crates/nephele/tests/systemd_unit.rs` include this file): the hardening
//! keys, `systemd-analyze verify` when it is installed, and a start of the
//! real binary with the unit's command line and environment.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bound on loading the policy and binding, and on the SIGTERM drain.
const START_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A unit file: `(section, key, value)` in file order.
pub struct ServiceUnit {
    name: String,
    text: String,
    entries: Vec<(String, String, String)>,
}

impl ServiceUnit {
    /// `contrib/systemd/NAME` of this repository.
    pub fn load(name: &str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../contrib/systemd")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let mut section = String::new();
        let mut entries = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: not `key=value`: {line}"));
            entries.push((section.clone(), key.to_owned(), value.to_owned()));
        }
        ServiceUnit {
            name: name.to_owned(),
            text,
            entries,
        }
    }

    /// Every value of `key` in `[Service]`, in order.
    pub fn service_values(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The last value of `key` in `[Service]` (the one systemd uses).
    pub fn service_value(&self, key: &str) -> Option<&str> {
        self.service_values(key).last().copied()
    }

    /// The program and arguments of `ExecStart=`.
    pub fn exec_start(&self) -> (String, Vec<String>) {
        let line = self
            .service_value("ExecStart")
            .unwrap_or_else(|| panic!("{}: no ExecStart", self.name));
        let mut words = line.split_whitespace().map(str::to_owned);
        let program = words.next().expect("ExecStart names a program");
        (program, words.collect())
    }

    /// The `Environment=NAME=VALUE` pairs.
    pub fn environment(&self) -> Vec<(String, String)> {
        self.service_values("Environment")
            .into_iter()
            .flat_map(str::split_whitespace)
            .map(|pair| {
                let (name, value) = pair.split_once('=').expect("NAME=VALUE");
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    /// The hardening both services promise: a user of their own, no
    /// privilege gain, a read-only system, no capability beyond binding a
    /// low port, restarts on failure, a raised open-files limit.
    pub fn assert_hardened(&self) {
        let expect = |key: &str, value: &str| {
            assert_eq!(
                self.service_value(key),
                Some(value),
                "{}: {key}={value}",
                self.name
            )
        };
        let dedicated_user = self.service_value("DynamicUser") == Some("yes")
            || self.service_value("User").is_some_and(|u| u != "root");
        assert!(dedicated_user, "{}: DynamicUser=yes or User=", self.name);
        expect("NoNewPrivileges", "yes");
        expect("ProtectSystem", "strict");
        expect("ProtectHome", "yes");
        expect("PrivateTmp", "yes");
        expect("Restart", "on-failure");
        expect("KillSignal", "SIGTERM");
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            for value in self.service_values(key) {
                assert!(
                    value.is_empty() || value == "CAP_NET_BIND_SERVICE",
                    "{}: {key}={value}: only CAP_NET_BIND_SERVICE may be granted",
                    self.name
                );
            }
        }
        assert_eq!(
            self.service_values("CapabilityBoundingSet"),
            [""],
            "{}: the shipped unit drops every capability (low ports are a drop-in)",
            self.name
        );
        let nofile: u64 = self
            .service_value("LimitNOFILE")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: LimitNOFILE=<number>", self.name));
        assert!(nofile >= 65536, "{}: LimitNOFILE={nofile}", self.name);
    }

    /// `systemd-analyze verify` on a copy whose `ExecStart` runs `binary`
    /// (it checks that the program exists). Skipped, saying so, where
    /// `systemd-analyze` is not installed. Any complaint about the unit
    /// fails, warnings included (they exit 0).
    pub fn verify_with_systemd(&self, binary: &Path) {
        let (program, _) = self.exec_start();
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = dir.path().join(&self.name);
        let text = self.text.replace(&program, binary.to_str().expect("utf-8"));
        std::fs::write(&copy, text).expect("write unit copy");
        let output = match Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
        {
            Ok(output) => output,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "systemd-analyze not installed: verify of {} skipped",
                    self.name
                );
                return;
            }
            Err(err) => panic!("systemd-analyze: {err}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains(&self.name)).collect();
        assert!(
            output.status.success() && complaints.is_empty(),
            "systemd-analyze verify {}: {}\n{stderr}",
            self.name,
            output.status
        );
    }
}

/// Start `binary` as systemd would start the unit: its `ExecStart`
/// arguments (with the policy path `unit_policy` replaced by `policy`), a
/// clean environment holding only `PATH`, the unit's `Environment=` and
/// `systemd_env` (what systemd adds, e.g. `STATE_DIRECTORY`). Once a stderr
/// line contains `ready_marker`, run `while_running`, then send SIGTERM
/// (the unit's `KillSignal`) and expect exit status 0, so `Restart=on-failure`
/// would not fire.
pub fn start_as_the_unit_would(
    unit: &ServiceUnit,
    binary: &Path,
    unit_policy: &str,
    policy: &Path,
    systemd_env: &[(&str, PathBuf)],
    ready_marker: &str,
    while_running: impl FnOnce(),
) {
    let (_, args) = unit.exec_start();
    assert!(
        args.iter().any(|a| a == unit_policy),
        "ExecStart names {unit_policy}: {args:?}"
    );
    let args = args.iter().map(|a| {
        if a == unit_policy {
            policy.as_os_str()
        } else {
            a.as_ref()
        }
    });
    let mut child = Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(unit.environment())
        .envs(systemd_env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{}: {err}", binary.display()));
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + START_STOP_TIMEOUT;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(ready_marker) => break,
            Ok(line) => seen.push_str(&line),
            Err(_) => {
                let _ = child.kill();
                panic!("no {ready_marker:?} line; stderr: {seen}");
            }
        }
    }
    while_running();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit after SIGTERM: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {START_STOP_TIMEOUT:?} after start and SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
