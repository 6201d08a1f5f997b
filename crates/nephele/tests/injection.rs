//! The injection API: templates per recipient, MIME building, request
//! validation, the null queue.

mod support;

use serde_json::json;
use std::process::Command;
use support::*;

/// A queue whose Maildir cannot be created while `@DIR@/blocker` is a file:
/// spooled messages stay in the spool.
const BLOCKED_QUEUE: &str = r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = '@DIR@/blocker/maildir' },
    retry_interval = '1 second',
  }
end)
"#;

fn spooled_at_start(daemon: &Daemon) -> usize {
    let line = daemon.wait_for_line("spool loaded", START_TIMEOUT);
    line.split("messages=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

#[test]
fn per_recipient_templates_land_in_the_maildir() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{POLICY_MAILDIR_QUEUE}"));
    let daemon = ws.start();
    let reply = inject(
        &daemon,
        &json!({
            "envelope_sender": "news@example.com",
            "recipients": [
                {"email": "ann@example.com", "name": "Ann", "substitutions": {"offer": "tea"}},
                {"email": "bob@example.net", "name": "Bob", "substitutions": {"offer": "coffee"}},
                {"email": "cy@example.org"},
            ],
            "substitutions": {"offer": "water", "shop": "Nephele"},
            // Bare LFs on purpose: they must arrive as CRLF.
            "content": "From: news@example.com\nTo: {{ email }}\nSubject: {{ shop }} for {{ name or 'you' }}\n\nDear {{ name or email }}, have some {{ offer }}.\n",
        }),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["success_count"], 3);
    let messages = wait_for("three deliveries", WAIT_TIMEOUT, || {
        let messages = ws.maildir_messages();
        (messages.len() == 3).then_some(messages)
    });
    for (email, subject, line) in [
        (
            "ann@example.com",
            "Nephele for Ann",
            "Dear Ann, have some tea.",
        ),
        (
            "bob@example.net",
            "Nephele for Bob",
            "Dear Bob, have some coffee.",
        ),
        (
            "cy@example.org",
            "Nephele for you",
            "Dear cy@example.org, have some water.",
        ),
    ] {
        let message = messages
            .iter()
            .find(|m| m.contains(&format!("To: {email}\r\n")))
            .unwrap_or_else(|| panic!("no message to {email} in {messages:?}"));
        assert!(
            message.contains(&format!("Subject: {subject}\r\n")),
            "{message}"
        );
        assert!(
            message.contains(&format!("\r\n\r\n{line}\r\n")),
            "{message}"
        );
        assert!(
            !message.replace("\r\n", "").contains('\n'),
            "bare LF: {message:?}"
        );
    }
    let deliveries = ws.wait_for_records("Delivery", 3);
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert!(deliveries.iter().all(|r| r["response"]["code"] == 250));
}

const PARSE_WITH_PYTHON: &str = r#"
import email, json, sys
from email import policy
msg = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=policy.default)
out = {
    'subject': str(msg['Subject']),
    'from': str(msg['From']),
    'to': str(msg['To']),
    'reply_to': str(msg['Reply-To']),
    'x_campaign': str(msg['X-Campaign']),
    'content_type': msg.get_content_type(),
    'text': msg.get_body(preferencelist=('plain',)).get_content(),
    'html': msg.get_body(preferencelist=('html',)).get_content(),
    'attachments': [
        {'name': part.get_filename(), 'type': part.get_content_type(),
         'data': part.get_payload(decode=True).hex()}
        for part in msg.iter_attachments()
    ],
    'defects': len(msg.defects),
}
print(json.dumps(out))
"#;

