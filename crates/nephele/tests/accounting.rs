//! The accounting log of `kumo.aaa` in nephele: HTTP logins are recorded
//! without their passwords, and SIGTERM finishes the open zstd segment so
//! it can be read whole.

mod support;

use std::io::Read;
use support::*;

const POLICY_ACCOUNTING: &str = r#"
kumo.aaa.configure_acct_log { log_dir = '@DIR@/acct', max_segment_duration = '1 hour' }
"#;

/// The decompressed text of every segment under `acct/`, in name order.
fn accounting_text(ws: &Workspace) -> String {
    let mut paths: Vec<_> = std::fs::read_dir(ws.dir().join("acct"))
        .expect("the accounting directory")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no accounting segment");
    let mut all = String::new();
    for path in paths {
        zstd::Decoder::new(std::fs::File::open(&path).expect("open segment"))
            .expect("zstd decoder")
            .read_to_string(&mut all)
            .unwrap_or_else(|err| panic!("{} is not a finished segment: {err}", path.display()));
    }
    all
}

#[test]
fn sigterm_finishes_the_accounting_segment_with_logins_and_no_passwords() {
    let ws = Workspace::new(&format!(
        "{POLICY_INIT}{POLICY_AUTH}{POLICY_MAILDIR_QUEUE}{POLICY_ACCOUNTING}"
    ));
    let daemon = ws.start();
    let body = serde_json::json!({
        "envelope_sender": "s@example.com",
        "recipients": [{"email": "r@example.com"}],
        "content": "Subject: hi\r\n\r\nbody\r\n",
    });
    let accepted = inject(&daemon, &body, &["-u", "scott:tiger"]);
    assert_eq!(accepted.json()["success_count"], 1, "{}", accepted.body);
    let refused = inject(&daemon, &body, &["-u", "scott:Wrong-Pass-9"]);
    assert_eq!(refused.status, 401, "{}", refused.body);
    daemon.stop();

    let text = accounting_text(&ws);
    for secret in ["tiger", "Wrong-Pass-9"] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
    let logins: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON record"))
        .filter(|record: &serde_json::Value| record["type"] == "Authentication")
        .collect();
    assert_eq!(logins.len(), 2, "{text}");
    assert_eq!(logins[0]["success"], true);
    assert_eq!(logins[0]["attempted_identity"]["identity"], "scott");
    assert_eq!(logins[0]["attempted_identity"]["context"], "HttpBasicAuth");
    assert_eq!(logins[1]["success"], false);
}
