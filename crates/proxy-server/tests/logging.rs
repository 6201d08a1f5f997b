//! No password reaches any log line, at any level, whatever the handler
//! does with it.

mod support;

use support::*;

const GOOD_PASSWORD: &str = "Zq9-correct-PW-7731";
const WRONG_PASSWORD: &str = "Zq9-wrong-PW-4410";
const RAISE_PASSWORD: &str = "Zq9-raise-PW-5523";
const STRING_PASSWORD: &str = "Zq9-string-PW-8862";

const HANDLER: &str = r#"
  if username == 'raiser' then
    error('policy handler failed on purpose')
  end
  if username == 'stringer' then
    return 'not a valid result'
  end
  return username == 'loguser' and password == 'Zq9-correct-PW-7731'
"#;

/// Every form a password could leak in: the text, its bytes as hex, and
/// its bytes as Rust prints a `&[u8]` / `Vec<u8>`.
fn leak_forms(password: &str) -> Vec<String> {
    let bytes = password.as_bytes();
    vec![
        password.to_string(),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.iter().map(|b| format!("{b:02X}")).collect(),
        format!("{bytes:?}"),
        format!("{bytes:02x?}"),
    ]
}

fn login_status(proxy: &RunningProxy, user: &str, pass: &str) -> [u8; 2] {
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    login(&mut stream, user.as_bytes(), pass.as_bytes())
}

#[test]
fn no_password_in_any_log_line_at_trace_level() {
    let proxy = ProxyCommand::with_policy(&policy("", Some(HANDLER)))
        .env("KUMO_PROXY_LOG", "trace")
        .start();
    let echo = spawn_echo_server("127.0.0.1:0");

    let (mut stream, _) = open_session(
        proxy.addr,
        Some(("loguser", GOOD_PASSWORD)),
        &ip_target(echo),
    );
    assert_echo_with_half_close(&mut stream, b"logged session");
    assert_eq!(login_status(&proxy, "loguser", WRONG_PASSWORD), [1, 1]);
    assert_eq!(login_status(&proxy, "raiser", RAISE_PASSWORD), [1, 1]);
    assert_eq!(login_status(&proxy, "stringer", STRING_PASSWORD), [1, 1]);

    // Stop the proxy so every buffered line is flushed before the grep.
    let finished = proxy.terminate();
    let all_output = format!("{}\n{}", finished.stderr, finished.stdout);
    assert!(
        all_output.lines().count() > 5,
        "trace level should log something about these sessions:\n{all_output}"
    );
    for password in [
        GOOD_PASSWORD,
        WRONG_PASSWORD,
        RAISE_PASSWORD,
        STRING_PASSWORD,
    ] {
        for form in leak_forms(password) {
            let leaks: Vec<&str> = all_output.lines().filter(|l| l.contains(&form)).collect();
            assert!(
                leaks.is_empty(),
                "password {password:?} appears (as {form:?}) in log lines:\n{}",
                leaks.join("\n")
            );
        }
    }
    // The failures themselves are still worth a log line.
    assert!(
        all_output.contains("policy handler failed on purpose"),
        "the handler's error should be logged (without the password):\n{all_output}"
    );
}

#[test]
fn no_password_in_logs_at_default_level() {
    let proxy = RunningProxy::start(&policy("", Some(HANDLER)));
    assert_eq!(login_status(&proxy, "loguser", GOOD_PASSWORD), [1, 0]);
    assert_eq!(login_status(&proxy, "loguser", WRONG_PASSWORD), [1, 1]);
    assert_eq!(login_status(&proxy, "raiser", RAISE_PASSWORD), [1, 1]);
    let finished = proxy.terminate();
    let all_output = format!("{}\n{}", finished.stderr, finished.stdout);
    for password in [GOOD_PASSWORD, WRONG_PASSWORD, RAISE_PASSWORD] {
        for form in leak_forms(password) {
            assert!(
                !all_output.contains(&form),
                "password {password:?} appears (as {form:?}) in:\n{all_output}"
            );
        }
    }
}
