//! The proxy driven in process through its library (`ProxyServer::bind`
//! and `run`) under tokio's paused clock: timeouts and the login failure
//! limiter are checked by advancing time, never by waiting for it.

use proxy_server::{ProxyConfig, ProxyServer};
use socks5::{
    encode_greeting, encode_request, encode_userpass_request, parse_reply, AuthMethod, Command,
    Parsed, Reply, TargetAddr,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A running in-process proxy; dropping it cancels the server.
struct Proxy {
    addrs: Vec<SocketAddr>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(policy: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.lua");
    std::fs::write(&path, policy).unwrap();
    let config = ProxyConfig::from_policy(&path).unwrap();
    let server = ProxyServer::bind(config, None).await.unwrap();
    let addrs = server.proxy_addrs();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone()));
    Proxy {
        addrs,
        shutdown,
        _dir: dir,
    }
}

/// A policy with one listener per entry of `listeners` (Lua table fields
/// besides `listen`), accepting `user`/`pw`.
fn policy(listeners: &[&str]) -> String {
    let mut text = String::from(
        "local kumo = require 'kumo'\nlocal proxy = require 'proxy'\nkumo.on('proxy_init', function()\n",
    );
    for keys in listeners {
        text.push_str(&format!(
            "  proxy.start_proxy_listener {{ listen = '127.0.0.1:0', {keys} }}\n"
        ));
    }
    text.push_str(
        "end)\nkumo.on('proxy_server_auth_rfc1929', function(u, p) return u == 'user' and p == 'pw' end)\n",
    );
    text
}

async fn read_exact<const N: usize>(stream: &mut TcpStream) -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Greeting and RFC 1929 login; the status byte (0 = success).
async fn login(proxy: SocketAddr, user: &str, pass: &str) -> u8 {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let mut out = Vec::new();
    encode_greeting(&[AuthMethod::USERNAME_PASSWORD], &mut out).unwrap();
    encode_userpass_request(user.as_bytes(), pass.as_bytes(), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    assert_eq!(read_exact::<2>(&mut stream).await.unwrap(), [5, 2]);
    read_exact::<2>(&mut stream).await.unwrap()[1]
}

async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    loop {
        if let Parsed::Complete { value, .. } = parse_reply(&buf).unwrap() {
            return value;
        }
        buf.push(read_exact::<1>(stream).await.unwrap()[0]);
    }
}

/// An IP blocked on one listener is blocked on every listener of the
/// process, until `block_for` has passed and not before.
#[tokio::test(start_paused = true)]
async fn the_failure_limiter_is_shared_by_all_listeners() {
    let limit =
        "auth_failure_limit = { max_failures = 2, period = '1 minute', block_for = '5 minutes' }";
    let proxy = start(&policy(&[limit, limit])).await;
    let (a, b) = (proxy.addrs[0], proxy.addrs[1]);
    for _ in 0..3 {
        assert_eq!(login(a, "user", "wrong").await, 1);
    }
    assert_eq!(
        login(b, "user", "pw").await,
        1,
        "blocked on the other listener"
    );
    tokio::time::advance(Duration::from_secs(299)).await;
    assert_eq!(
        login(b, "user", "pw").await,
        1,
        "still blocked before block_for"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(login(b, "user", "pw").await, 0);
    assert_eq!(login(a, "user", "pw").await, 0);
}

/// Repeated BINDs do not keep a session in its handshake: the whole
/// handshake has the listener's one `timeout`.
#[tokio::test(start_paused = true)]
async fn repeated_binds_do_not_extend_the_handshake() {
    let proxy = start(&policy(&["timeout = '5 seconds'"])).await;
    let mut stream = TcpStream::connect(proxy.addrs[0]).await.unwrap();
    let mut out = Vec::new();
    encode_greeting(&[AuthMethod::USERNAME_PASSWORD], &mut out).unwrap();
    encode_userpass_request(b"user", b"pw", &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    assert_eq!(read_exact::<4>(&mut stream).await.unwrap(), [5, 2, 1, 0]);
    let bind = TargetAddr::Ip("127.0.0.1:0".parse().unwrap());
    let mut answered = 0;
    for _ in 0..10 {
        out.clear();
        encode_request(Command::Bind, &bind, &mut out).unwrap();
        if stream.write_all(&out).await.is_err() {
            break;
        }
        let mut first = [0u8; 1];
        match stream.read(&mut first).await {
            Ok(1) => {
                let mut rest = vec![first[0]];
                rest.extend_from_slice(&read_exact::<9>(&mut stream).await.unwrap());
                answered += 1;
            }
            _ => break,
        }
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    assert!(
        (2..=3).contains(&answered),
        "{answered} BINDs answered within a 5 s handshake at one per 2 s"
    );
}

/// BIND chooses the source address, never the port.
#[tokio::test]
async fn bind_ignores_the_requested_port() {
    let proxy = start(&policy(&["prohibited_destinations = {}"])).await;
    let reporter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = TargetAddr::Ip(reporter.local_addr().unwrap());
    let mut stream = TcpStream::connect(proxy.addrs[0]).await.unwrap();
    let mut out = Vec::new();
    encode_greeting(&[AuthMethod::USERNAME_PASSWORD], &mut out).unwrap();
    encode_userpass_request(b"user", b"pw", &mut out).unwrap();
    encode_request(
        Command::Bind,
        &TargetAddr::Ip("127.0.0.1:514".parse().unwrap()),
        &mut out,
    )
    .unwrap();
    encode_request(Command::Connect, &target, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    assert_eq!(read_exact::<4>(&mut stream).await.unwrap(), [5, 2, 1, 0]);
    let bound = read_reply(&mut stream).await;
    assert_eq!(bound.code, socks5::ReplyCode::Succeeded);
    let connected = read_reply(&mut stream).await;
    assert_eq!(connected.code, socks5::ReplyCode::Succeeded);
    let (_conn, seen) = reporter.accept().await.unwrap();
    assert_eq!(seen.ip().to_string(), "127.0.0.1");
    assert_ne!(seen.port(), 514);
}