#[test]
fn builder_content_with_an_attachment_parses_back() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{POLICY_MAILDIR_QUEUE}"));
    let daemon = ws.start();
    let binary: Vec<u8> = (0u8..=255).collect();
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&binary)
    };
    let reply = inject(
        &daemon,
        &json!({
            "envelope_sender": "news@example.com",
            "recipients": [{"email": "ann@example.com", "name": "Ann Example"}],
            "substitutions": {"month": "May"},
            "content": {
                "subject": "Report for {{ month }}",
                "text_body": "Hello {{ name }}, the {{ month }} report is attached.",
                "html_body": "<p>Hello {{ name }}</p>",
                "from": {"email": "news@example.com", "name": "The News"},
                "reply_to": {"email": "help@example.com"},
                "headers": {"X-Campaign": "report-{{ month }}"},
                "attachments": [
                    {"data": encoded, "content_type": "application/octet-stream",
                     "file_name": "report.bin", "base64": true},
                    {"data": "plain text attachment", "content_type": "text/plain",
                     "file_name": "notes.txt"},
                ],
            },
        }),
        &[],
    );
    assert_eq!(reply.json()["success_count"], 1, "{}", reply.body);
    wait_for("the delivery", WAIT_TIMEOUT, || {
        (ws.maildir_messages().len() == 1).then_some(())
    });
    let file = std::fs::read_dir(ws.dir().join("maildir/new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let script = ws.write("parse.py", PARSE_WITH_PYTHON);
    let output = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        output.status.success(),
        "python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed["subject"], "Report for May");
    assert_eq!(parsed["from"], "The News <news@example.com>");
    assert_eq!(parsed["to"], "Ann Example <ann@example.com>");
    assert_eq!(parsed["reply_to"], "help@example.com");
    assert_eq!(parsed["x_campaign"], "report-May");
    assert_eq!(parsed["content_type"], "multipart/mixed");
    assert_eq!(
        parsed["text"].as_str().unwrap().trim_end(),
        "Hello Ann Example, the May report is attached."
    );
    assert_eq!(
        parsed["html"].as_str().unwrap().trim_end(),
        "<p>Hello Ann Example</p>"
    );
    let attachments = parsed["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{parsed}");
    assert_eq!(attachments[0]["name"], "report.bin");
    assert_eq!(attachments[0]["type"], "application/octet-stream");
    let hex: String = binary.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(attachments[0]["data"], hex);
    assert_eq!(attachments[1]["name"], "notes.txt");
    assert_eq!(
        attachments[1]["data"],
        b"plain text attachment"
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert_eq!(parsed["defects"], 0);
}

#[test]
fn bad_requests_get_4xx_naming_the_problem_and_spool_nothing() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{BLOCKED_QUEUE}"));
    ws.write("blocker", "a file where the maildir's parent should be");
    let daemon = ws.start();
    let good_recipients = json!([{"email": "a@example.com"}]);
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"envelope_sender\": ".into(), 400, "invalid JSON"),
        (
            json!({"envelope_sender": "s@example.com", "content": "x"}).to_string(),
            422,
            "recipients",
        ),
        (
            json!({"envelope_sender": "s@example.com", "recipients": [], "content": "x"})
                .to_string(),
            422,
            "recipients: must not be empty",
        ),
        (
            json!({"envelope_sender": "s@example.com", "recipients": good_recipients,
                   "content": "x", "template_dialect": "Handlebars"})
            .to_string(),
            422,
            "template_dialect",
        ),
        (
            json!({"envelope_sender": "s@example.com", "recipients": good_recipients,
                   "content": "Subject: {{ broken\r\n\r\nx"})
            .to_string(),
            422,
            "content: template error",
        ),
        (
            json!({"envelope_sender": "s@example.com", "recipients": good_recipients,
                   "content": {"subject": "ok", "text_body": "{% for %}"}})
            .to_string(),
            422,
            "content.text_body: template error",
        ),
        (
            json!({"envelope_sender": "s@example.com", "recipients": good_recipients,
                   "content": "x", "extra": 1})
            .to_string(),
            422,
            "extra",
        ),
    ];
    for (body, status, needle) in &cases {
        let reply = curl(
            &daemon.url("/api/inject/v1"),
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ],
        );
        assert_eq!(reply.status, *status, "{body}: {}", reply.body);
        assert!(
            reply.body.contains(needle),
            "{body}: {:?} lacks {needle:?}",
            reply.body
        );
    }
    assert!(ws.records_of("Reception").is_empty());
    // A good request afterwards is spooled: the count below is not blind.
    let good = json!({"envelope_sender": "s@example.com", "recipients": good_recipients,
                      "content": "Subject: x\r\n\r\ny\r\n"});
    assert_eq!(inject(&daemon, &good, &[]).json()["success_count"], 1);
    daemon.stop();
    let daemon = ws.start();
    assert_eq!(
        spooled_at_start(&daemon),
        1,
        "only the good request was spooled"
    );
}

#[test]
fn queue_null_spools_nothing() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}{BLOCKED_QUEUE}
kumo.on('http_message_generated', function(msg)
  if msg:recipient().domain == 'discard.example' then
    msg:set_meta('queue', 'null')
  end
end)"
    ));
    ws.write("blocker", "a file where the maildir's parent should be");
    let daemon = ws.start();
    let reply = inject(
        &daemon,
        &json!({"envelope_sender": "s@example.com",
                "recipients": [{"email": "gone@discard.example"}, {"email": "kept@example.com"}],
                "content": "Subject: x\r\n\r\ny\r\n"}),
        &[],
    );
    assert_eq!(
        reply.json(),
        json!({"success_count": 2, "fail_count": 0, "failed_recipients": [], "errors": []})
    );
    daemon.stop();
    let daemon = ws.start();
    assert_eq!(
        spooled_at_start(&daemon),
        1,
        "the null-queue message was spooled"
    );
    let records = ws.records_of("Reception");
    let null = records
        .iter()
        .find(|r| r["recipient"] == "gone@discard.example")
        .unwrap();
    assert_eq!(null["queue"], "null");
    assert!(ws.records_of("Delivery").is_empty());
}
