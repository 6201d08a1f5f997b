//! Passwords in production on the HTTP side: `curl -u` against nephele
//! with credential files whose hashes were made by third-party tools
//! (htpasswd, mkpasswd, Python argon2/bcrypt), the shipped example policy,
//! edits while running, and `nephele hash-password`.

#[path = "../../proxy-server/tests/support/hashes.rs"]
mod hashes;
mod support;

use hashes::*;
use serde_json::json;
use support::*;

fn request() -> serde_json::Value {
    json!({
        "envelope_sender": "noreply@example.com",
        "recipients": [{"email": "a@example.com"}],
        "content": "Subject: hello\r\n\r\nbody\r\n",
    })
}

fn inject_as(daemon: &Daemon, user: &str, password: &str) -> HttpReply {
    inject(daemon, &request(), &["-u", &format!("{user}:{password}")])
}

#[test]
fn the_example_policy_checks_tool_made_hashes_and_groups() {
    let ws = Workspace::new("-- unused: the example policy runs\n");
    let users = format!(
        "some.one:{}:injectors\nscott:{}\ncarol:{}:injectors\npyb:{}:injectors\n",
        htpasswd_bcrypt("some.one", "one-pw"),
        python_argon2id("scott-pw"),
        mkpasswd_sha512("carol-pw"),
        python_bcrypt("pyb-pw"),
    );
    let credentials = ws.dir().join("users");
    replace_file(&credentials, &users);
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/nephele-passwords.lua"
    );
    let dir = ws.dir().to_str().unwrap().to_owned();
    let daemon = Daemon::start_with_env(
        std::path::Path::new(example),
        &[],
        &[
            ("NEPHELE_DIR", &dir),
            ("NEPHELE_LISTEN", "127.0.0.1:0"),
            ("NEPHELE_CREDENTIALS", credentials.to_str().unwrap()),
        ],
    );
    for (user, password) in [
        ("some.one", "one-pw"),
        ("carol", "carol-pw"),
        ("pyb", "pyb-pw"),
    ] {
        let reply = inject_as(&daemon, user, password);
        assert_eq!(reply.status, 200, "{user}: {}", reply.body);
        assert_eq!(reply.json()["success_count"], 1, "{user}: {}", reply.body);
    }
    // A valid login outside the group: the policy refuses the message.
    let scott = inject_as(&daemon, "scott", "scott-pw");
    assert_eq!(scott.status, 200, "{}", scott.body);
    assert_eq!(scott.json()["fail_count"], 1);
    assert!(scott.body.contains("group injectors"), "{}", scott.body);
    for (user, password) in [("some.one", "one-px"), ("scott", ""), ("nobody", "one-pw")] {
        assert_eq!(
            inject_as(&daemon, user, password).status,
            401,
            "{user}:{password}"
        );
    }
    assert!(!daemon.output().contains("one-pw"), "a password was logged");
}

#[test]
fn edits_apply_while_running_and_a_removed_user_is_refused_despite_the_cache() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}{POLICY_MAILDIR_QUEUE}
USERS = kumo.aaa.load_credentials('@DIR@/users', {{ check_interval = '0s' }})
kumo.on('http_server_validate_auth_basic', function(user, password)
  return USERS:check(user, password, 'HttpBasicAuth')
end)"
    ));
    let (alice, bob) = (
        python_argon2id("alice-pw"),
        htpasswd_bcrypt("bob", "bob-pw"),
    );
    let path = ws.dir().join("users");
    replace_file(&path, &format!("alice:{alice}\n"));
    let daemon = ws.start();
    assert_eq!(inject_as(&daemon, "alice", "alice-pw").status, 200);
    assert_eq!(inject_as(&daemon, "bob", "bob-pw").status, 401);

    replace_file(&path, &format!("alice:{alice}\nbob:{bob}\n"));
    assert_eq!(
        inject_as(&daemon, "bob", "bob-pw").status,
        200,
        "{}",
        daemon.output()
    );

    replace_file(
        &path,
        &format!("alice:{alice}\nbob:{bob}\nbroken:$argon2id$v=19\n"),
    );
    assert_eq!(inject_as(&daemon, "bob", "bob-pw").status, 200);
    let line = daemon.wait_for_line("credential file not reloaded", WAIT_TIMEOUT);
    assert!(line.contains("line 3"), "{line}");
    assert!(
        !daemon.output().contains(&alice[alice.len() - 20..]),
        "a hash was logged"
    );

    // alice's verdict is cached for a minute; the reload empties it.
    replace_file(&path, &format!("bob:{bob}\n"));
    assert_eq!(inject_as(&daemon, "alice", "alice-pw").status, 401);
    assert_eq!(inject_as(&daemon, "bob", "bob-pw").status, 200);
}

#[test]
fn hash_password_subcommand() {
    use std::io::Write;
    let mut child = std::process::Command::new(NEPHELE_BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start nephele hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"n3phele-pw\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap();
    assert!(python_verifies_argon2(hash.trim(), "n3phele-pw"), "{hash}");
}
