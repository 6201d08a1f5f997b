//! Start the real `proxy-server` binary, detect readiness from its
//! `proxy listener on ADDR` line, keep every line it writes for later
//! greps, and kill it when the test ends (even on panic).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_proxy-server");

/// Generous bound for the proxy to load its policy and bind.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Generous bound for the proxy to exit on its own or after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The marker of the bound-address log line.
pub const LISTENER_MARKER: &str = "proxy listener on ";

/// How a proxy process is started: a policy file in a private temporary
/// directory, or legacy flags.
pub struct ProxyCommand {
    dir: tempfile::TempDir,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// A program (with its arguments) that execs the proxy; empty: none.
    wrapper: Vec<String>,
}

impl ProxyCommand {
    /// `proxy-server --proxy-config DIR/policy.lua` with `policy` written
    /// there after replacing `@DIR@` by the directory.
    pub fn with_policy(policy: &str) -> Self {
        let cmd = Self::bare();
        let path = cmd.write_file("policy.lua", policy);
        cmd.arg("--proxy-config")
            .arg(path.to_str().expect("utf-8 path"))
    }

    /// `proxy-server ARGS` without a policy (legacy mode, CLI errors).
    pub fn with_args(args: &[&str]) -> Self {
        let mut cmd = Self::bare();
        cmd.args.extend(args.iter().map(|s| s.to_string()));
        cmd
    }

    fn bare() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create temp dir"),
            args: Vec::new(),
            envs: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// Write `contents` (with `@DIR@` replaced) to `name` in the directory.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let dir = self.dir.path().to_str().expect("utf-8 temp dir");
        std::fs::write(&path, contents.replace("@DIR@", dir)).expect("write test file");
        path
    }

    /// The private directory (policy file, handler records).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Add a command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Set an environment variable for the proxy.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    fn spawn(self) -> Spawned {
        let mut command = match self.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(PROXY_BIN);
                command
            }
            None => Command::new(PROXY_BIN),
        };
        command
            .args(&self.args)
            .env_remove("KUMO_PROXY_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "spawn {:?} {PROXY_BIN} {:?}: {err}",
                self.wrapper, self.args
            )
        });
        let (events_tx, events) = mpsc::channel();
        let stderr = Log::default();
        let stdout = Log::default();
        let readers = vec![
            spawn_reader(
                child.stderr.take().unwrap(),
                stderr.clone(),
                events_tx.clone(),
                true,
            ),
            // Only stderr counts for readiness: the contract puts logs there.
            spawn_reader(
                child.stdout.take().unwrap(),
                stdout.clone(),
                events_tx,
                false,
            ),
        ];
        Spawned {
            guard: ChildGuard(Some(child)),
            dir: self.dir,
            args: self.args,
            stderr,
            stdout,
            events,
            readers,
        }
    }

    /// Start the proxy and wait until it logs one bound listener.
    pub fn start(self) -> RunningProxy {
        self.start_listeners(1)
    }

    /// Start the proxy and wait until it logs `count` bound listeners.
    pub fn start_listeners(self, count: usize) -> RunningProxy {
        let mut spawned = self.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut listeners = Vec::new();
        let mut readers_done = 0;
        while listeners.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match spawned.events.recv_timeout(left) {
                Ok(ReaderEvent::Listener(addr)) => listeners.push(addr),
                Ok(ReaderEvent::Eof) => {
                    readers_done += 1;
                    if readers_done == 2 {
                        let status = spawned.guard.wait(EXIT_TIMEOUT);
                        panic!(
                            "proxy {:?} exited ({status:?}) before logging {count} \
                             '{LISTENER_MARKER}ADDR' line(s)\n{}",
                            spawned.args,
                            spawned.output_dump()
                        );
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "proxy {:?} did not log {count} '{LISTENER_MARKER}ADDR' line(s) within \
                     {START_TIMEOUT:?}\n{}",
                    spawned.args,
                    spawned.output_dump()
                ),
            }
        }
        RunningProxy {
            addr: listeners[0],
            listeners,
            spawned,
        }
    }

    /// Run the proxy expecting it to exit by itself (start-up errors,
    /// `--validate`); panics if it is still running after `EXIT_TIMEOUT`.
    pub fn run_to_exit(self) -> Finished {
        let mut spawned = self.spawn();
        let status = spawned.guard.wait(EXIT_TIMEOUT);
        let Some(status) = status else {
            panic!(
                "proxy {:?} still running after {EXIT_TIMEOUT:?}\n{}",
                spawned.args,
                spawned.output_dump()
            );
        };
        spawned.finish(status)
    }
}

enum ReaderEvent {
    Listener(SocketAddr),
    Eof,
}

