//! The injection API as documented upstream (KumoMTA's
//! `reference/http/kumod/api_inject_v1_post.md` and its schemas): the
//! documents' example bodies posted unchanged (after fixing one trailing
//! comma), their documented output checked byte for byte, trace headers,
//! per-recipient failures and the template dialects.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::*;

/// A policy that also stores a per-test marker so the supplemental header
/// can include a meta value the policy set.
const POLICY_TAG: &str = r#"
kumo.on('http_message_generated', function(msg)
  msg:set_meta('tenant', 'acme')
end)
"#;

fn workspace() -> Workspace {
    Workspace::new(&format!("{POLICY_INIT}{POLICY_MAILDIR_QUEUE}{POLICY_TAG}"))
}

fn delivered(ws: &Workspace, count: usize) -> Vec<String> {
    wait_for(&format!("{count} deliveries"), WAIT_TIMEOUT, || {
        let messages = ws.maildir_messages();
        (messages.len() >= count).then_some(messages)
    })
}

fn post(daemon: &Daemon, body: &str) -> HttpReply {
    curl(
        &daemon.url("/api/inject/v1"),
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
    )
}

/// The documents' first example has a trailing comma after the recipient's
/// `email`; everything else is as published.
const DOC_BASIC: &str = r#"{
    "envelope_sender": "noreply@example.com",
    "content": "Subject: hello\n\nHello there",
    "recipients": [
        {
            "email": "recipient@example.com"
        }
    ]
}"#;

const DOC_TEMPLATE: &str = r#"{
    "envelope_sender": "noreply@example.com",
    "content": "To: \"{{ name }}\" <{{ email }}>\nSubject: hello\n\nHello {{ name }}!",
    "recipients": [
        {
            "email": "recipient@example.com",
            "name": "John Smith"
        }
    ]
}"#;

const DOC_SCHEMA_EXAMPLE: &str = r#"{
  "content": "From: user@example.com\nSubject: Hello\n\nHello there",
  "deferred_generation": false,
  "deferred_spool": false,
  "envelope_sender": "some.id@bounces.sender-example.com",
  "recipients": [
    {
      "email": "john.smith@mailbox-example.com",
      "metadata": {
        "campaign_id": "promo-2026-q2",
        "user_segment": "premium"
      },
      "name": "John Smith",
      "substitutions": {
        "age": 42,
        "gender": "male"
      }
    }
  ],
  "substitutions": {
    "campaign_title": "Fall Campaign"
  },
  "template_dialect": "Jinja",
  "trace_headers": {
    "header_name": "string",
    "include_meta_names": [
      "string"
    ],
    "received_header": false,
    "supplemental_header": false
  }
}"#;

#[test]
fn the_documented_examples_give_the_documented_messages() {
    let ws = workspace();
    let daemon = ws.start();

    let reply = post(&daemon, DOC_BASIC);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The documented response, key for key.
    assert_eq!(
        reply.json(),
        json!({"success_count": 1, "fail_count": 0, "failed_recipients": [], "errors": []})
    );
    let messages = delivered(&ws, 1);
    let reference = kumo_ref_header("recipient@example.com");
    assert_eq!(
        messages[0],
        format!("{reference}Subject: hello\r\n\r\nHello there")
    );

    let reply = post(&daemon, DOC_TEMPLATE);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let messages = delivered(&ws, 2);
    // The document's output, after the default supplemental header.
    let expected = format!(
        "{reference}To: \"John Smith\" <recipient@example.com>\r\nSubject: hello\r\n\r\nHello John Smith!"
    );
    assert!(messages.contains(&expected), "{messages:#?}");

    let reply = post(&daemon, DOC_SCHEMA_EXAMPLE);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["success_count"], 1);
    let messages = delivered(&ws, 3);
    // supplemental_header = false: the content exactly.
    let expected = "From: user@example.com\r\nSubject: Hello\r\n\r\nHello there".to_owned();
    assert!(messages.contains(&expected), "{messages:#?}");
    // recipients[].metadata is the message's meta `extra`.
    let receptions = ws.wait_for_records("Reception", 3);
    let john = receptions
        .iter()
        .find(|r| r["recipient"] == "john.smith@mailbox-example.com")
        .expect("reception of the schema example");
    assert_eq!(
        john["meta"]["extra"],
        json!({"campaign_id": "promo-2026-q2", "user_segment": "premium"})
    );
    daemon.stop();
}

/// Parse the delivered builder message with Python's email package.
const PARSE_PARTS: &str = r#"
import email, json, sys
from email import policy
msg = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=policy.default)
def tree(part):
    if part.is_multipart():
        return {part.get_content_type(): [tree(p) for p in part.iter_parts()]}
    return [part.get_content_type(), part.get('Content-ID'), part.get_filename(),
            part.get_content_disposition(), part.get_payload(decode=True).hex()]
print(json.dumps({'to': msg.get_all('To'), 'from': str(msg['From']), 'reply_to': str(msg['Reply-To']),
                  'tenant': msg['X-Tenant'], 'subject': msg['Subject'], 'tree': tree(msg),
                  'defects': len(msg.defects)}))
"#;

