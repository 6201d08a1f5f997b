//! STARTTLS as `enable_tls` says, against the aiosmtpd sink with and
//! without a certificate: Opportunistic upgrades when offered, Required
//! refuses a server that does not offer it, Disabled never upgrades.

mod smtp_common;
mod support;

use serde_json::json;
use smtp_common::*;
use support::*;

/// The test policy with `enable_tls` set to `mode`, delivering to `sink`.
fn workspace_for(sink: &Helper, mode: &str) -> Workspace {
    let policy = format!(
        "{POLICY_INIT}{POLICY_AUTH}{}",
        smtp_policy(&sink.addr.to_string(), "source_address = '127.0.0.1'")
    );
    let replaced = policy.replace(
        "enable_tls = 'Opportunistic'",
        &format!("enable_tls = '{mode}'"),
    );
    assert!(
        replaced.contains(&format!("enable_tls = '{mode}'")),
        "the policy names enable_tls"
    );
    let ws = Workspace::new("");
    ws.write("policy.lua", &replaced);
    ws
}

fn inject_one(daemon: &Daemon) {
    let reply = inject(
        daemon,
        &json!({
            "envelope_sender": "news@example.com",
            "recipients": [{"email": "tls@example.net"}],
            "content": "Subject: over tls\r\n\r\nsecret body\r\n",
        }),
        &["-u", "scott:tiger"],
    );
    assert_eq!(reply.json()["success_count"], 1, "{}", reply.body);
}

fn first_received(dir: &std::path::Path) -> Received {
    wait_for("a message at the sink", WAIT_TIMEOUT, || {
        received(dir).into_iter().next()
    })
}

#[test]
fn opportunistic_upgrades_when_the_server_offers_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let sink = start_tls_sink(&dir.path().join("sink"), "127.0.0.1");
    let ws = workspace_for(&sink, "Opportunistic");
    let daemon = ws.start();
    inject_one(&daemon);
    let got = first_received(&dir.path().join("sink"));
    assert_eq!(got.envelope["tls"], true, "{}", got.envelope);
    assert!(String::from_utf8_lossy(&got.data).contains("secret body"));
    ws.wait_for_records("Delivery", 1);
}

#[test]
fn required_upgrades_against_a_server_that_offers_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let sink = start_tls_sink(&dir.path().join("sink"), "127.0.0.1");
    let ws = workspace_for(&sink, "Required");
    let daemon = ws.start();
    inject_one(&daemon);
    let got = first_received(&dir.path().join("sink"));
    assert_eq!(got.envelope["tls"], true, "{}", got.envelope);
}

#[test]
fn disabled_stays_in_plain_text_even_when_offered() {
    let dir = tempfile::tempdir().unwrap();
    let sink = start_tls_sink(&dir.path().join("sink"), "127.0.0.1");
    let ws = workspace_for(&sink, "Disabled");
    let daemon = ws.start();
    inject_one(&daemon);
    let got = first_received(&dir.path().join("sink"));
    assert_eq!(got.envelope["tls"], false, "{}", got.envelope);
}

#[test]
fn required_against_a_server_without_starttls_fails_transiently() {
    let dir = tempfile::tempdir().unwrap();
    let sink = start_sink(&dir.path().join("sink"), "127.0.0.1");
    let ws = workspace_for(&sink, "Required");
    let daemon = ws.start();
    inject_one(&daemon);
    let failure = ws.wait_for_records("TransientFailure", 1).remove(0);
    let text = failure["response"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("does not offer STARTTLS"), "{failure}");
    assert!(received(&dir.path().join("sink")).is_empty());
    drop(daemon);
}
