//! SMTP delivery through the real binaries on loopback: nephele → (optional
//! proxy-server with RFC 1929) → an aiosmtpd sink.

mod smtp_common;
mod support;

use serde_json::json;
use smtp_common::*;
use std::path::Path;
use support::*;

/// A body with a leading-dot line (dot-stuffing) and a trailing space.
const CONTENT: &str =
    "From: news@example.com\nTo: {{ email }}\nSubject: smtp test\n\n.dot line\nhello \nbye\n";

fn workspace(mx: &str, source: &str) -> Workspace {
    Workspace::new(&format!(
        "{POLICY_INIT}{POLICY_AUTH}{}",
        smtp_policy(mx, source)
    ))
}

fn inject_to(daemon: &Daemon, email: &str) {
    let reply = inject(
        daemon,
        &json!({
            "envelope_sender": "news@example.com",
            "recipients": [{"email": email}],
            "content": CONTENT,
        }),
        &["-u", "scott:tiger"],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["success_count"], 1, "{}", reply.body);
}

fn wait_received(dir: &Path, count: usize) -> Vec<Received> {
    wait_for("messages at the sink", WAIT_TIMEOUT, || {
        let got = received(dir);
        (got.len() >= count).then_some(got)
    })
}

fn wait_record(ws: &Workspace, kind: &str) -> serde_json::Value {
    wait_for(kind, WAIT_TIMEOUT, || {
        ws.records_of(kind).into_iter().next()
    })
}

