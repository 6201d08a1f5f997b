//! Clients that stall before their request is complete: a silent
//! connection, half the headers, half the body, half a TLS ClientHello.
//! Each is disconnected when the configured `header_timeout` or
//! `request_timeout` (the defaults, 30 s and 60 s) has passed, and not
//! before, while a well-behaved client is still served. Tokio's paused
//! clock runs the waits: every client is a task of the test's own runtime
//! writing to loopback, so its bytes are in the listener's socket before
//! the runtime looks for ready I/O, and the clock only jumps when nothing
//! is left to do but wait for a timer.

mod support;

use http_listener::HttpListenerParams;
use serde_json::json;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const POLICY: &str = "local kumo = require 'kumo'\n";
/// The listener's defaults.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Read until the server closes; returns what it sent and how long (on the
/// paused clock) that took. Panics if it is still open after an hour.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(3600), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "still open after an hour");
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Closed when `timeout` had passed, not before and not much after.
fn assert_closed_at(waited: Duration, timeout: Duration) {
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(1),
        "closed after {waited:?}, the timeout is {timeout:?}"
    );
}

async fn start(extra: serde_json::Value) -> TestListener {
    TestListener::start(POLICY, extra).await
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_header_timeout() {
    let listener = start(json!({})).await;
    let mut silent = TcpStream::connect(listener.addr).await.unwrap();
    // Served meanwhile: the silent client holds only its own connection.
    assert_eq!(listener.get("/metrics", &[]).await.status, 200);
    let (sent, waited) = read_until_closed(&mut silent).await;
    assert_closed_at(waited, HEADER_TIMEOUT);
    assert!(
        sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
        "{sent:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn half_the_headers_then_silence_is_closed_after_header_timeout() {
    let listener = start(json!({})).await;
    let mut slow = TcpStream::connect(listener.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (sent, waited) = read_until_closed(&mut slow).await;
    assert_closed_at(waited, HEADER_TIMEOUT);
    assert!(
        sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
        "no answer to an incomplete request: {sent:?}"
    );
    assert_eq!(listener.get("/metrics", &[]).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn half_the_body_then_silence_gets_408_after_request_timeout() {
    let listener = start(json!({})).await;
    let mut slow = TcpStream::connect(listener.addr).await.unwrap();
    slow.write_all(
        b"POST /api/admin/set_diagnostic_log_filter/v1 HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"filter\":",
    )
    .await
    .unwrap();
    let (sent, waited) = read_until_closed(&mut slow).await;
    assert_closed_at(waited, REQUEST_TIMEOUT);
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn configured_timeouts_replace_the_defaults() {
    let listener = start(json!({"header_timeout": "5s", "request_timeout": "7s"})).await;
    let mut silent = TcpStream::connect(listener.addr).await.unwrap();
    let (_, waited) = read_until_closed(&mut silent).await;
    assert_closed_at(waited, Duration::from_secs(5));
    let mut slow = TcpStream::connect(listener.addr).await.unwrap();
    slow.write_all(
        b"POST /api/admin/set_diagnostic_log_filter/v1 HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let (sent, waited) = read_until_closed(&mut slow).await;
    assert_closed_at(waited, Duration::from_secs(7));
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn half_a_tls_client_hello_is_closed_after_header_timeout() {
    let listener = start(json!({"use_tls": true})).await;
    let mut slow = TcpStream::connect(listener.addr).await.unwrap();
    // A handshake record header announcing 512 bytes that never come.
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    let (sent, waited) = read_until_closed(&mut slow).await;
    assert_closed_at(waited, HEADER_TIMEOUT);
    assert!(sent.is_empty(), "{sent:?}");
}

#[test]
fn zero_timeouts_are_refused_with_the_key_named() {
    for key in ["header_timeout", "request_timeout"] {
        let params: HttpListenerParams =
            serde_json::from_value(json!({"listen": "127.0.0.1:0", key: "0s"})).unwrap();
        let err = params.validate().unwrap_err().to_string();
        assert!(err.contains("header_timeout and request_timeout"), "{err}");
    }
    let err = serde_json::from_value::<HttpListenerParams>(json!({"header_timeout": "soon"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("soon"), "{err}");
}
