//! Per-identity limits with the proxy in process: max_sessions and
//! max_connect_rate refuse with `02` (and only the limited identity),
//! bandwidth is shaped, every tunnel leaves a Session record, and the
//! admin API lists and disconnects sessions and unblocks clients.

mod limits_support;

use limits_support::*;
use socks5::ReplyCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GENEROUS: Duration = Duration::from_secs(10);

#[tokio::test]
async fn max_sessions_refuses_the_third_tunnel_and_spares_other_identities() {
    let server = Server::start(&policy("", "{ alice = { max_sessions = 2 } }", "")).await;
    let echo = echo_server().await;
    let mut first = tunnel_as(server.socks, "alice", echo).await.unwrap();
    let _second = tunnel_as(server.socks, "alice", echo).await.unwrap();
    let third = tunnel_as(server.socks, "alice", echo).await;
    assert_eq!(third.err(), Some(ReplyCode::NotAllowedByRuleset));
    let mut bobs = Vec::new();
    for _ in 0..3 {
        bobs.push(tunnel_as(server.socks, "bob", echo).await.unwrap());
    }
    round_trip(&mut bobs[2], b"bob is not limited").await;
    // One call per identity: the answer is cached.
    assert_eq!(server.limit_calls(), 2);
    let refused =
        r#"proxy_identity_sessions_refused_total{identity="alice",limit="max_sessions"} "#;
    assert_eq!(server.metric(refused).await, 1.0);
    let open = r#"proxy_identity_sessions_open{identity="alice"} "#;
    assert_eq!(server.metric(open).await, 2.0);
    // Closing a tunnel frees its slot.
    first.shutdown().await.unwrap();
    drop(first);
    let again = eventually(GENEROUS, || async {
        tunnel_as(server.socks, "alice", echo).await.ok()
    })
    .await;
    assert!(again.is_some(), "a closed tunnel's slot was never freed");
}

#[tokio::test(start_paused = true)]
async fn max_connect_rate_refuses_until_the_next_window() {
    let server = Server::start(&policy(
        "",
        "{ alice = { max_connect_rate = '3/minute' } }",
        "",
    ))
    .await;
    let echo = echo_server().await;
    let mut tunnels = Vec::new();
    for _ in 0..3 {
        tunnels.push(tunnel_as(server.socks, "alice", echo).await.unwrap());
    }
    assert_eq!(
        tunnel_as(server.socks, "alice", echo).await.err(),
        Some(ReplyCode::NotAllowedByRuleset)
    );
    assert!(tunnel_as(server.socks, "bob", echo).await.is_ok());
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(tunnel_as(server.socks, "alice", echo).await.is_ok());
    let refused =
        r#"proxy_identity_sessions_refused_total{identity="alice",limit="max_connect_rate"} "#;
    assert_eq!(server.metric(refused).await, 1.0);
}

/// Read from `stream` for `span` (wall clock) after its first byte; bytes read.
async fn read_for(stream: &mut tokio::net::TcpStream, span: Duration) -> (usize, Duration) {
    let mut buf = vec![0u8; 256 * 1024];
    let first = stream.read(&mut buf).await.unwrap();
    assert!(first > 0);
    let start = Instant::now();
    let mut total = 0;
    while start.elapsed() < span {
        let left = span.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("the bulk source closed"),
            Ok(Ok(n)) => total += n,
            Ok(Err(err)) => panic!("{err}"),
            Err(_) => break,
        }
    }
    (total, start.elapsed())
}

