//! The proxy driven in process through its library (`ProxyServer::bind`
//! and `run`) under tokio's paused clock: timeouts and the login failure
//! limiter are checked by advancing time, never by waiting for it.

mod inproc;

use inproc::*;
use socks5::{
    encode_greeting, encode_request, encode_userpass_request, AuthMethod, Command, TargetAddr,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An IP blocked on one listener is blocked on every listener of the
/// process, until `block_for` has passed and not before.
#[tokio::test(start_paused = true)]
async fn the_failure_limiter_is_shared_by_all_listeners() {
    let limit =
        "auth_failure_limit = { max_failures = 2, period = '1 minute', block_for = '5 minutes' }";
    let proxy = start(&policy(&[limit, limit])).await;
    let (a, b) = (proxy.addr(), proxy.addrs[1]);
    let _hold = hold_clock();
    for _ in 0..3 {
        assert_eq!(login(a, "wrong").await, 1);
    }
    assert_eq!(login(b, PASSWORD).await, 1, "blocked on the other listener");
    tokio::time::advance(Duration::from_secs(299)).await;
    assert_eq!(
        login(b, PASSWORD).await,
        1,
        "still blocked before block_for"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(login(b, PASSWORD).await, 0);
    assert_eq!(login(a, PASSWORD).await, 0);
}

/// Repeated BINDs do not keep a session in its handshake: the whole
/// handshake has the listener's one `timeout`.
#[tokio::test(start_paused = true)]
async fn repeated_binds_do_not_extend_the_handshake() {
    let proxy = start(&policy(&["timeout = '5 seconds'"])).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
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
    let proxy = start(&policy(&[""])).await;
    let reporter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = TargetAddr::Ip(reporter.local_addr().unwrap());
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
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
