//! Out of file descriptors (issue 9): the proxy started under
//! `prlimit --nofile=64:64` (soft and hard, since it raises soft to hard at
//! start) and hit by 100 clients at once keeps running without a panic,
//! rate-limits its accept-error log line, and serves a client normally
//! once the crowd has left; the same with 100 silent clients that hold
//! descriptors until the handshake timeout.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support::*;

const NOFILE: u64 = 64;
const CLIENTS: usize = 100;

/// The accept loop logs its error at most once per 5 s; the whole test
/// takes well under a minute, so a handful of lines at most.
const MAX_ACCEPT_ERROR_LINES: usize = 20;
const ACCEPT_ERROR_LINE: &str = "accept failed";

/// Generous bound for the proxy to close 100 silent clients with a 2 s
/// timeout, a few dozen at a time for lack of descriptors.
const SILENT_CLOSED_BOUND: Duration = Duration::from_secs(60);

/// `prlimit` from util-linux; a missing tool fails the test with the fix.
fn require_prlimit() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("prlimit"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`prlimit` (util-linux) not found on PATH: run scripts/test, which installs \
                 util-linux with the other test tools"
            )
        })
}

/// `Max open files` soft and hard limits of a running process.
fn nofile_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|err| panic!("read /proc/{pid}/limits: {err}"));
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no 'Max open files' in /proc/{pid}/limits:\n{limits}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    assert!(numbers.len() >= 2, "unexpected limits line {line:?}");
    (numbers[0], numbers[1])
}

/// A whole session that reports failure instead of panicking: no-auth
/// greeting, CONNECT to `echo`, one round trip. The stream is returned
/// open, so the session keeps its descriptors on the proxy.
fn try_session(proxy: SocketAddr, echo: SocketAddr, n: usize) -> Result<TcpStream, String> {
    let step = |what: &str, err: std::io::Error| format!("{what}: {err}");
    let mut stream =
        TcpStream::connect_timeout(&proxy, IO_TIMEOUT).map_err(|e| step("connect", e))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| step("timeout", e))?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| step("timeout", e))?;
    stream
        .write_all(&[5, 1, NO_AUTH])
        .map_err(|e| step("greeting", e))?;
    let mut selection = [0u8; 2];
    stream
        .read_exact(&mut selection)
        .map_err(|e| step("method selection", e))?;
    if selection != [5, NO_AUTH] {
        return Err(format!("method selection {selection:02x?}"));
    }
    let SocketAddr::V4(echo_v4) = echo else {
        unreachable!("the echo server listens on 127.0.0.1")
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&echo_v4.ip().octets());
    request.extend_from_slice(&echo_v4.port().to_be_bytes());
    stream.write_all(&request).map_err(|e| step("request", e))?;
    let mut reply = [0u8; 10];
    stream
        .read_exact(&mut reply)
        .map_err(|e| step("reply", e))?;
    if reply[1] != 0 {
        return Err(format!("CONNECT reply code {:02x}", reply[1]));
    }
    let payload = format!("client {n}");
    stream
        .write_all(payload.as_bytes())
        .map_err(|e| step("payload", e))?;
    let mut echoed = vec![0u8; payload.len()];
    stream
        .read_exact(&mut echoed)
        .map_err(|e| step("echo", e))?;
    if echoed != payload.as_bytes() {
        return Err(format!("echo {echoed:02x?}"));
    }
    Ok(stream)
}

#[test]
fn a_proxy_limited_to_64_descriptors_survives_100_clients_and_serves_again() {
    let prlimit = require_prlimit();
    let prlimit = prlimit.to_str().expect("utf-8 path");
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let proxy = ProxyCommand::with_policy(&seed_policy("timeout = '2 seconds'"))
        .start_wrapped(&[prlimit, &nofile, "--"]);
    assert_eq!(
        nofile_limits(proxy.pid()),
        (NOFILE, NOFILE),
        "the proxy runs with the prlimit limits"
    );
    let echo = spawn_echo_server("127.0.0.1:0");

    // 100 clients at once; each keeps its session open until all are done.
    let start = Arc::new(Barrier::new(CLIENTS));
    let proxy_addr = proxy.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                try_session(proxy_addr, echo, n)
            })
        })
        .collect();
    let outcomes: Vec<Result<TcpStream, String>> = clients
        .into_iter()
        .map(|client| client.join().expect("client thread"))
        .collect();
    let served = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!(
        "{served} of {CLIENTS} sessions served at once under {NOFILE} descriptors; \
         first failures: {:?}",
        &failures[..failures.len().min(5)]
    );

    let mut proxy = proxy;
    assert_running(&mut proxy, "100 clients at once");

    // The crowd leaves; a new client is served normally, with a login
    // through the policy.
    drop(outcomes);
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"served again after the crowd left");
    drop(stream);

    // 100 silent clients: each accepted one holds a descriptor until the
    // 2 s timeout, so the accept loop meets EMFILE for seconds. All of them
    // are still closed in the end, and the error line stays rate-limited.
    let silent: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(proxy.addr)).collect();
    let deadline = Instant::now() + SILENT_CLOSED_BOUND;
    let mut not_closed = Vec::new();
    for (n, mut socket) in silent.into_iter().enumerate() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(left)).unwrap();
        let mut byte = [0u8; 1];
        match socket.read(&mut byte) {
            Ok(0) => {}
            // A reset also means the proxy closed it.
            Err(err) if !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => not_closed.push((n, format!("{other:?}"))),
        }
    }
    assert!(
        not_closed.is_empty(),
        "{} of {CLIENTS} silent clients were not closed within {SILENT_CLOSED_BOUND:?} under \
         {NOFILE} descriptors (first: {:?})\n{}",
        not_closed.len(),
        &not_closed[..not_closed.len().min(5)],
        proxy.output_dump()
    );
    assert_running(&mut proxy, "100 silent clients");

    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"served again after the silent crowd");
    drop(stream);
    assert_running(&mut proxy, "the end");

    let log = proxy.stderr();
    let accept_errors = log
        .lines()
        .filter(|line| line.contains(ACCEPT_ERROR_LINE))
        .count();
    assert!(
        accept_errors >= 1,
        "the accept loop never met EMFILE, so this test proved nothing about it\n{log}"
    );
    assert!(
        accept_errors < MAX_ACCEPT_ERROR_LINES,
        "{accept_errors} '{ACCEPT_ERROR_LINE}' lines: the accept-error log must be \
         rate-limited\n{log}"
    );
    eprintln!("{accept_errors} '{ACCEPT_ERROR_LINE}' line(s) logged");
}

/// The proxy process is alive and has not panicked.
fn assert_running(proxy: &mut RunningProxy, after: &str) {
    assert!(
        !proxy.has_exited(),
        "the proxy exited under descriptor exhaustion ({after})\n{}",
        proxy.output_dump()
    );
    assert!(
        !proxy.stderr().contains("panicked"),
        "the proxy panicked under descriptor exhaustion ({after})\n{}",
        proxy.output_dump()
    );
}