/// Inherently timed: the band is ±10% over 5 s, and the shaper's burst
/// (a tenth of a second) stays well inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_is_shaped_per_identity_while_others_go_full_speed() {
    let server = Server::start(&policy("", "{ alice = { max_bandwidth = 1000000 } }", "")).await;
    let source = bulk_source().await;
    let mut alice = tunnel_as(server.socks, "alice", source).await.unwrap();
    let mut bob = tunnel_as(server.socks, "bob", source).await.unwrap();
    // The task hands the stream back: alice's tunnel must stay open until
    // the sessions list below is read.
    let shaped = tokio::spawn(async move {
        let read = read_for(&mut alice, Duration::from_secs(5)).await;
        (read, alice)
    });
    let (bob_bytes, bob_took) = read_for(&mut bob, Duration::from_secs(2)).await;
    let ((alice_bytes, alice_took), _alice) = shaped.await.unwrap();
    let alice_rate = alice_bytes as f64 / alice_took.as_secs_f64();
    let bob_rate = bob_bytes as f64 / bob_took.as_secs_f64();
    assert!(
        (900_000.0..=1_100_000.0).contains(&alice_rate),
        "alice at {alice_rate:.0} B/s for a 1 MB/s limit"
    );
    // Five times alice's limit proves bob is not shaped, with room for a
    // machine busy with other tests.
    assert!(
        bob_rate > 5_000_000.0,
        "bob (unlimited) at only {bob_rate:.0} B/s"
    );
    let sessions = server
        .curl("GET", "/api/admin/proxy/sessions/v1?identity=alice", None)
        .await
        .1;
    assert!(sessions.contains(r#""shaped":true"#), "{sessions}");
}

#[tokio::test]
async fn every_tunnel_leaves_a_session_record_with_its_byte_counts() {
    let init = "kumo.aaa.configure_acct_log { log_dir = '@DIR@/acct', log_authn_ok = false, log_authz_allow = false }";
    let server = Server::start(&policy("", "{ alice = { max_sessions = 1 } }", init)).await;
    let echo = echo_server().await;
    let mut tunnel = tunnel_as(server.socks, "alice", echo).await.unwrap();
    assert!(tunnel_as(server.socks, "alice", echo).await.is_err());
    round_trip(&mut tunnel, &[7u8; 1000]).await;
    round_trip(&mut tunnel, &[8u8; 234]).await;
    tunnel.shutdown().await.unwrap();
    assert!(closes_within(&mut tunnel, GENEROUS).await);
    drop(tunnel);
    let mut bob = tunnel_as(server.socks, "bob", echo).await.unwrap();
    round_trip(&mut bob, b"hello").await;
    drop(bob);
    // The slot is free once the first tunnel is accounted.
    eventually(GENEROUS, || async {
        tunnel_as(server.socks, "alice", echo).await.ok()
    })
    .await
    .unwrap();
    let dir = server.stop().await;
    let sessions: Vec<_> = accounting_records(&dir.path().join("acct"))
        .into_iter()
        .filter(|r| r["type"] == "Session")
        .collect();
    let by = |identity: &str, end: &str| {
        sessions
            .iter()
            .find(|r| {
                r["auth_info"]["identities"][0]["identity"] == identity && r["end_reason"] == end
            })
            .unwrap_or_else(|| panic!("no {identity} record ending {end}: {sessions:#?}"))
    };
    let alice = by("alice", "client_close");
    assert_eq!(alice["bytes_client_to_dest"], 1234);
    assert_eq!(alice["bytes_dest_to_client"], 1234);
    assert_eq!(alice["requested_destination"], echo.to_string());
    assert_eq!(alice["connected_destination"], echo.to_string());
    assert_eq!(alice["auth_info"]["groups"][0], "staff");
    assert!(alice["duration_seconds"].as_f64().unwrap() >= 0.0);
    let limited = by("alice", "limit");
    assert_eq!(limited["connected_destination"], serde_json::Value::Null);
    assert_eq!(by("bob", "client_close")["bytes_dest_to_client"], 5);
    let text = serde_json::to_string(&sessions).unwrap();
    assert!(!text.contains(PASSWORD_FIELD), "{text}");
}

const PASSWORD_FIELD: &str = "\"password\"";

#[tokio::test]
async fn admin_lists_and_disconnects_an_identitys_tunnels() {
    let init = "kumo.aaa.configure_acct_log { log_dir = '@DIR@/acct', log_authn_ok = false, log_authz_allow = false }";
    let server = Server::start(&policy("", "{}", init)).await;
    let echo = echo_server().await;
    let mut alices = vec![
        tunnel_as(server.socks, "alice", echo).await.unwrap(),
        tunnel_as(server.socks, "alice", echo).await.unwrap(),
    ];
    let mut bob = tunnel_as(server.socks, "bob", echo).await.unwrap();
    round_trip(&mut alices[0], b"some bytes").await;
    let (status, all) = server
        .curl("GET", "/api/admin/proxy/sessions/v1", None)
        .await;
    assert_eq!(status, 200);
    let all: Vec<serde_json::Value> = serde_json::from_str(&all).unwrap();
    assert_eq!(all.len(), 3);
    let staff = server
        .curl("GET", "/api/admin/proxy/sessions/v1?group=staff", None)
        .await
        .1;
    let staff: Vec<serde_json::Value> = serde_json::from_str(&staff).unwrap();
    assert_eq!(staff.len(), 2);
    assert_eq!(staff[0]["identities"][0], "alice");
    assert_eq!(staff[0]["bytes_dest_to_client"], 10);
    let (status, answer) = server
        .curl(
            "POST",
            "/api/admin/proxy/disconnect/v1",
            Some(r#"{"identity":"alice"}"#),
        )
        .await;
    assert_eq!((status, answer.as_str()), (200, r#"{"disconnected":2}"#));
    for alice in &mut alices {
        assert!(
            closes_within(alice, GENEROUS).await,
            "alice's tunnel stayed open"
        );
    }
    round_trip(&mut bob, b"bob's tunnel is untouched").await;
    let left = server
        .curl("GET", "/api/admin/proxy/sessions/v1?identity=alice", None)
        .await
        .1;
    assert_eq!(left, "[]");
    drop(bob);
    let dir = server.stop().await;
    let records = accounting_records(&dir.path().join("acct"));
    let ends: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "Session")
        .map(|r| r["end_reason"].as_str().unwrap().to_owned())
        .collect();
    let by_admin = ends
        .iter()
        .filter(|e| *e == "disconnected_by_admin")
        .count();
    assert_eq!(by_admin, 2, "{ends:?}");
}

#[tokio::test]
async fn unblocking_an_address_lets_its_next_login_through() {
    let keys =
        "auth_failure_limit = { max_failures = 2, period = '1 minute', block_for = '1 hour' }";
    let server = Server::start(&policy(keys, "{}", "")).await;
    let attacker = "127.0.0.9".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(
            login_as(server.socks, attacker, "alice", "wrong").await.1,
            1
        );
    }
    assert_eq!(
        login_as(server.socks, attacker, "alice", PASSWORD).await.1,
        1,
        "blocked"
    );
    let (status, blocked) = server
        .curl("GET", "/api/admin/proxy/blocked/v1", None)
        .await;
    assert_eq!(status, 200);
    assert!(blocked.contains(r#""address":"127.0.0.9""#), "{blocked}");
    let (status, answer) = server
        .curl(
            "DELETE",
            "/api/admin/proxy/blocked/v1",
            Some(r#"{"address":"127.0.0.9"}"#),
        )
        .await;
    assert_eq!((status, answer.as_str()), (200, r#"{"unblocked":true}"#));
    assert_eq!(
        login_as(server.socks, attacker, "alice", PASSWORD).await.1,
        0
    );
    assert_eq!(
        server
            .curl("GET", "/api/admin/proxy/blocked/v1", None)
            .await
            .1,
        "[]"
    );
    let bad = server
        .curl(
            "DELETE",
            "/api/admin/proxy/blocked/v1",
            Some(r#"{"address":"nope"}"#),
        )
        .await;
    assert_eq!(bad.0, 400);
}

#[tokio::test]
async fn limits_are_reread_after_a_reload_and_a_bad_answer_fails_closed() {
    let limits = "{ alice = { max_sessions = 1 }, mallory = { max_session = 5 } }";
    let server = Server::start(&policy("", limits, "")).await;
    let echo = echo_server().await;
    let _first = tunnel_as(server.socks, "alice", echo).await.unwrap();
    assert!(tunnel_as(server.socks, "alice", echo).await.is_err());
    // A misspelt key is an error: refused, not unlimited.
    assert_eq!(
        tunnel_as(server.socks, "mallory", echo).await.err(),
        Some(ReplyCode::NotAllowedByRuleset)
    );
    let calls = server.limit_calls();
    let raised = policy("", "{ alice = { max_sessions = 3 } }", "");
    let dir = server.dir.path().to_str().unwrap();
    std::fs::write(
        server.dir.path().join("policy.lua"),
        raised.replace("@DIR@", dir),
    )
    .unwrap();
    let (status, _) = server
        .curl("POST", "/api/admin/bump-config-epoch", None)
        .await;
    assert_eq!(status, 200);
    let _second = tunnel_as(server.socks, "alice", echo).await.unwrap();
    assert_eq!(
        server.limit_calls(),
        calls + 1,
        "asked again after the reload"
    );
}
