//! Black-box runs of the `bench` binary against its own servers, direct on
//! loopback. They check that each mode completes and reports sensibly;
//! they assert nothing about speed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bench"))
}

/// Run a client mode with `--json` and parse its one JSON object.
fn run_json(args: &[&str]) -> serde_json::Value {
    let output = bench()
        .args(args)
        .arg("--json")
        .output()
        .expect("run bench");
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

/// A server process killed (by its own pid) when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `bench MODE --listen 127.0.0.1:0` and read its announced address.
fn start_server(mode: &str) -> Server {
    let mut child = bench()
        .args([mode, "--listen", "127.0.0.1:0", "--threads", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read announcement");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr }
}

#[test]
fn conn_direct_with_own_echo_server() {
    let report = run_json(&["conn", "--concurrency", "2", "--duration", "0.2"]);
    assert_eq!(report["mode"], "conn");
    assert_eq!(report["route"], "direct");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["connections"].as_u64().unwrap() > 0, "{report}");
    assert!(report["p99_us"].as_u64().unwrap() >= report["p50_us"].as_u64().unwrap());
}

#[test]
fn bulk_by_bytes_into_discard_process() {
    let discard = start_server("discard");
    let report = run_json(&[
        "bulk",
        "--target",
        &discard.addr,
        "--streams",
        "2",
        "--bytes",
        "1000000",
        "--label",
        "t",
    ]);
    assert_eq!(report["label"], "t");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["bytes"], 2_000_000);
}

#[test]
fn hold_reads_memory_of_a_process() {
    let echo = start_server("echo");
    let pid = echo.child.id().to_string();
    let report = run_json(&[
        "hold", "--target", &echo.addr, "--count", "20", "--pid", &pid, "--settle", "0",
    ]);
    assert_eq!(report["open"], 20, "{report}");
    assert!(report["after"]["rss_kib"].as_u64().unwrap() > 0);
    assert!(report["kib_per_tunnel"].is_number());
}

#[test]
fn proxy_that_is_not_there_counts_errors() {
    // Bind and drop to get a port with (almost certainly) no listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = format!("127.0.0.1:{port}");
    let report = run_json(&[
        "conn",
        "--proxy",
        &proxy,
        "--concurrency",
        "1",
        "--duration",
        "0.1",
    ]);
    assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["connections"], 0);
    assert!(report["error_kinds"]["connect"].as_u64().unwrap() > 0);
}

#[test]
fn table_from_runs() {
    let dir = std::env::temp_dir().join(format!("bench-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("runs.jsonl");
    let path = file.to_str().unwrap();
    for _ in 0..2 {
        run_json(&[
            "conn",
            "--concurrency",
            "1",
            "--duration",
            "0.1",
            "--json-file",
            path,
            "--label",
            "a",
        ]);
    }
    let output = bench().args(["table", "--input", path]).output().unwrap();
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("| a | 2 |"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}
