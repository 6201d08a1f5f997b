//! The authorized identity reaches the policy: the seed's
//! `http_message_generated` example, and `http_auth` for Basic logins and
//! for trusted hosts without credentials.

mod support;

use serde_json::json;
use support::*;

fn request(recipients: &[&str]) -> serde_json::Value {
    json!({
        "envelope_sender": "noreply@example.com",
        "recipients": recipients.iter().map(|r| json!({"email": r})).collect::<Vec<_>>(),
        "content": "Subject: hello\r\n\r\nbody\r\n",
    })
}

#[test]
fn seed_example_rejects_the_other_user_with_its_error_text() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}
kumo.on('http_message_generated', function(msg)
  local auth = msg:get_meta 'http_auth'
  if auth ~= 'some.one' then
    error 'only some.one is allowed to inject'
  end
end)"
    ));
    let daemon = ws.start();

    let refused = inject(
        &daemon,
        &request(&["b@example.com"]),
        &["-u", "scott:tiger"],
    );
    assert_eq!(refused.status, 200, "{}", refused.body);
    assert_eq!(
        refused.json(),
        json!({
            "success_count": 0, "fail_count": 1,
            "failed_recipients": ["b@example.com"],
            "errors": ["b@example.com: only some.one is allowed to inject"],
        })
    );

    let accepted = inject(
        &daemon,
        &request(&["a@example.com"]),
        &["-u", "some.one:secret"],
    );
    assert_eq!(
        accepted.json(),
        json!({"success_count": 1, "fail_count": 0, "failed_recipients": [], "errors": []})
    );

    // A trusted host without credentials is "127.0.0.1", not some.one.
    let anonymous = inject(&daemon, &request(&["c@example.com"]), &[]);
    assert_eq!(anonymous.json()["fail_count"], 1);

    // Wrong password: the listener refuses before the hook runs.
    let wrong = inject(
        &daemon,
        &request(&["d@example.com"]),
        &["-u", "some.one:nope"],
    );
    assert_eq!(wrong.status, 401);

    let delivered = wait_for("the accepted message", WAIT_TIMEOUT, || {
        let messages = ws.maildir_messages();
        (!messages.is_empty()).then_some(messages)
    });
    assert_eq!(delivered.len(), 1);
    let receptions = ws.wait_for_records("Reception", 1);
    assert_eq!(receptions.len(), 1, "{receptions:?}");
    assert_eq!(receptions[0]["recipient"], "a@example.com");
}

#[test]
fn kumo_reject_fails_only_its_recipient() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}
kumo.on('http_message_generated', function(msg)
  if msg:recipient().user == 'blocked' then
    kumo.reject(550, 'recipient ' .. tostring(msg:recipient()) .. ' is blocked')
  end
end)"
    ));
    let daemon = ws.start();
    let reply = inject(
        &daemon,
        &request(&[
            "ok@example.com",
            "blocked@example.com",
            "also-ok@example.com",
        ]),
        &[],
    );
    assert_eq!(
        reply.json(),
        json!({
            "success_count": 2, "fail_count": 1,
            "failed_recipients": ["blocked@example.com"],
            "errors": ["blocked@example.com: 550 recipient blocked@example.com is blocked"],
        })
    );
    wait_for("two deliveries", WAIT_TIMEOUT, || {
        (ws.maildir_messages().len() == 2).then_some(())
    });
}

#[test]
fn http_auth_is_the_basic_user_or_the_trusted_peer_address() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}
kumo.on('http_message_generated', function(msg, auth_info)
  msg:append_header('X-Http-Auth', msg:get_meta 'http_auth')
  msg:append_header('X-Protocol', msg:get_meta 'reception_protocol')
  msg:append_header('X-Received-From', msg:get_meta 'received_from')
  msg:append_header('X-Groups', table.concat(auth_info.groups, ','))
end)"
    ));
    let daemon = ws.start();
    let as_scott = request(&["scott-sent@example.com"]);
    assert_eq!(
        inject(&daemon, &as_scott, &["-u", "scott:tiger"]).json()["success_count"],
        1
    );
    let anonymous = request(&["anonymous@example.com"]);
    assert_eq!(inject(&daemon, &anonymous, &[]).json()["success_count"], 1);

    let messages = wait_for("two deliveries", WAIT_TIMEOUT, || {
        let messages = ws.maildir_messages();
        (messages.len() == 2).then_some(messages)
    });
    ws.wait_for_records("Reception", 2);
    let find = |to: &str| {
        let records = ws.records_of("Reception");
        let record = records
            .iter()
            .find(|r| r["recipient"] == to)
            .unwrap_or_else(|| panic!("no Reception for {to}: {records:?}"))
            .clone();
        let id_header = messages
            .iter()
            .find(|m| {
                m.contains(&format!(
                    "X-Http-Auth: {}",
                    record["meta"]["http_auth"].as_str().unwrap()
                ))
            })
            .unwrap_or_else(|| panic!("no message with {to}'s http_auth"))
            .clone();
        (record, id_header)
    };
    let (scott, scott_msg) = find("scott-sent@example.com");
    assert_eq!(scott["meta"]["http_auth"], "scott");
    assert!(scott_msg.contains("X-Http-Auth: scott\r\n"), "{scott_msg}");
    let (anon, anon_msg) = find("anonymous@example.com");
    assert_eq!(anon["meta"]["http_auth"], "127.0.0.1");
    assert!(
        anon_msg.contains("X-Http-Auth: 127.0.0.1\r\n"),
        "{anon_msg}"
    );
    for (record, msg) in [(&scott, &scott_msg), (&anon, &anon_msg)] {
        assert_eq!(record["meta"]["reception_protocol"], "HTTP");
        assert_eq!(record["meta"]["received_from"], "127.0.0.1");
        assert!(msg.contains("X-Protocol: HTTP\r\n"), "{msg}");
        assert!(
            msg.contains("X-Groups: kumomta:http-listener-trusted-ip\r\n"),
            "{msg}"
        );
    }
}
