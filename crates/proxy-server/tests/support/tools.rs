//! Run third-party clients with a bounded run time. A missing tool is a
//! test failure that says how to install it, never a silent skip.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for one run of an external client.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The interpreter that has Debian's `python3-socks` (PySocks); a `python3`
/// earlier on `PATH` (pyenv, venv) may not.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

const INSTALL_HINT: &str =
    "run scripts/test, which installs the test clients (curl, ncat, python3-socks)";

/// Full path of `program` on `PATH`; fails the test if it is missing.
pub fn require_tool(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{program}` not found on PATH: {INSTALL_HINT}"))
}

/// Fails the test unless `/usr/bin/python3` can `import socks`.
pub fn require_pysocks() {
    assert!(
        std::path::Path::new(SYSTEM_PYTHON).is_file(),
        "{SYSTEM_PYTHON} not found: {INSTALL_HINT}"
    );
    let out = run_tool(
        Command::new(SYSTEM_PYTHON).args(["-c", "import socks"]),
        None,
    );
    assert!(
        out.status.success(),
        "PySocks is not importable by {SYSTEM_PYTHON} ({}): {INSTALL_HINT}",
        out.stderr
    );
}

/// What an external client did.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl ToolOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panic with the whole output unless the exit status is 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout_text(),
            self.stderr
        );
    }

    /// Panic with the whole output if the exit status is 0.
    pub fn assert_failure(&self, what: &str) {
        assert!(
            !self.status.success(),
            "{what}: expected a failure, but it exited 0\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout_text(),
            self.stderr
        );
    }
}

/// Run `command`, feeding `input` (then EOF) on stdin if given; kill it and
/// fail the test if it runs longer than [`TOOL_TIMEOUT`].
pub fn run_tool(command: &mut Command, input: Option<Vec<u8>>) -> ToolOutput {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {description}: {err}: {INSTALL_HINT}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
            // Dropping stdin sends EOF.
        });
    }
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "{description} still running after {TOOL_TIMEOUT:?}; killed\n\
                 --- stdout ---\n{}\n--- stderr ---\n{stderr}",
                String::from_utf8_lossy(&stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ToolOutput {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}
