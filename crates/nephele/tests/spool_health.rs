//! The spool on a disk that fills up: injection answers `503` with
//! `Retry-After` (never a path), liveness `503`; once space is freed the
//! daemon reopens the store by itself, injection works again without a
//! restart, and every acknowledged message is delivered.

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// A tmpfs this test mounted; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `megabytes` at `path`, or say why not.
    fn mount(path: &Path, megabytes: u32) -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        std::fs::create_dir_all(path).map_err(|err| err.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|err| format!("running mount: {err}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

const POLICY: &str = r#"
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '@DIR@/small/data' }
  kumo.define_spool { name = 'meta', path = '@DIR@/small/meta' }
  kumo.configure_local_logs { log_dir = '@DIR@/logs' }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = '@DIR@/blocker/maildir' },
    retry_interval = '1 second',
    max_retry_interval = '1 second',
  }
end)
"#;

fn message(n: usize) -> serde_json::Value {
    json!({
        "envelope_sender": "s@example.com",
        "recipients": [{"email": format!("r{n}@example.com")}],
        "content": format!("Subject: m{n}\r\n\r\n{}\r\n", "b".repeat(200_000)),
    })
}

fn liveness(daemon: &Daemon) -> u16 {
    curl(&daemon.url("/api/check-liveness/v1"), &[]).status
}

#[test]
fn a_full_disk_is_503_and_recovers_without_a_restart() {
    let ws = Workspace::new(POLICY);
    let tmpfs = match Tmpfs::mount(&ws.dir().join("small"), 24) {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_is_503_and_recovers_without_a_restart: cannot mount a tmpfs ({why})");
            return;
        }
    };
    // Deliveries fail (the Maildir's parent is a file) until the end, so
    // the spool keeps what it gets.
    ws.write("blocker", "a file where a directory should be");
    let daemon = ws.start();
    // Leave a few MB free, then inject until the spool runs out.
    let filler = tmpfs.path.join("filler");
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=17"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for n in 0..200 {
        let reply = inject(&daemon, &message(n), &["-D", "-"]);
        if reply.status == 503 {
            refused = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        acknowledged.push(n);
    }
    let refused = refused.expect("the spool never filled up");
    assert!(
        refused.body.to_ascii_lowercase().contains("retry-after: 5"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("the spool is unavailable"),
        "{}",
        refused.body
    );
    let dir = ws.dir().to_str().unwrap();
    assert!(!refused.body.contains(dir), "a path in {}", refused.body);
    assert!(!refused.body.contains("No space"), "{}", refused.body);
    assert_eq!(liveness(&daemon), 503);
    let again = inject(&daemon, &message(1000), &[]);
    assert_eq!(again.status, 503, "{}", again.body);

    // Free the space: no restart, no request needed to notice.
    std::fs::remove_file(&filler).unwrap();
    wait_for("liveness 200", WAIT_TIMEOUT, || {
        (liveness(&daemon) == 200).then_some(())
    });
    let reply = inject(&daemon, &message(2000), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    acknowledged.push(2000);

    // Every acknowledged message arrives, once.
    std::fs::remove_file(ws.dir().join("blocker")).unwrap();
    let delivered = wait_for("every acknowledged message", WAIT_TIMEOUT * 2, || {
        let messages = ws.messages_in("blocker/maildir");
        (messages.len() >= acknowledged.len()).then_some(messages)
    });
    for n in &acknowledged {
        // After the default X-KumoRef header.
        let subject = format!("\r\nSubject: m{n}\r\n");
        assert_eq!(
            delivered.iter().filter(|m| m.contains(&subject)).count(),
            1,
            "message {n}"
        );
    }
    daemon.stop();
    drop(tmpfs);
}
