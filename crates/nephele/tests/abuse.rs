//! Requests an attacker with a login would send: templates that generate
//! without end, too many recipients, renders that burn their fuel while
//! liveness is probed, and control characters meant to end the header
//! block. Each is refused whole, nothing of it is spooled, and the daemon
//! stays responsive and within its memory.

mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// A queue that delivers into `@DIR@/maildir`.
const LIMITED: &str = r#"
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '@DIR@/spool/data' }
  kumo.define_spool { name = 'meta', path = '@DIR@/spool/meta' }
  kumo.configure_local_logs { log_dir = '@DIR@/logs' }
  kumo.configure_injection { render_timeout = '30 seconds', render_threads = 1 }
  kumo.start_http_listener { listen = '127.0.0.1:0', request_timeout = '3 seconds' }
end)
"#;

fn workspace() -> Workspace {
    workspace_with(LIMITED)
}

fn workspace_with(init: &str) -> Workspace {
    Workspace::new(&format!(
        "local kumo = require 'kumo'\n{init}{POLICY_MAILDIR_QUEUE}"
    ))
}

fn message_to(recipients: Vec<Value>, content: Value) -> Value {
    json!({"envelope_sender": "s@example.com", "recipients": recipients, "content": content})
}

fn one(email: &str) -> Vec<Value> {
    vec![json!({ "email": email })]
}

/// Inject a good message to `email`; it must be accepted and become the
/// `delivered`th delivery.
fn deliver_good_message(ws: &Workspace, daemon: &Daemon, email: &str, delivered: usize) {
    let reply = inject(
        daemon,
        &message_to(one(email), json!("Subject: ok\r\n\r\nfine\r\n")),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    ws.wait_for_records("Delivery", delivered);
}

/// After a refusal, the daemon still works and only a later good message
/// was spooled and delivered.
fn only_good_messages_are_delivered(ws: &Workspace, daemon: &Daemon) {
    deliver_good_message(ws, daemon, "good@example.com", 1);
    let receptions = ws.records_of("Reception");
    assert_eq!(
        receptions.len(),
        1,
        "something else was spooled: {receptions:?}"
    );
    assert_eq!(receptions[0]["recipient"], "good@example.com");
}

/// Under `prlimit --as` (1.5 GiB of address space) so that an unbounded
/// render (the issue's template makes 3 GB) would abort the daemon.
fn start_bounded(ws: &Workspace) -> Daemon {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--as={}", 1536u64 * 1024 * 1024))
        .arg("--")
        .arg(NEPHELE_BIN)
        .arg("--policy")
        .arg(ws.dir().join("policy.lua"))
        // Fewer malloc arenas: each reserves 64 MiB of address space.
        .env("MALLOC_ARENA_MAX", "2");
    Daemon::start_command(command)
}

#[test]
fn generating_past_a_limit_is_refused_whole_with_413() {
    let ws = workspace();
    let mut daemon = start_bounded(&ws);
    // The issue's 150-byte template: 30 strings of 100 MB.
    let bomb = inject(
        &daemon,
        &message_to(
            one("a@example.com"),
            json!("{% for i in range(30) %}{{ \"x\" * 100000000 }}{% endfor %}"),
        ),
        &[],
    );
    bomb.assert_refused(413, "max_rendered_size");

    // The issue's 10,000 recipients of a 469 KB request.
    let many: Vec<Value> = (0..10_000)
        .map(|i| json!({ "email": format!("r{i}@example.com") }))
        .collect();
    let body = "y".repeat(150_000);
    let crowd = inject(
        &daemon,
        &message_to(many, json!(format!("Subject: s\r\n\r\n{body}"))),
        &[],
    );
    crowd.assert_refused(413, "max_recipients (1024)");

    // Within max_recipients, but 1000 messages of 100 KB pass the
    // request's 64 MiB.
    let thousand: Vec<Value> = (0..1000)
        .map(|i| json!({ "email": format!("r{i}@example.com") }))
        .collect();
    let body = "z".repeat(100_000);
    let heavy = inject(
        &daemon,
        &message_to(thousand, json!(format!("Subject: s\r\n\r\n{body}"))),
        &[],
    );
    heavy.assert_refused(413, "max_request_bytes");

    assert!(daemon.is_running(), "{}", daemon.output());
    only_good_messages_are_delivered(&ws, &daemon);
    let metrics = curl(&daemon.url("/metrics"), &[]);
    assert!(
        metrics
            .body
            .contains("nephele_injection_requests_total{outcome=\"too_large\"} 3"),
        "{}",
        metrics.body
    );
    daemon.stop();
}

#[test]
fn control_characters_in_headers_are_422_and_fail_a_recipient_alone() {
    let ws = workspace();
    let daemon = ws.start();
    for (recipients, content, field) in [
        (
            one("a@example.com"),
            json!({ "from": { "email": "f@example.com\r\n\r\n" }, "subject": "s" }),
            "content.from.email",
        ),
        (
            one("a@example.com"),
            json!({ "subject": "a\u{0}b" }),
            "content.subject",
        ),
        (
            one("a@example.com"),
            json!({ "headers": { "X-Tag": "v\u{b}\u{c}" } }),
            "content.headers.X-Tag",
        ),
    ] {
        let reply = inject(&daemon, &message_to(recipients, content), &[]);
        assert_eq!(reply.status, 422, "{field}: {}", reply.body);
        assert!(
            reply
                .body
                .starts_with(&format!("{field}: contains control characters")),
            "{field}: {}",
            reply.body
        );
    }
    // A recipient's address is a per-recipient problem: that recipient
    // alone fails, and nothing is spooled for it.
    let reply = inject(
        &daemon,
        &message_to(
            one("a@example.com\r\n\r\n"),
            json!({ "subject": "s", "text_body": "t" }),
        ),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["fail_count"], 1, "{}", reply.body);
    assert!(
        reply.json()["errors"][0]
            .as_str()
            .unwrap()
            .contains("control characters"),
        "{}",
        reply.body
    );
    // A value that renders with a control character is refused as well.
    let reply = inject(
        &daemon,
        &json!({"envelope_sender": "s@example.com",
                "recipients": [{"email": "a@example.com", "substitutions": {"v": "x\r\nBcc: e@example.com"}}],
                "content": {"subject": "{{ v }}"}}),
        &[],
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply.body.starts_with("content.subject: "),
        "{}",
        reply.body
    );
    only_good_messages_are_delivered(&ws, &daemon);
    daemon.stop();
}

/// Time one liveness check with curl.
fn liveness_seconds(daemon: &Daemon) -> f64 {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "-w",
            "%{http_code} %{time_total}",
        ])
        .arg(daemon.url("/api/check-liveness/v1"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, seconds) = text.split_once(' ').expect("status and time");
    assert_eq!(status, "200", "{text}");
    seconds.parse().expect("seconds")
}

