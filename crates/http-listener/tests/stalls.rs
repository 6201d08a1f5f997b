//! Clients that stall before their request is complete: a silent
//! connection, half the headers, half the body, half a TLS ClientHello.
//! Each is disconnected within the configured `header_timeout` or
//! `request_timeout` while a well-behaved client is still served.

mod support;

use http_listener::HttpListenerParams;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POLICY: &str = "local kumo = require 'kumo'\n";
/// What the tests configure: short, so the suite stays fast.
const TIMEOUT_TEXT: &str = "1s";
const TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound on noticing the disconnection: far above `TIMEOUT`, so a
/// loaded machine cannot fail the test, far below "never".
const NOTICE_BOUND: Duration = Duration::from_secs(20);

/// Read until the server closes; returns what it sent and how long that
/// took. Panics if it is still open after `NOTICE_BOUND`.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(NOTICE_BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "still open after {NOTICE_BOUND:?}");
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

async fn start(extra: serde_json::Value) -> TestListener {
    let mut params = json!({
        "header_timeout": TIMEOUT_TEXT,
        "request_timeout": TIMEOUT_TEXT,
    });
    for (key, value) in extra.as_object().unwrap() {
        params[key] = value.clone();
    }
    TestListener::start(POLICY, params).await
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_header_timeout() {
    let listener = start(json!({})).await;
    let mut silent = TcpStream::connect(listener.addr).await.unwrap();
    // Served meanwhile: the silent client holds only its own connection.
    assert_eq!(listener.get("/metrics", &[]).await.status, 200);
    let (sent, waited) = read_until_closed(&mut silent).await;
    assert!(waited >= TIMEOUT / 2, "closed early, after {waited:?}");
    assert!(
        sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn half_the_headers_then_silence_is_closed_after_header_timeout() {
    let listener = start(json!({})).await;
    let mut slow = TcpStream::connect(listener.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (sent, waited) = read_until_closed(&mut slow).await;
    assert!(waited >= TIMEOUT / 2, "closed early, after {waited:?}");
    assert!(
        sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
        "no answer to an incomplete request: {sent:?}"
    );
    assert_eq!(listener.get("/metrics", &[]).await.status, 200);
}

#[tokio::test]
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
    assert!(waited >= TIMEOUT / 2, "closed early, after {waited:?}");
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent:?}");
}

#[tokio::test]
async fn half_a_tls_client_hello_is_closed_after_header_timeout() {
    let listener = start(json!({"use_tls": true})).await;
    let mut slow = TcpStream::connect(listener.addr).await.unwrap();
    // A handshake record header announcing 512 bytes that never come.
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    let (sent, waited) = read_until_closed(&mut slow).await;
    assert!(waited >= TIMEOUT / 2, "closed early, after {waited:?}");
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
