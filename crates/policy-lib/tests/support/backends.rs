//! Real login backends for the policy-library tests, started by the test
//! on loopback: `redis-server` (a single node, or a three-node Redis
//! Cluster made with `redis-cli --cluster create`) and the HTTP login
//! service `auth_service.py`. Readiness is checked by connecting (or by the
//! service's "listening on" line), never by sleeping; every process is
//! killed when its handle drops.
//!
//! The proxy-server and nephele black-box tests include this file by path,
//! so one implementation serves all three crates.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on a backend becoming ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The interpreter with Debian's Python packages.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

const INSTALL_HINT: &str = "run scripts/test, which installs redis-server and redis-tools";

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `count` distinct loopback ports nothing listens on right now (all held
/// at once while choosing, so none is picked twice).
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local addr").port())
        .collect()
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{program}` not found: {INSTALL_HINT}"))
}

/// Poll `ready` until it is true, failing the test after [`READY_TIMEOUT`]
/// or as soon as `child` exits.
fn wait_ready(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before it was ready");
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {READY_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `redis-server` on 127.0.0.1 in its own directory.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    _dir: tempfile::TempDir,
    _guard: Guard,
}

impl RedisServer {
    /// A plain node (no persistence).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A node with `--requirepass PASSWORD`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let extra: Vec<&str> = password
            .map(|password| vec!["--requirepass", password])
            .unwrap_or_default();
        let child = spawn_redis(dir.path(), port, &extra);
        RedisServer {
            port,
            password: password.map(str::to_owned),
            _dir: dir,
            _guard: child,
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli -p PORT ARGS...` (logged in when the server has a
    /// password), its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        match &self.password {
            Some(password) => {
                let mut all = vec!["--no-auth-warning", "-a", password.as_str()];
                all.extend_from_slice(args);
                redis_cli(self.port, &all)
            }
            None => redis_cli(self.port, args),
        }
    }

    /// How many times the server ran `command` (`INFO commandstats`): the
    /// backend's own count of the lookups that reached it.
    pub fn calls(&self, command: &str) -> u64 {
        command_calls(&self.cli(&["INFO", "commandstats"]), command)
    }
}

fn spawn_redis(dir: &Path, port: u16, extra: &[&str]) -> Guard {
    let mut child = Command::new(require("redis-server"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn redis-server: {err}: {INSTALL_HINT}"));
    wait_ready(&format!("redis-server on port {port}"), &mut child, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Guard(child)
}

/// `redis-cli -p PORT ARGS...`, its standard output (fails the test on a
/// non-zero exit).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(require("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .env_remove("REDISCLI_AUTH")
        .output()
        .unwrap_or_else(|err| panic!("run redis-cli: {err}: {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `calls=N` of `cmdstat_COMMAND` in an `INFO commandstats` reply.
fn command_calls(info: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap_or("0").parse().unwrap_or(0)
        })
}

/// A Redis Cluster of three primaries (no replicas) on 127.0.0.1.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
    _guards: Vec<Guard>,
}

impl RedisCluster {
    /// Start three cluster-enabled nodes and join them.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ports = Vec::new();
        let mut guards = Vec::new();
        let free = free_ports(6);
        for (index, pair) in free.chunks(2).enumerate() {
            let (port, bus_port) = (pair[0], pair[1]);
            let node_dir = dir.path().join(format!("node{index}"));
            std::fs::create_dir(&node_dir).expect("node dir");
            let bus = bus_port.to_string();
            guards.push(spawn_redis(
                &node_dir,
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    "nodes.conf",
                ],
            ));
            ports.push(port);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(ports[0], &create);
        let deadline = Instant::now() + READY_TIMEOUT;
        for port in &ports {
            while !redis_cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach state ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster {
            ports,
            _dir: dir,
            _guards: guards,
        }
    }

    /// The node URLs, for `redis.open { node = { ... } }`.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// How many times the nodes together ran `command`.
    pub fn calls(&self, command: &str) -> u64 {
        self.ports
            .iter()
            .map(|port| command_calls(&redis_cli(*port, &["INFO", "commandstats"]), command))
            .sum()
    }
}

/// The HTTP login service of `auth_service.py`.
pub struct AuthService {
    pub addr: SocketAddr,
    _guard: Guard,
}

impl AuthService {
    /// Serve `users` (`(user, password)` pairs).
    pub fn start(users: &[(&str, &str)]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policy-lib/tests/support/auth_service.py");
        let mut child = Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .args(users.iter().map(|(user, pass)| format!("{user}:{pass}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {SYSTEM_PYTHON} {}: {err}", script.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the service's first line");
        let addr = line
            .trim()
            .strip_prefix("auth service listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the auth service: {line:?}"));
        AuthService {
            addr,
            _guard: Guard(child),
        }
    }

    /// `http://ADDR/auth`.
    pub fn url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }

    /// How many `POST /auth` the service answered.
    pub fn calls(&self) -> u64 {
        let mut stream = TcpStream::connect(self.addr).expect("connect to the auth service");
        stream
            .set_read_timeout(Some(READY_TIMEOUT))
            .expect("read timeout");
        write!(
            stream,
            "GET /calls HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send GET /calls");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read /calls");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
        body.trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad /calls reply {reply:?}"))
    }
}

/// Run `sqlite3 DATABASE SQL` (Debian's `sqlite3` client), creating the file
/// if needed; fails the test on an error.
pub fn sqlite3(database: &Path, sql: &str) {
    let out = Command::new(require("sqlite3"))
        .arg(database)
        .arg(sql)
        .output()
        .unwrap_or_else(|err| panic!("run sqlite3: {err}: run scripts/test (installs sqlite3)"));
    assert!(
        out.status.success(),
        "sqlite3 {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
