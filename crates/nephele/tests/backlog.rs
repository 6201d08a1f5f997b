//! A backlog whose delivery keeps failing: queued messages keep their
//! bodies in the spool, not in memory, before and after a restart; and the
//! metrics show the queue.

mod support;

use serde_json::{json, Value};
use support::*;

/// Delivery fails (the Maildir's parent is a file) and is retried in an
/// hour, so every message stays queued after one attempt.
const FAILING: &str = r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = '@DIR@/blocker/maildir' },
    retry_interval = '1 hour',
  }
end)
"#;

const MESSAGES: usize = 400;
const PER_REQUEST: usize = 10;
const BODY_BYTES: usize = 500_000;

fn metric(daemon: &Daemon, family: &str) -> Value {
    let reply = curl(&daemon.url("/metrics.json"), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()[family].clone()
}

fn sample(daemon: &Daemon, family: &str) -> f64 {
    metric(daemon, family)["samples"][0]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {family} in /metrics.json"))
}

#[test]
fn queued_bodies_stay_on_disk_across_a_restart() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{FAILING}"));
    ws.write("blocker", "a file where a directory should be");
    let daemon = ws.start();
    let body = "m".repeat(BODY_BYTES);
    for request in 0..MESSAGES / PER_REQUEST {
        let recipients: Vec<Value> = (0..PER_REQUEST)
            .map(|i| json!({ "email": format!("r{request}-{i}@example.com") }))
            .collect();
        let reply = inject(
            &daemon,
            &json!({"envelope_sender": "s@example.com", "recipients": recipients,
                    "content": format!("Subject: big\r\n\r\n{body}\r\n")}),
            &[],
        );
        assert_eq!(reply.json()["success_count"], PER_REQUEST, "{}", reply.body);
    }
    ws.wait_for_records("TransientFailure", MESSAGES);
    let queued_mib = daemon.rss_kib() / 1024;
    assert_eq!(sample(&daemon, "scheduled_count_total"), MESSAGES as f64);
    assert_eq!(sample(&daemon, "message_data_resident_count"), 0.0);
    let received = metric(&daemon, "total_messages_received");
    assert_eq!(
        received["samples"][0]["value"], MESSAGES as f64,
        "{received}"
    );
    let transfail = metric(&daemon, "total_messages_transfail");
    assert_eq!(transfail["samples"][0]["labels"]["service"], "maildir");
    daemon.stop();

    let restarted = ws.start();
    restarted.wait_for_line(&format!("messages={MESSAGES}"), START_TIMEOUT);
    ws.wait_for_records("TransientFailure", 2 * MESSAGES);
    let restarted_mib = restarted.rss_kib() / 1024;
    eprintln!(
        "{MESSAGES} queued messages of {BODY_BYTES} bytes: RSS {queued_mib} MiB while queued, {restarted_mib} MiB after a restart"
    );
    // The bodies alone are 200 MB.
    assert!(queued_mib < 150, "{queued_mib} MiB while queued");
    assert!(restarted_mib < 150, "{restarted_mib} MiB after a restart");
    assert_eq!(sample(&restarted, "scheduled_count_total"), MESSAGES as f64);
    restarted.stop();
}

#[test]
fn metrics_show_injections_deliveries_and_their_metadata() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{POLICY_MAILDIR_QUEUE}"));
    let daemon = ws.start();
    let reply = inject(
        &daemon,
        &json!({"envelope_sender": "s@example.com",
                "recipients": [{"email": "a@example.com"}, {"email": "b@example.net"}],
                "content": "Subject: hi\r\n\r\nhello\r\n"}),
        &[],
    );
    assert_eq!(reply.json()["success_count"], 2);
    ws.wait_for_records("Delivery", 2);
    let text = wait_for("the deliveries counted", WAIT_TIMEOUT, || {
        let text = curl(&daemon.url("/metrics"), &[]).body;
        text.contains("total_messages_delivered{service=\"maildir\"} 2")
            .then_some(text)
    });
    for needle in [
        "total_messages_received{service=\"http\"} 2",
        "nephele_messages_spooled_total 2",
        "nephele_injection_requests_total{outcome=\"accepted\"} 1",
        "scheduled_count_total 0",
        "message_save_latency_count 1",
        "nephele_spool_healthy 1",
        "nephele_local_log_dropped_total 0",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    daemon.stop();

    let output = std::process::Command::new(NEPHELE_BIN)
        .arg("--dump-metric-metadata")
        .output()
        .unwrap();
    assert!(output.status.success());
    let metadata: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = metadata.iter().filter_map(|m| m["name"].as_str()).collect();
    for name in [
        "total_messages_received",
        "scheduled_count",
        "message_save_latency",
        "nephele_spool_healthy",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
}