#[test]
fn liveness_stays_fast_while_renders_burn_their_fuel() {
    let ws = workspace();
    let daemon = ws.start();
    // Each recipient's render runs until its fuel is gone (about 5 million
    // instructions): 200 of them take far longer than request_timeout (3 s).
    let burn = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let recipients: Vec<Value> = (0..200)
        .map(|i| json!({ "email": format!("r{i}@example.com") }))
        .collect();
    let body = message_to(recipients, json!(burn));
    let started = Instant::now();
    let heavy: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (daemon.url("/api/inject/v1"), body.to_string());
            std::thread::spawn(move || {
                curl(
                    &url,
                    &[
                        "-H",
                        "Content-Type: application/json",
                        "--data-binary",
                        &body,
                    ],
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut times: Vec<f64> = (0..20)
        .map(|_| {
            let seconds = liveness_seconds(&daemon);
            std::thread::sleep(Duration::from_millis(50));
            seconds
        })
        .collect();
    for reply in heavy {
        let reply = reply.join().unwrap();
        assert_eq!(reply.status, 408, "{}", reply.body);
    }
    // request_timeout holds for the whole request.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    times.sort_by(f64::total_cmp);
    let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
    eprintln!("liveness while rendering: median {median:.4} s, worst {worst:.4} s");
    assert!(median < 0.1, "median {median} s: {times:?}");
    assert!(worst < 0.5, "worst {worst} s: {times:?}");
    // The abandoned renders stopped: the only render thread is free again.
    let reply = inject(
        &daemon,
        &message_to(
            one("good@example.com"),
            json!("Subject: ok\r\n\r\nfine\r\n"),
        ),
        &["--max-time", "10"],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    daemon.stop();
}

/// `VmHWM` (peak resident memory) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// The daemon's render workers: its child processes that have not exited.
fn render_workers(daemon: &Daemon) -> Vec<u32> {
    let parent = daemon.pid().to_string();
    let mut workers = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, not `)`.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        if fields.get(1) == Some(&parent.as_str()) && fields.first() != Some(&"Z") {
            workers.push(pid);
        }
    }
    workers
}

fn kill_9(pid: u32) {
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -9 {pid}");
}

/// CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // After `)`: state is field 0, utime 11, stime 12.
    fields
        .get(11..13)
        .map_or(0, |t| t.iter().map(|v| v.parse::<u64>().unwrap_or(0)).sum())
}

/// Templates whose values grow without touching the output: MiniJinja
/// checks no size there and fuel counts instructions, not bytes.
const MEMORY_BOMBS: [(&str, &str); 4] = [
    (
        "~ doubling",
        "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    ),
    (
        "+ doubling",
        "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    ),
    (
        "replace squaring",
        "{% set ns = namespace(s='x' * 2000) %}{% for i in range(4) %}{% set ns.s = ns.s|replace('x', ns.s) %}{% endfor %}{{ ns.s|length }}",
    ),
    (
        "recursive macro doubling",
        "{% macro d(s, n) %}{% if n == 0 %}{{ s|length }}{% else %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d('x' * 1000000, 40) }}",
    ),
];

#[test]
fn values_past_max_render_memory_kill_only_their_worker() {
    // 256 MiB per worker; time for a debug build to fill it.
    let ws = workspace_with(
        &LIMITED
            .replace(
                "render_threads = 1",
                "render_threads = 1, max_render_memory = 268435456",
            )
            .replace("'3 seconds'", "'30 seconds'"),
    );
    // The daemon gets 1.5 GiB of address space; each bomb wants far more.
    let mut daemon = start_bounded(&ws);
    for (name, template) in MEMORY_BOMBS {
        let reply = inject(
            &daemon,
            &message_to(one("a@example.com"), json!(template)),
            &[],
        );
        assert_eq!(reply.status, 413, "{name}: {}", reply.body);
        assert!(
            reply.body.contains("max_render_memory (268435456 bytes)"),
            "{name}: {}",
            reply.body
        );
        let live = curl(&daemon.url("/api/check-liveness/v1"), &[]);
        assert_eq!(live.status, 200, "{name}: {}", live.body);
    }
    assert!(daemon.is_running(), "{}", daemon.output());
    // The workers grew, not the daemon.
    let peak = peak_rss_kib(daemon.pid());
    assert!(peak < 200 * 1024, "daemon peak RSS {peak} KiB");
    only_good_messages_are_delivered(&ws, &daemon);
    daemon.stop();
}

#[test]
fn a_worker_killed_mid_render_refuses_only_its_request() {
    let ws = workspace();
    let daemon = ws.start();
    let workers = render_workers(&daemon);
    assert_eq!(workers.len(), 1, "render_threads = 1: {workers:?}");
    let worker = workers[0];
    // Long enough a render to be caught in the middle (fuel per recipient).
    let burn = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let recipients: Vec<Value> = (0..200)
        .map(|i| json!({ "email": format!("r{i}@example.com") }))
        .collect();
    let body = message_to(recipients, json!(burn)).to_string();
    let url = daemon.url("/api/inject/v1");
    let before = cpu_ticks(worker);
    let heavy = std::thread::spawn(move || {
        curl(
            &url,
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ],
        )
    });
    // Rendering: the worker burns CPU.
    wait_for("the worker to render", WAIT_TIMEOUT, || {
        (cpu_ticks(worker) >= before + 5).then_some(())
    });
    kill_9(worker);
    let reply = heavy.join().unwrap();
    reply.assert_refused(413, "max_render_memory");
    only_good_messages_are_delivered(&ws, &daemon);
    let now = render_workers(&daemon);
    assert!(
        now.len() == 1 && now[0] != worker,
        "a new worker replaces {worker}: {now:?}"
    );
    // A worker that dies while idle costs no request either.
    kill_9(now[0]);
    wait_for("the idle worker to die", WAIT_TIMEOUT, || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", now[0])).ok()?;
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            .then_some(())
    });
    deliver_good_message(&ws, &daemon, "next@example.com", 2);
    daemon.stop();
}

#[test]
fn a_worker_past_render_timeout_is_killed_and_replaced() {
    let ws = workspace_with(&LIMITED.replace("'30 seconds'", "'1 second'"));
    let daemon = ws.start();
    let worker = render_workers(&daemon)[0];
    // Seconds of work with little fuel and no output: the worker cannot
    // notice its deadline itself, so the daemon kills it.
    let busy = "{% for i in range(1000) %}{% set n = ('x' * 50000000)|length %}{% endfor %}";
    let reply = inject(&daemon, &message_to(one("a@example.com"), json!(busy)), &[]);
    // The render timeout's answer, not the listener's request_timeout's
    // (which would close the request without this body): no clock needed.
    reply.assert_refused(408, "within render_timeout (1s)");
    only_good_messages_are_delivered(&ws, &daemon);
    let now = render_workers(&daemon);
    assert!(!now.contains(&worker), "{worker} was killed: {now:?}");
    daemon.stop();
}

#[test]
fn workers_hold_none_of_the_daemons_files() {
    // Lua's io.open does not open close-on-exec: the file stays open in
    // the daemon when it starts its workers.
    let ws = workspace_with(&LIMITED.replace(
        "kumo.on('init', function()",
        "kumo.on('init', function()\n  KEPT = assert(io.open('@DIR@/policy.lua'))",
    ));
    let daemon = ws.start();
    let open_files = |pid: u32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read fds")
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .map(|target| target.display().to_string())
            .collect()
    };
    let policy = ws.dir().join("policy.lua").display().to_string();
    assert!(
        open_files(daemon.pid()).contains(&policy),
        "the daemon holds the policy file"
    );
    let worker = render_workers(&daemon)[0];
    let held = open_files(worker);
    assert!(
        held.iter()
            .all(|t| t.starts_with("pipe:") || t.starts_with("/dev/")),
        "worker {worker} holds {held:?}"
    );
    daemon.stop();
}
