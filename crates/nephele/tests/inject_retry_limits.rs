//! `Idempotency-Key` (one delivery per key, across a restart too; a reused
//! key with another body is refused) and the per-identity limits of
//! `http_server_get_injection_limits` (cached, re-read on an epoch bump,
//! `429` with `Retry-After`, fail closed on a bad answer).

mod support;

use serde_json::json;
use std::path::Path;
use support::*;

/// curl's answer with the response headers (lower-cased names).
struct Answer {
    reply: HttpReply,
    headers: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

fn post(daemon: &Daemon, body: &serde_json::Value, extra: &[&str]) -> Answer {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let path = headers.path().to_str().unwrap().to_owned();
    let mut args = vec!["-D", &path];
    args.extend_from_slice(extra);
    let reply = inject(daemon, body, &args);
    Answer {
        reply,
        headers: std::fs::read_to_string(headers.path()).unwrap(),
    }
}

fn body(recipients: &[&str], text: &str) -> serde_json::Value {
    json!({
        "envelope_sender": "s@example.com",
        "recipients": recipients.iter().map(|r| json!({"email": r})).collect::<Vec<_>>(),
        "content": format!("Subject: retry\n\n{text}"),
    })
}

#[test]
fn a_retried_request_is_delivered_once_even_across_a_restart() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}"));
    let daemon = ws.start();
    let first_body = body(&["a@example.com"], "once");
    let key = ["-u", "scott:tiger", "-H", "Idempotency-Key: order-42"];
    let first = post(&daemon, &first_body, &key);
    assert_eq!(first.reply.status, 200, "{}", first.reply.body);
    let again = post(&daemon, &first_body, &key);
    assert_eq!(again.reply.status, 200);
    assert_eq!(again.reply.body, first.reply.body);
    // The same key from another identity is another request.
    let other = post(
        &daemon,
        &first_body,
        &["-u", "some.one:secret", "-H", "Idempotency-Key: order-42"],
    );
    assert_eq!(other.reply.status, 200, "{}", other.reply.body);
    // A reused key with another body.
    let reused = post(&daemon, &body(&["a@example.com"], "twice"), &key);
    assert_eq!(reused.reply.status, 422, "{}", reused.reply.body);
    assert!(
        reused.reply.body.contains("Idempotency-Key"),
        "{}",
        reused.reply.body
    );
    let bad = post(&daemon, &first_body, &["-H", "Idempotency-Key: a b"]);
    assert_eq!(bad.reply.status, 400, "{}", bad.reply.body);
    wait_for("two deliveries", WAIT_TIMEOUT, || {
        (ws.maildir_messages().len() == 2).then_some(())
    });
    let output = daemon.output();
    assert!(!output.contains("order-42"), "the key was logged: {output}");
    daemon.kill();

    let daemon = ws.start();
    let after = post(&daemon, &first_body, &key);
    assert_eq!(after.reply.status, 200);
    assert_eq!(after.reply.body, first.reply.body);
    // Concurrent first uses of a new key: one is processed, the others
    // replay it or are told to retry; none spools a second copy.
    let concurrent = body(&["c@example.com"], "concurrent");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    post(
                        &daemon,
                        &concurrent,
                        &["-u", "scott:tiger", "-H", "Idempotency-Key: burst"],
                    )
                    .reply
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    // One more injection: its record is written after every earlier one
    // (the log writer keeps order), so the count below is final.
    let last = post(&daemon, &body(&["z@example.com"], "last"), &[]);
    assert_eq!(last.reply.status, 200, "{}", last.reply.body);
    let receptions = wait_for("the last reception", WAIT_TIMEOUT, || {
        let records = ws.records_of("Reception");
        records
            .iter()
            .any(|r| r["recipient"] == "z@example.com")
            .then_some(records)
    });
    let to = |rcpt: &str| receptions.iter().filter(|r| r["recipient"] == rcpt).count();
    assert_eq!(to("a@example.com"), 2, "once per identity");
    assert_eq!(to("c@example.com"), 1, "concurrent duplicates spooled once");
    let metrics = curl(&daemon.url("/metrics"), &[]).body;
    let replayed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nephele_injection_requests_total{outcome=\"replayed\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(replayed >= 1, "{metrics}");
    daemon.stop();
}

