//! Support for tests that run the proxy in process through its library
//! (`ProxyServer::bind` and `run`), usually under tokio's paused clock:
//! an in-process proxy, policies, async SOCKS steps, small servers.

#![allow(dead_code)]

use proxy_server::{ProxyConfig, ProxyServer};
use socks5::{
    encode_greeting, encode_request, encode_userpass_request, parse_reply, AuthMethod, Command,
    Parsed, Reply, TargetAddr,
};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// The login the policies of [`policy`] accept.
pub const USER: &str = "user";
/// Its password.
pub const PASSWORD: &str = "pw";

/// A running in-process proxy; dropping it cancels the server.
pub struct Proxy {
    /// The SOCKS listeners, in policy order.
    pub addrs: Vec<SocketAddr>,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Proxy {
    /// The first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The directory holding the policy (and what it records).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many times the login handler ran (see [`policy`]).
    pub fn handler_calls(&self) -> usize {
        std::fs::read_to_string(calls_file(self.dir.path()))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }
}

fn calls_file(dir: &Path) -> PathBuf {
    dir.join("calls.txt")
}

/// Start `policy`, where `@DIR@` stands for the proxy's directory.
pub async fn start(policy: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.lua");
    std::fs::write(&path, policy.replace("@DIR@", dir.path().to_str().unwrap())).unwrap();
    let config = ProxyConfig::from_policy(&path).unwrap();
    let server = ProxyServer::bind(config, None).await.unwrap();
    let addrs = server.proxy_addrs();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone()));
    Proxy {
        addrs,
        shutdown,
        dir,
    }
}

/// A policy with one loopback listener per entry of `listeners` (Lua table
/// fields besides `listen`; loopback destinations allowed unless a key
/// says otherwise) whose login handler records each call in `@DIR@` and
/// accepts [`USER`]/[`PASSWORD`].
pub fn policy(listeners: &[&str]) -> String {
    let mut text = String::from(
        "local kumo = require 'kumo'\nlocal proxy = require 'proxy'\nkumo.on('proxy_init', function()\n",
    );
    for keys in listeners {
        let mut fields = vec!["listen = '127.0.0.1:0'", keys];
        if !keys.contains("prohibited_destinations") {
            fields.push("prohibited_destinations = {}");
        }
        fields.retain(|field| !field.trim().is_empty());
        text.push_str(&format!(
            "  proxy.start_proxy_listener {{ {} }}\n",
            fields.join(", ")
        ));
    }
    text.push_str(&format!(
        "end)\nkumo.on('proxy_server_auth_rfc1929', function(u, p)\n\
         \x20 local f = assert(io.open('@DIR@/calls.txt', 'a')); f:write(u, '\\n'); f:close()\n\
         \x20 return u == '{USER}' and p == '{PASSWORD}'\nend)\n"
    ));
    text
}

/// Connect to `proxy` from the loopback address `source`.
pub async fn connect_from(proxy: SocketAddr, source: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(proxy).await.unwrap()
}

/// Read exactly `N` bytes.
pub async fn read_exact<const N: usize>(stream: &mut TcpStream) -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Greeting and RFC 1929 login from `source`; the stream and the status
/// byte (0 = success).
pub async fn login_from(proxy: SocketAddr, source: IpAddr, pass: &str) -> (TcpStream, u8) {
    let mut stream = connect_from(proxy, source).await;
    let mut out = Vec::new();
    encode_greeting(&[AuthMethod::USERNAME_PASSWORD], &mut out).unwrap();
    encode_userpass_request(USER.as_bytes(), pass.as_bytes(), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    assert_eq!(read_exact::<2>(&mut stream).await.unwrap(), [5, 2]);
    let status = read_exact::<2>(&mut stream).await.unwrap()[1];
    (stream, status)
}

/// [`login_from`] 127.0.0.1, status only.
pub async fn login(proxy: SocketAddr, pass: &str) -> u8 {
    login_from(proxy, "127.0.0.1".parse().unwrap(), pass)
        .await
        .1
}

/// Read one SOCKS reply.
pub async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    loop {
        if let Parsed::Complete { value, .. } = parse_reply(&buf).unwrap() {
            return value;
        }
        buf.push(read_exact::<1>(stream).await.unwrap()[0]);
    }
}

/// Log in and CONNECT to `target`; the tunnel.
pub async fn tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let (mut stream, status) = login_from(proxy, "127.0.0.1".parse().unwrap(), PASSWORD).await;
    assert_eq!(status, 0);
    let mut out = Vec::new();
    encode_request(Command::Connect, &TargetAddr::Ip(target), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.code, socks5::ReplyCode::Succeeded);
    stream
}

/// An echo server on loopback (each connection echoes until EOF).
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = conn.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// One echo round trip through `stream`.
pub async fn round_trip(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).await.unwrap();
    let mut got = vec![0u8; payload.len()];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(got, payload);
}

/// Whether the proxy has closed `stream` (EOF or reset on read).
pub async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf).await, Ok(0) | Err(_))
}

/// Keeps a paused clock from jumping ahead on its own while held. Tokio
/// advances a paused clock to the next timer whenever its runtime has no
/// task ready, even while bytes are on their way through loopback sockets;
/// it never does so while a blocking task runs, so one waits here.
pub struct ClockHold(Option<std::sync::mpsc::Sender<()>>);

/// Hold the paused clock (see [`ClockHold`]) until the guard is dropped.
pub fn hold_clock() -> ClockHold {
    let (release, released) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = released.recv();
    });
    ClockHold(Some(release))
}

impl Drop for ClockHold {
    fn drop(&mut self) {
        self.0.take();
    }
}