/// Everything one output stream of the proxy wrote so far.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn push_line(&self, line: &str) {
        let mut log = self.0.lock().unwrap();
        log.push_str(line);
        log.push('\n');
    }

    fn snapshot(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

fn spawn_reader(
    pipe: impl Read + Send + 'static,
    log: Log,
    events: Sender<ReaderEvent>,
    detect_listeners: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = strip_ansi(&String::from_utf8_lossy(&raw));
            let line = line.trim_end_matches(['\n', '\r']);
            log.push_line(line);
            if let Some(addr) = parse_listener_line(line).filter(|_| detect_listeners) {
                let _ = events.send(ReaderEvent::Listener(addr));
            }
        }
        let _ = events.send(ReaderEvent::Eof);
    })
}

/// The address in a `proxy listener on ADDR` line, if this is one.
pub fn parse_listener_line(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(LISTENER_MARKER)? + LISTENER_MARKER.len()..];
    let addr: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// Remove terminal colour sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Kills the child when dropped, so a failing test leaves no process.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }

    /// Wait up to `timeout` for the child to exit.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.0.as_mut().expect("child");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Spawned {
    guard: ChildGuard,
    dir: tempfile::TempDir,
    args: Vec<String>,
    stderr: Log,
    stdout: Log,
    events: Receiver<ReaderEvent>,
    readers: Vec<JoinHandle<()>>,
}

impl Spawned {
    fn output_dump(&self) -> String {
        format!(
            "--- proxy stderr ---\n{}--- proxy stdout ---\n{}",
            self.stderr.snapshot(),
            self.stdout.snapshot()
        )
    }

    /// After exit: wait for the readers to drain the pipes.
    fn finish(mut self, status: ExitStatus) -> Finished {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Finished {
            status,
            stderr: self.stderr.snapshot(),
            stdout: self.stdout.snapshot(),
        }
    }
}

/// A proxy process that has exited, with all it wrote.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stderr: String,
    pub stdout: String,
}

/// A proxy that logged its listener line(s). Killed on drop.
pub struct RunningProxy {
    /// The first bound listener.
    pub addr: SocketAddr,
    /// Every bound listener, in log order.
    pub listeners: Vec<SocketAddr>,
    spawned: Spawned,
}

impl RunningProxy {
    /// Start with `policy` (see [`ProxyCommand::with_policy`]).
    pub fn start(policy: &str) -> Self {
        ProxyCommand::with_policy(policy).start()
    }

    /// The private directory of this run (policy, handler records).
    pub fn dir(&self) -> &Path {
        self.spawned.dir.path()
    }

    /// What the proxy wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.spawned.stderr.snapshot()
    }

    /// Both output streams so far, for failure messages.
    pub fn output_dump(&self) -> String {
        self.spawned.output_dump()
    }

    /// Whether the process has exited already.
    pub fn has_exited(&mut self) -> bool {
        self.spawned.guard.wait(Duration::ZERO).is_some()
    }

    /// Send `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.spawned.guard.pid()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on the pid of our own child, not yet reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// SIGTERM, then [`RunningProxy::wait_exit`].
    pub fn terminate(self) -> Finished {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Wait for the exit (after a signal) and collect everything it wrote.
    /// Panics if it has not exited after `EXIT_TIMEOUT`.
    pub fn wait_exit(mut self) -> Finished {
        let Some(status) = self.spawned.guard.wait(EXIT_TIMEOUT) else {
            panic!(
                "proxy still running {EXIT_TIMEOUT:?} after the signal\n{}",
                self.output_dump()
            );
        };
        self.spawned.finish(status)
    }
}

/// Start the proxy as `WRAPPER... proxy-server ARGS`, e.g. under
/// `prlimit --nofile=64:64 --`; the wrapper must exec the proxy (same pid).
impl ProxyCommand {
    /// Like [`ProxyCommand::start`], with the proxy run through `wrapper`.
    pub fn start_wrapped(mut self, wrapper: &[&str]) -> RunningProxy {
        assert!(!wrapper.is_empty(), "a wrapper program");
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self.start()
    }
}

impl RunningProxy {
    /// The process id of the proxy.
    pub fn pid(&self) -> u32 {
        self.spawned.guard.pid()
    }
}

/// Raise this test process's `RLIMIT_NOFILE` soft limit to its hard limit
/// (children such as the proxy inherit it) and return the new limit; fails
/// the test with a clear message if the hard limit is below `needed`.
pub fn raise_nofile_limit(needed: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid, initialised rlimit struct.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit),
            0,
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        let hard = limit.rlim_max;
        assert!(
            hard >= needed,
            "this test needs RLIMIT_NOFILE of at least {needed} open files, but the hard limit \
             is {hard}; raise it (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE= in the \
             service/container settings) and rerun"
        );
        if limit.rlim_cur < hard {
            limit.rlim_cur = hard;
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit),
                0,
                "setrlimit(RLIMIT_NOFILE, {hard}): {}",
                std::io::Error::last_os_error()
            );
        }
        limit.rlim_cur
    }
}