#[test]
fn the_documented_builder_example_makes_amp_and_inline_parts() {
    let ws = workspace();
    let daemon = ws.start();
    // The Content schema's example, as published.
    let content: Value = serde_json::from_str(
        r#"{
  "amp_html_body": "<!doctype html><html amp4email>...</html>",
  "attachments": [
    {
      "base64": true,
      "content_id": "my-image",
      "content_type": "image/gif",
      "data": "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",
      "file_name": "pixel.gif"
    }
  ],
  "from": {
    "email": "sales@sender-example.com",
    "name": "Sales"
  },
  "headers": {
    "X-Tenant": "MyTenant"
  },
  "html_body": "<p>This is the <b>HTML</b> part</p>",
  "reply_to": {
    "email": "sales@sender-example.com",
    "name": "Sales"
  },
  "subject": "string",
  "text_body": "This is the plain text part"
}"#,
    )
    .unwrap();
    let body = json!({
        "envelope_sender": "noreply@example.com",
        "recipients": [{"email": "john.smith@mailbox-example.com", "name": "John Smith"}],
        "content": content,
    });
    let reply = inject(&daemon, &body, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    delivered(&ws, 1);
    let file = std::fs::read_dir(ws.dir().join("maildir/new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let output = std::process::Command::new("/usr/bin/python3")
        .args(["-c", PARSE_PARTS])
        .arg(&file)
        .output()
        .expect("python3");
    assert!(output.status.success(), "{output:?}");
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed["defects"], 0, "{parsed}");
    assert_eq!(
        parsed["to"],
        json!(["John Smith <john.smith@mailbox-example.com>"])
    );
    let raw = std::fs::read_to_string(&file).unwrap();
    assert!(
        raw.contains("\r\nTo: \"John Smith\" <john.smith@mailbox-example.com>\r\n"),
        "{raw}"
    );
    assert_eq!(parsed["from"], "Sales <sales@sender-example.com>");
    assert_eq!(parsed["tenant"], "MyTenant");
    assert_eq!(parsed["subject"], "string");
    let gif: String = base64::engine::general_purpose::STANDARD
        .decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        parsed["tree"],
        json!({"multipart/related": [
            {"multipart/alternative": [
                ["text/plain", null, null, null, hex("This is the plain text part")],
                ["text/x-amp-html", null, null, null, hex("<!doctype html><html amp4email>...</html>")],
                ["text/html", null, null, null, hex("<p>This is the <b>HTML</b> part</p>")],
            ]},
            ["image/gif", "<my-image>", "pixel.gif", "inline", gif],
        ]}),
        "{parsed}"
    );
    daemon.stop();
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn one_bad_recipient_fails_alone() {
    let ws = workspace();
    let daemon = ws.start();
    let reply = inject(
        &daemon,
        &json!({
            "envelope_sender": "s@example.com",
            "recipients": [
                {"email": "a@example.com"},
                {"email": "not-an-address"},
                {"email": "c@example.com\r\nBcc: x@example.com"},
                {"email": "d@example.com", "name": "D"},
            ],
            "content": "Subject: hi\n\nfor {{ email }}",
        }),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["success_count"], 2, "{answer}");
    assert_eq!(answer["fail_count"], 2, "{answer}");
    assert_eq!(
        answer["failed_recipients"],
        json!(["not-an-address", "c@example.com\r\nBcc: x@example.com"])
    );
    let errors = answer["errors"].as_array().unwrap();
    assert!(
        errors[0].as_str().unwrap().starts_with("not-an-address: "),
        "{answer}"
    );
    assert!(
        errors[1].as_str().unwrap().contains("control characters"),
        "{answer}"
    );
    let messages = delivered(&ws, 2);
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().any(|m| m.ends_with("for a@example.com")));
    assert!(messages.iter().any(|m| m.ends_with("for d@example.com")));
    daemon.stop();
}

#[test]
fn dialects_trace_headers_and_to_suppression() {
    let ws = workspace();
    let daemon = ws.start();
    let refused = inject(
        &daemon,
        &json!({"envelope_sender": "s@example.com", "recipients": [{"email": "a@example.com"}],
                "content": "x", "template_dialect": "Handlebars"}),
        &[],
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("template_dialect")
            && refused.body.contains("\"Handlebars\" is not implemented"),
        "{}",
        refused.body
    );
    let reply = inject(
        &daemon,
        &json!({"envelope_sender": "s@example.com",
                "recipients": [{"email": "static@example.com", "name": "S"}],
                "template_dialect": "Static",
                "trace_headers": {"supplemental_header": false},
                "content": "Subject: {{ name }}\n\n{% if %}"}),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = inject(
        &daemon,
        &json!({"envelope_sender": "s@example.com",
                "recipients": [{"email": "traced@example.com", "name": "T"}],
                "trace_headers": {"received_header": true, "header_name": "X-Ref",
                                  "include_meta_names": ["tenant", "absent"]},
                "content": {"headers": {"To": "list@example.com"}, "text_body": "t"}}),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let messages = delivered(&ws, 2);
    assert!(
        messages.contains(&"Subject: {{ name }}\r\n\r\n{% if %}".to_owned()),
        "{messages:#?}"
    );
    let traced = messages
        .iter()
        .find(|m| m.contains("traced@example.com"))
        .expect("the traced message");
    let payload = json!({"_@_": "\\_/", "recipient": "traced@example.com", "tenant": "acme"});
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
    // Folded at 78 characters of value, with tab continuation lines.
    let unfolded = traced.replacen("\r\n\t", "", 1);
    assert!(
        unfolded.starts_with(&format!(
            "X-Ref: {encoded}\r\nReceived: from example.com (127.0.0.1)\r\n"
        )),
        "{traced}"
    );
    assert!(
        traced.contains("with HTTP id ") && traced.contains(" for <traced@example.com>;\r\n"),
        "{traced}"
    );
    let (head, _) = traced.split_once("\r\n\r\n").unwrap();
    assert_eq!(head.matches("\r\nTo: ").count(), 1, "{head}");
    assert!(head.contains("\r\nTo: list@example.com\r\n"), "{head}");
    daemon.stop();
}
