//! Support for the per-identity limit tests: in-process proxies running a
//! policy whose logins accept any username with password `pw` (identity =
//! username, group from `GROUPS`) and whose
//! `proxy_server_get_identity_limits` answers from `LIMITS`; SOCKS steps as
//! any user; curl against the admin API; bulk data servers.

#![allow(dead_code)]

// The general in-process helpers (echo server, round trips) are written once.
#[path = "../inproc/mod.rs"]
mod inproc;
// Not every test binary that includes this module uses them.
#[allow(unused_imports)]
pub use inproc::{echo_server, round_trip};

use proxy_server::{ProxyConfig, ProxyServer};
use socks5::{
    encode_greeting, encode_request, encode_userpass_request, parse_reply, AuthMethod, Command,
    Parsed, ReplyCode, TargetAddr,
};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// The password every login of [`policy`] needs.
pub const PASSWORD: &str = "pw";

/// A policy: one SOCKS listener with `listener_keys`, one HTTP listener,
/// `limits` (a Lua table expression keyed by identity), `init` (more Lua
/// inside `proxy_init`). Each limits call is appended to `@DIR@/limit_calls.txt`.
pub fn policy(listener_keys: &str, limits: &str, init: &str) -> String {
    format!(
        r#"local kumo = require 'kumo'
local proxy = require 'proxy'
local LIMITS = {limits}
local GROUPS = {{ alice = 'staff', bob = 'guests' }}
kumo.on('proxy_init', function()
  proxy.start_proxy_listener {{ listen = '127.0.0.1:0', prohibited_destinations = {{}}, {listener_keys} }}
  proxy.start_http_listener {{ listen = '127.0.0.1:0' }}
  {init}
end)
kumo.on('proxy_server_auth_rfc1929', function(u, p)
  if p ~= '{PASSWORD}' then return false end
  return {{ identities = {{ {{ identity = u, context = 'ProxyAuthRfc1929' }} }}, groups = {{ GROUPS[u] or 'users' }} }}
end)
kumo.on('proxy_server_get_identity_limits', function(info)
  local f = assert(io.open('@DIR@/limit_calls.txt', 'a')); f:write(info.identities[1].identity, '\n'); f:close()
  return LIMITS[info.identities[1].identity]
end)
"#
    )
}

/// An in-process proxy; [`Server::stop`] shuts it down and waits (so the
/// accounting log is finished); dropping it only cancels.
pub struct Server {
    pub socks: SocketAddr,
    pub http: SocketAddr,
    shutdown: CancellationToken,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// Start `policy` (`@DIR@` is the server's directory).
    pub async fn start(policy: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.lua");
        std::fs::write(&path, policy.replace("@DIR@", dir.path().to_str().unwrap())).unwrap();
        let config = ProxyConfig::from_policy(&path).unwrap();
        let server = ProxyServer::bind(config, None).await.unwrap();
        let (socks, http) = (server.proxy_addrs()[0], server.http_addrs()[0]);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(server.run(shutdown.clone()));
        Server {
            socks,
            http,
            shutdown,
            run: Some(run),
            dir,
        }
    }

    /// Shut down, wait until the server is done, and hand back its
    /// directory (the accounting log is finished by then).
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(run) = self.run.take() {
            run.await.unwrap().unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// How many times the limits handler ran.
    pub fn limit_calls(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("limit_calls.txt"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    /// `curl -X METHOD` on the admin API; status and body.
    pub async fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        curl(self.http, method, path, body).await
    }

    /// The value of a metric line starting with `series` (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.curl("GET", "/metrics", None).await;
        assert_eq!(status, 200);
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

/// Run curl (a real HTTP client) off the runtime.
pub async fn curl(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut command = std::process::Command::new("curl");
    command.args([
        "-sS",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(body) = body {
        command.args(["-H", "content-type: application/json", "-d", body]);
    }
    command.arg(format!("http://{addr}{path}"));
    let out = tokio::task::spawn_blocking(move || command.output().expect("curl runs"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

/// Log in as `user` from `source`; the stream and the status (0 = ok).
pub async fn login_as(
    proxy: SocketAddr,
    source: IpAddr,
    user: &str,
    pass: &str,
) -> (TcpStream, u8) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    let mut out = Vec::new();
    encode_greeting(&[AuthMethod::USERNAME_PASSWORD], &mut out).unwrap();
    encode_userpass_request(user.as_bytes(), pass.as_bytes(), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[..2], [5, 2]);
    (stream, answer[3])
}

/// Log in as `user` and CONNECT to `target`: the tunnel, or the reply code.
pub async fn tunnel_as(
    proxy: SocketAddr,
    user: &str,
    target: SocketAddr,
) -> Result<TcpStream, ReplyCode> {
    let (mut stream, status) = login_as(proxy, [127, 0, 0, 1].into(), user, PASSWORD).await;
    assert_eq!(status, 0, "login of {user}");
    let mut out = Vec::new();
    encode_request(Command::Connect, &TargetAddr::Ip(target), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let reply = loop {
        if let Parsed::Complete { value, .. } = parse_reply(&buf).unwrap() {
            break value;
        }
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        buf.push(byte[0]);
    };
    match reply.code {
        ReplyCode::Succeeded => Ok(stream),
        code => Err(code),
    }
}

/// A server that writes zeros to each client until it goes away.
pub async fn bulk_source() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0u8; 64 * 1024];
                while conn.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

/// Whether `stream` is closed by the proxy within `within`.
pub async fn closes_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// Every record of the accounting log in `dir` (finished segments).
pub fn accounting_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    paths.sort();
    let mut records = Vec::new();
    for path in paths {
        let text = zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
        for line in String::from_utf8(text).unwrap().lines() {
            records.push(serde_json::from_str(line).unwrap());
        }
    }
    records
}

/// Retry `attempt` every 50 ms until it gives `Some`, for up to `within`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    mut attempt: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
