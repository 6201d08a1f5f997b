//! Fleet state end to end: two real `proxy-server` processes sharing a
//! real `redis-server`, driven by curl. A proxy killed with SIGKILL while
//! its tunnels are open cannot release their leases; they stop counting
//! once the lease runs out, and the other proxy admits the identity again.

#[path = "../../policy-lib/tests/support/backends.rs"]
mod backends;
mod limits_support;
mod support;

use backends::RedisServer;
use std::process::Command;
use std::time::Duration;
use support::{require_tool, HttpServer, RunningProxy, HELLO_BODY};

/// `curl -x socks5://USER:pw@PROXY URL`: the body, or `None` when curl
/// failed (the proxy refused the CONNECT).
async fn curl_through(proxy: std::net::SocketAddr, user: &str, url: String) -> Option<String> {
    let curl = require_tool("curl");
    let proxy_url = format!("socks5://{user}:{}@{proxy}", limits_support::PASSWORD);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(curl)
            .args(["-sS", "--max-time", "10", "-x", &proxy_url, &url])
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxys_sessions_stop_counting_after_their_lease() {
    let redis = RedisServer::start();
    let shared = format!(
        "proxy.configure_shared_state {{ redis = {{ node = '{}' }}, session_lease = '2s' }}",
        redis.url()
    );
    let policy = limits_support::policy("", "{ alice = { max_sessions = 2 } }", &shared);
    let a = tokio::task::block_in_place(|| RunningProxy::start(&policy));
    let b = tokio::task::block_in_place(|| RunningProxy::start(&policy));
    let web = HttpServer::start();
    let _held: Vec<_> = vec![
        limits_support::tunnel_as(a.addr, "alice", web.addr)
            .await
            .unwrap(),
        limits_support::tunnel_as(a.addr, "alice", web.addr)
            .await
            .unwrap(),
    ];
    assert_eq!(
        curl_through(b.addr, "alice", web.url("/")).await,
        None,
        "a third tunnel of alice in the fleet"
    );
    assert_eq!(
        curl_through(b.addr, "bob", web.url("/")).await.as_deref(),
        Some(HELLO_BODY)
    );
    a.signal(libc::SIGKILL);
    let body = limits_support::eventually(Duration::from_secs(20), || {
        curl_through(b.addr, "alice", web.url("/"))
    })
    .await;
    assert_eq!(body.as_deref(), Some(HELLO_BODY), "{}", b.output_dump());
    let leases = redis.cli(&["ZCARD", "{nephele-proxy}:sessions:alice"]);
    assert!(leases.trim() == "0" || leases.trim() == "1", "{leases}");
}
