//! Fleet state: two in-process proxies sharing a real `redis-server`
//! (started by the test on a free loopback port) share the login failure
//! limiter and max_sessions, and keep serving on their own counts when
//! Redis goes away.

#[path = "../../policy-lib/tests/support/backends.rs"]
mod backends;
mod limits_support;

use backends::RedisServer;
use limits_support::*;
use socks5::ReplyCode;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const GENEROUS: Duration = Duration::from_secs(10);

fn shared_state(redis: &RedisServer) -> String {
    format!(
        "proxy.configure_shared_state {{ redis = {{ node = '{}', connect_timeout = '1s', response_timeout = '1s' }}, \
         session_lease = '1s', timeout = '500ms', retry_after = '1s' }}",
        redis.url()
    )
}

async fn two_proxies(redis: &RedisServer, keys: &str, limits: &str) -> (Server, Server) {
    let policy = policy(keys, limits, &shared_state(redis));
    (Server::start(&policy).await, Server::start(&policy).await)
}

#[tokio::test]
async fn failures_spread_over_two_proxies_block_the_address_on_both() {
    let redis = RedisServer::start();
    let keys =
        "auth_failure_limit = { max_failures = 3, period = '1 minute', block_for = '1 hour' }";
    let (a, b) = two_proxies(&redis, keys, "{}").await;
    let attacker = "127.0.0.7".parse().unwrap();
    for proxy in [&a, &b, &a, &b] {
        assert_eq!(login_as(proxy.socks, attacker, "alice", "guess").await.1, 1);
    }
    // Two failures on each: neither proxy's own table blocks, the fleet's does.
    for proxy in [&a, &b] {
        assert_eq!(
            login_as(proxy.socks, attacker, "alice", PASSWORD).await.1,
            1
        );
    }
    let other = "127.0.0.8".parse().unwrap();
    assert_eq!(login_as(a.socks, other, "alice", PASSWORD).await.1, 0);
    let blocked = b.curl("GET", "/api/admin/proxy/blocked/v1", None).await.1;
    assert!(
        blocked.contains(r#""address":"127.0.0.7""#) && blocked.contains(r#""fleet":true"#),
        "{blocked}"
    );
    let unblocked = b
        .curl(
            "DELETE",
            "/api/admin/proxy/blocked/v1",
            Some(r#"{"address":"127.0.0.7"}"#),
        )
        .await;
    assert_eq!(unblocked.1, r#"{"unblocked":true}"#);
    assert_eq!(login_as(a.socks, attacker, "alice", PASSWORD).await.1, 0);
}

#[tokio::test]
async fn max_sessions_holds_across_two_proxies() {
    let redis = RedisServer::start();
    let (a, b) = two_proxies(&redis, "", "{ alice = { max_sessions = 2 } }").await;
    let echo = echo_server().await;
    let mut on_a = tunnel_as(a.socks, "alice", echo).await.unwrap();
    let _on_b = tunnel_as(b.socks, "alice", echo).await.unwrap();
    for proxy in [&a, &b] {
        assert_eq!(
            tunnel_as(proxy.socks, "alice", echo).await.err(),
            Some(ReplyCode::NotAllowedByRuleset)
        );
    }
    assert!(tunnel_as(a.socks, "bob", echo).await.is_ok());
    // A tunnel that ends gives its lease back at once, not after the lease.
    on_a.shutdown().await.unwrap();
    drop(on_a);
    let again = eventually(GENEROUS, || async {
        tunnel_as(b.socks, "alice", echo).await.ok()
    })
    .await;
    assert!(
        again.is_some(),
        "the closed tunnel's lease was never released"
    );
    // Live tunnels outlast many leases: renewals keep them counted.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(tunnel_as(a.socks, "alice", echo).await.is_err());
    let members = redis.cli(&["ZCARD", "{nephele-proxy}:sessions:alice"]);
    assert_eq!(members.trim(), "2");
}

#[tokio::test]
async fn stopping_redis_keeps_both_proxies_serving_on_local_counts() {
    let redis = RedisServer::start();
    let (a, b) = two_proxies(&redis, "", "{ alice = { max_sessions = 2 } }").await;
    let echo = echo_server().await;
    let mut before = tunnel_as(a.socks, "alice", echo).await.unwrap();
    drop(redis);
    round_trip(&mut before, b"the live tunnel goes on").await;
    let mut kept = Vec::new();
    for proxy in [&a, &b] {
        // Each proxy now counts alone: two each, the third refused.
        let mut held = if proxy.socks == a.socks { 1 } else { 0 };
        while held < 2 {
            kept.push(tunnel_as(proxy.socks, "alice", echo).await.unwrap());
            held += 1;
        }
        assert!(tunnel_as(proxy.socks, "alice", echo).await.is_err());
        let mut bob = tunnel_as(proxy.socks, "bob", echo).await.unwrap();
        round_trip(&mut bob, b"still serving").await;
        assert!(proxy.metric("proxy_shared_state_fallbacks_total ").await >= 1.0);
    }
    assert_eq!(
        login_as(b.socks, "127.0.0.1".parse().unwrap(), "bob", "wrong")
            .await
            .1,
        1
    );
}