fn assert_byte_exact(message: &Received, rcpt: &str) {
    assert_eq!(message.envelope["mail_from"], "news@example.com");
    assert_eq!(message.envelope["rcpt_tos"], json!([rcpt]));
    // nephele stores the rendered content with CRLF line ends and adds only
    // the default supplemental trace header, so the expected bytes are
    // known exactly.
    let expected = format!(
        "{}{}",
        kumo_ref_header(rcpt),
        CONTENT.replace("{{ email }}", rcpt).replace('\n', "\r\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&message.data),
        expected,
        "the sink must receive the message byte for byte"
    );
}

#[test]
fn direct_smtp_delivery_to_an_mx_list_host() {
    let ws = workspace("@SINK@", "source_address = '127.0.0.1'");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    ws.write(
        "policy.lua",
        &std::fs::read_to_string(ws.dir().join("policy.lua"))
            .unwrap()
            .replace("@SINK@", &sink.addr.to_string()),
    );
    let daemon = ws.start();
    inject_to(&daemon, "ann@example.net");
    let got = wait_received(&ws.dir().join("sink"), 1);
    assert_byte_exact(&got[0], "ann@example.net");
    assert_eq!(got[0].envelope["peer"], "127.0.0.1");
    let record = wait_record(&ws, "Delivery");
    assert_eq!(record["response"]["code"], 250);
    assert_eq!(record["peer_address"], sink.addr.to_string());
    assert_eq!(record["egress_source"], "src");
    assert_eq!(record["recipient"], "ann@example.net");
}

/// Sink and proxy started, policy written with `source`.
fn proxied(bind: Option<&str>, password: &str) -> (Workspace, Helper, InProcessProxy) {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    let proxy = start_proxy(ws.dir());
    let source = proxied_source(proxy.addr, password, bind);
    ws.write(
        "policy.lua",
        &format!(
            "{POLICY_INIT}{POLICY_AUTH}{}",
            smtp_policy(&sink.addr.to_string(), &source)
        ),
    );
    (ws, sink, proxy)
}

#[test]
fn through_the_proxy_with_rfc1929_end_to_end() {
    let (ws, _sink, proxy) = proxied(None, PROXY_PASSWORD);
    let daemon = ws.start();
    inject_to(&daemon, "bob@example.net");
    let got = wait_received(&ws.dir().join("sink"), 1);
    assert_byte_exact(&got[0], "bob@example.net");
    let calls = proxy_calls(ws.dir());
    assert!(!calls.is_empty());
    let fields: Vec<&str> = calls[0].split(' ').collect();
    assert_eq!(fields[0], PROXY_USER);
    assert!(fields[1].starts_with("127.0.0.1:"), "{calls:?}");
    assert_eq!(fields[2], proxy.addr.to_string());
    let record = wait_record(&ws, "Delivery");
    assert_eq!(record["egress_source"], "src");
    let records = serde_json::to_string(&ws.log_records()).unwrap();
    assert!(!records.contains(PROXY_PASSWORD), "{records}");
}

#[test]
fn wrong_proxy_password_then_fixed_and_epoch_bumped() {
    let (ws, sink, proxy) = proxied(None, "wrong-password");
    let daemon = ws.start();
    inject_to(&daemon, "cy@example.net");
    let failure = wait_record(&ws, "TransientFailure");
    let content = failure["response"]["content"].as_str().unwrap();
    assert!(content.contains("refused the login"), "{failure}");
    assert!(!failure.to_string().contains("wrong-password"), "{failure}");
    assert!(received(&ws.dir().join("sink")).is_empty());

    let source = proxied_source(proxy.addr, PROXY_PASSWORD, None);
    ws.write(
        "policy.lua",
        &format!(
            "{POLICY_INIT}{POLICY_AUTH}{}",
            smtp_policy(&sink.addr.to_string(), &source)
        ),
    );
    let reply = curl(&daemon.url("/api/admin/bump-config-epoch"), &["-X", "POST"]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = wait_received(&ws.dir().join("sink"), 1);
    assert_byte_exact(&got[0], "cy@example.net");
    wait_record(&ws, "Delivery");
}

#[test]
fn tempfail_is_retried_and_550_bounces() {
    let (ws, _sink, _proxy) = proxied(None, PROXY_PASSWORD);
    let daemon = ws.start();
    inject_to(&daemon, "tempfail@example.net");
    inject_to(&daemon, "reject@example.net");
    let got = wait_received(&ws.dir().join("sink"), 1);
    assert_byte_exact(&got[0], "tempfail@example.net");
    let delivery = wait_record(&ws, "Delivery");
    assert_eq!(delivery["num_attempts"], 2, "{delivery}");
    let bounce = wait_record(&ws, "Bounce");
    assert_eq!(bounce["recipient"], "reject@example.net");
    assert_eq!(bounce["response"]["code"], 550);
    assert_eq!(
        bounce["response"]["enhanced_code"],
        json!({"class": 5, "subject": 1, "detail": 1})
    );
    let failures: Vec<_> = ws
        .records_of("TransientFailure")
        .into_iter()
        .filter(|r| r["recipient"] == "tempfail@example.net")
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["response"]["code"], 451);
    assert_eq!(received(&ws.dir().join("sink")).len(), 1);
}

#[test]
fn bind_to_127_0_0_2_is_the_source_the_sink_sees() {
    let (ws, _sink, _proxy) = proxied(Some("127.0.0.2"), PROXY_PASSWORD);
    let daemon = ws.start();
    inject_to(&daemon, "dee@example.net");
    let got = wait_received(&ws.dir().join("sink"), 1);
    assert_eq!(got[0].envelope["peer"], "127.0.0.2");
}

#[test]
fn destination_refusal_through_the_proxy_is_its_own_record() {
    let ws = Workspace::new("");
    let proxy = start_proxy(ws.dir());
    // A port with no listener: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let source = proxied_source(proxy.addr, PROXY_PASSWORD, None);
    ws.write(
        "policy.lua",
        &format!(
            "{POLICY_INIT}{POLICY_AUTH}{}",
            smtp_policy(&closed.to_string(), &source)
        ),
    );
    let daemon = ws.start();
    inject_to(&daemon, "eve@example.net");
    let failure = wait_record(&ws, "TransientFailure");
    let content = failure["response"]["content"].as_str().unwrap();
    assert!(
        content.contains("destination") && content.contains("reply code 05"),
        "{failure}"
    );
    assert!(!content.contains("refused the login"), "{failure}");
}

#[test]
fn one_connection_carries_several_messages_until_an_epoch_bump() {
    let (ws, _sink, _proxy) = proxied(None, PROXY_PASSWORD);
    let daemon = ws.start();
    let sink_dir = ws.dir().join("sink");
    for (n, email) in ["f1@example.net", "f2@example.net", "f3@example.net"]
        .iter()
        .enumerate()
    {
        inject_to(&daemon, email);
        let got = wait_received(&sink_dir, n + 1);
        assert_byte_exact(&got[n], email);
    }
    // One proxy login (one connection) for the three messages.
    assert_eq!(
        proxy_calls(ws.dir()).len(),
        1,
        "{:?}",
        proxy_calls(ws.dir())
    );

    let reply = curl(&daemon.url("/api/admin/bump-config-epoch"), &["-X", "POST"]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    inject_to(&daemon, "f4@example.net");
    wait_received(&sink_dir, 4);
    // The bump retired the kept connection: a new login.
    assert_eq!(
        proxy_calls(ws.dir()).len(),
        2,
        "{:?}",
        proxy_calls(ws.dir())
    );
}

#[test]
fn proxy_acl_refusal_is_its_own_record() {
    let (ws, _sink, _proxy) = proxied(Some("127.0.0.3"), PROXY_PASSWORD);
    let daemon = ws.start();
    inject_to(&daemon, "gil@example.net");
    let failure = wait_record(&ws, "TransientFailure");
    let content = failure["response"]["content"].as_str().unwrap();
    assert!(
        content.contains("refused the BIND request") && content.contains("reply code 02"),
        "{failure}"
    );
    assert!(received(&ws.dir().join("sink")).is_empty());
}
