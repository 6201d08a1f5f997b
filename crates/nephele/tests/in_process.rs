//! The daemon as a library: `NepheleConfig::from_policy`, `Nephele::start`
//! and `Nephele::run` in the test's own process, with a real curl client.
//! Shutdown must close the spool: a second start in the same process opens
//! it again (redb refuses a database another handle still holds) and finds
//! nothing left to deliver.

mod support;

use nephele::server::{Nephele, NepheleConfig};
use serde_json::json;
use std::time::Duration;
use support::{Workspace, POLICY_AUTH, POLICY_INIT, POLICY_MAILDIR_QUEUE, WAIT_TIMEOUT};
use tokio_util::sync::CancellationToken;

/// POST `body` to `addr` with curl (off the runtime: curl blocks).
async fn inject(addr: std::net::SocketAddr, body: serde_json::Value) -> support::HttpReply {
    tokio::task::spawn_blocking(move || {
        support::curl(
            &format!("http://{addr}/api/inject/v1"),
            &[
                "-u",
                "scott:tiger",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
            ],
        )
    })
    .await
    .expect("curl task")
}

async fn start(
    ws: &Workspace,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let config = NepheleConfig::from_policy(&ws.dir().join("policy.lua"), None).expect("config");
    let server = Nephele::start(config).await.expect("start");
    let addr = server.http_addrs()[0];
    assert_ne!(addr.port(), 0, "port 0 resolved to the bound port");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run(shutdown.clone()));
    (addr, shutdown, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_in_process_delivers_then_shuts_down_and_restarts() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}"));
    let (addr, shutdown, running) = start(&ws).await;

    let reply = inject(
        addr,
        json!({
            "envelope_sender": "noreply@example.com",
            "content": "Subject: in process\r\n\r\nhello\r\n",
            "recipients": [{"email": "someone@example.com"}],
        }),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["success_count"], 1);
    let delivered = tokio::task::spawn_blocking({
        let dir = ws.dir().to_owned();
        move || {
            support::wait_for("the delivery", WAIT_TIMEOUT, || {
                let new = std::fs::read_dir(dir.join("maildir/new")).ok()?;
                let files: Vec<_> = new.filter_map(Result::ok).collect();
                (!files.is_empty()).then_some(files.len())
            })
        }
    })
    .await
    .unwrap();
    assert_eq!(delivered, 1);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("run returns after shutdown")
        .expect("run task")
        .expect("run ends cleanly");

    // The same spool again, in the same process.
    let (addr, shutdown, running) = start(&ws).await;
    let reply = support::curl(&format!("http://{addr}/api/check-liveness/v1"), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    shutdown.cancel();
    running.await.unwrap().expect("second run ends cleanly");
    assert_eq!(ws.maildir_messages().len(), 1, "nothing delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_listeners_is_refused_by_name() {
    let ws = Workspace::new("local kumo = require 'kumo'\nkumo.on('init', function() end)\n");
    let err = NepheleConfig::from_policy(&ws.dir().join("policy.lua"), None)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("init defined no HTTP listener"),
        "{err}"
    );
}