/// Limits for `scott`, counting the handler's calls in `@DIR@/calls`; a
/// table with an unknown key for `some.one`.
const POLICY_LIMITS: &str = r#"
kumo.on('http_server_get_injection_limits', function(auth_info)
  local f = io.open('@DIR@/calls', 'a')
  f:write(auth_info.identities[1].identity, '\n')
  f:close()
  if auth_info.identities[1].identity == 'some.one' then
    return { max_message_rate = '5/hour', max_recipient_per_request = 2 }
  end
  return { max_message_rate = '3/hour', max_recipients_per_request = 2 }
end)
"#;

fn calls(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("calls"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[test]
fn identity_limits_are_cached_enforced_and_fail_closed() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}{POLICY_LIMITS}"
    ));
    let daemon = ws.start();
    let scott = ["-u", "scott:tiger"];
    let many = post(
        &daemon,
        &body(&["a@x.com", "b@x.com", "c@x.com"], "3"),
        &scott,
    );
    assert_eq!(many.reply.status, 413, "{}", many.reply.body);
    assert!(
        many.reply.body.contains("max_recipients_per_request (2)"),
        "{}",
        many.reply.body
    );
    let two = post(&daemon, &body(&["a@x.com", "b@x.com"], "2"), &scott);
    assert_eq!(two.reply.status, 200, "{}", two.reply.body);
    let one = post(&daemon, &body(&["c@x.com"], "1"), &scott);
    assert_eq!(one.reply.status, 200, "{}", one.reply.body);
    let past = post(&daemon, &body(&["d@x.com"], "0"), &scott);
    assert_eq!(past.reply.status, 429, "{}", past.reply.body);
    assert!(
        past.reply.body.contains("max_message_rate"),
        "{}",
        past.reply.body
    );
    let retry_after: u64 = past
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(calls(ws.dir()), 1, "the answer is cached per identity");

    // Fail closed: an unknown key refuses the request, naming no secret.
    let bad = post(
        &daemon,
        &body(&["a@x.com"], "x"),
        &["-u", "some.one:secret"],
    );
    assert_eq!(bad.reply.status, 500, "{}", bad.reply.body);
    assert!(
        bad.reply.body.contains("policy error"),
        "{}",
        bad.reply.body
    );
    daemon.wait_for_line("max_recipient_per_request", WAIT_TIMEOUT);
    assert!(!daemon.output().contains("secret"));

    // A reload forgets the cached answers.
    let bump = curl(&daemon.url("/api/admin/bump-config-epoch"), &["-X", "POST"]);
    assert_eq!(bump.status, 200, "{}", bump.body);
    let before = calls(ws.dir());
    let _ = post(&daemon, &body(&["e@x.com"], "e"), &scott);
    assert_eq!(calls(ws.dir()), before + 1, "re-read after the bump");
    daemon.stop();
}

/// `max_idempotency_records`: past it a new key is refused with `503` and
/// `Retry-After`, spooling nothing, while a repeat of a held key still
/// gets its answer and requests without a key go on.
#[test]
fn new_keys_past_max_idempotency_records_are_refused() {
    let init = POLICY_INIT.replace(
        "kumo.start_http_listener",
        "kumo.configure_injection { max_idempotency_records = 1 }\n  kumo.start_http_listener",
    );
    let ws = Workspace::new(&format!("{init}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}"));
    let daemon = ws.start();
    let first_body = body(&["a@example.com"], "kept");
    let first_key = ["-u", "scott:tiger", "-H", "Idempotency-Key: first"];
    let first = post(&daemon, &first_body, &first_key);
    assert_eq!(first.reply.status, 200, "{}", first.reply.body);
    let full = post(
        &daemon,
        &body(&["b@example.com"], "refused"),
        &["-u", "scott:tiger", "-H", "Idempotency-Key: second"],
    );
    full.reply.assert_refused(503, "max_idempotency_records");
    assert_eq!(full.header("retry-after").as_deref(), Some("60"));
    let again = post(&daemon, &first_body, &first_key);
    assert_eq!(again.reply.body, first.reply.body);
    let unkeyed = post(
        &daemon,
        &body(&["c@example.com"], "no key"),
        &["-u", "scott:tiger"],
    );
    assert_eq!(unkeyed.reply.status, 200, "{}", unkeyed.reply.body);
    wait_for("two deliveries", WAIT_TIMEOUT, || {
        (ws.maildir_messages().len() == 2).then_some(())
    });
    let delivered = ws.maildir_messages().join("\n");
    assert!(
        !delivered.contains("refused"),
        "the refused request was delivered"
    );
    daemon.stop();
}
