//! Durability and lifecycle: a message survives SIGKILL and is delivered
//! exactly once after the restart; max_age expiry; no spool, no injection;
//! --validate.

mod support;

use serde_json::json;
use std::process::Command;
use support::*;

fn queue(max_age: &str) -> String {
    format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ maildir_path = '@DIR@/blocker/maildir' }},
    retry_interval = '1 second',
    max_retry_interval = '1 second',
    max_age = '{max_age}',
  }}
end)
"#
    )
}

fn one_message() -> serde_json::Value {
    json!({"envelope_sender": "s@example.com",
           "recipients": [{"email": "survivor@example.com"}],
           "content": "Subject: still here\r\n\r\nbody\r\n"})
}

#[test]
fn killed_before_delivery_then_restarted_delivers_exactly_once() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{}", queue("1 hour")));
    // While `blocker` is a file, the Maildir under it cannot be created.
    ws.write("blocker", "not a directory");
    let daemon = ws.start();
    let reply = inject(&daemon, &one_message(), &[]);
    assert_eq!(reply.json()["success_count"], 1, "{}", reply.body);
    let failure = wait_for("a failed attempt", WAIT_TIMEOUT, || {
        ws.records_of("TransientFailure").into_iter().next()
    });
    assert!(
        failure["response"]["content"]
            .as_str()
            .unwrap()
            .contains("creating maildir_path"),
        "{failure}"
    );
    daemon.kill();
    assert!(ws.messages_in("blocker/maildir").is_empty());

    std::fs::remove_file(ws.dir().join("blocker")).unwrap();
    let daemon = ws.start();
    daemon.wait_for_line("messages=1", START_TIMEOUT);
    let messages = wait_for("the delivery after restart", WAIT_TIMEOUT, || {
        let messages = ws.messages_in("blocker/maildir");
        (!messages.is_empty()).then_some(messages)
    });
    assert!(
        messages[0].contains("Subject: still here"),
        "{}",
        messages[0]
    );
    wait_for("the Delivery record", WAIT_TIMEOUT, || {
        (!ws.records_of("Delivery").is_empty()).then_some(())
    });
    daemon.stop();

    // Delivered means removed from the spool: a further restart finds
    // nothing to deliver again.
    let daemon = ws.start();
    daemon.wait_for_line("messages=0", START_TIMEOUT);
    daemon.stop();
    assert_eq!(ws.messages_in("blocker/maildir").len(), 1);
    let deliveries = ws.records_of("Delivery");
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["recipient"], "survivor@example.com");
}

#[test]
fn max_age_expires_an_undeliverable_message() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{}", queue("2 seconds")));
    ws.write("blocker", "not a directory");
    let daemon = ws.start();
    assert_eq!(
        inject(&daemon, &one_message(), &[]).json()["success_count"],
        1
    );
    let expired = wait_for("the Expiration record", WAIT_TIMEOUT, || {
        ws.records_of("Expiration").into_iter().next()
    });
    assert_eq!(expired["recipient"], "survivor@example.com");
    assert!(expired["num_attempts"].as_u64().unwrap() >= 1, "{expired}");
    daemon.stop();
    let daemon = ws.start();
    daemon.wait_for_line("messages=0", START_TIMEOUT);
}

#[test]
fn smtp_to_a_default_prohibited_host_bounces() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:1' }} }} }}, retry_interval = '1 second' }}
end)"
    ));
    let daemon = ws.start();
    assert_eq!(
        inject(&daemon, &one_message(), &[]).json()["success_count"],
        1
    );
    // Loopback is in the default prohibited_hosts (as in KumoMTA).
    let bounce = wait_for("a Bounce", WAIT_TIMEOUT, || {
        ws.records_of("Bounce").into_iter().next()
    });
    let content = bounce["response"]["content"].as_str().unwrap();
    assert!(content.contains("prohibited_hosts"), "{bounce}");
    assert_eq!(bounce["response"]["code"], 550);
    daemon.stop();
}

#[test]
fn without_a_spool_injection_is_refused() {
    let ws = Workspace::new(
        "local kumo = require 'kumo'
kumo.on('init', function() kumo.start_http_listener { listen = '127.0.0.1:0' } end)",
    );
    let daemon = ws.start();
    let reply = inject(&daemon, &one_message(), &[]);
    reply.assert_refused(503, "no spool is defined");
    let live = curl(&daemon.url("/api/check-liveness/v1"), &[]);
    assert_eq!(live.status, 503);
    daemon.stop();

    let ws = Workspace::new(POLICY_INIT);
    let daemon = ws.start();
    let live = curl(&daemon.url("/api/check-liveness/v1"), &[]);
    assert_eq!((live.status, live.body.trim()), (200, "OK"));
    daemon.stop();
}

#[test]
fn validate_checks_the_policy_and_exits() {
    let ws = Workspace::new(POLICY_INIT);
    let ok = Command::new(NEPHELE_BIN)
        .args(["--validate", "--policy"])
        .arg(ws.dir().join("policy.lua"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("policy OK"));
    assert!(
        !ws.dir().join("spool").exists(),
        "--validate opened the spool"
    );

    let bad = ws.write(
        "bad.lua",
        "local kumo = require 'kumo'
kumo.on('init', function() kumo.define_spool { name = 'data', path = '/x', sync = true } end)",
    );
    let failed = Command::new(NEPHELE_BIN)
        .args(["--validate", "--policy"])
        .arg(bad)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("sync"), "{stderr}");

    let spec = Command::new(NEPHELE_BIN)
        .arg("--dump-openapi-spec")
        .output()
        .unwrap();
    assert!(spec.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&spec.stdout).unwrap();
    assert!(doc["paths"]["/api/inject/v1"]["post"].is_object());
    assert!(doc["paths"]["/api/check-liveness/v1"]["get"].is_object());
}
