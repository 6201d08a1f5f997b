//! Lua handlers that spin, sleep or allocate without bound stall nothing
//! but their own login: the policy runs off the async runtime, each state
//! has a memory limit, and a refused login never takes the proxy down.

mod support;

use std::io::Read;
use std::time::Duration;
use support::*;

/// `spin` never returns, `hog` allocates until its state's limit, anything
/// else is the seed's table check.
const POLICY_BODY: &str = r#"
  if password == 'spin' then while true do end end
  if password == 'hog' then
    local t = {}
    while true do t[#t + 1] = string.rep('x', 1024 * 1024) .. #t end
  end
  return username == 'proxyuser' and password == 'secretpassword'
"#;

fn isolation_policy() -> String {
    policy("require_auth = true", Some(POLICY_BODY)).replace(
        "local kumo = require 'kumo'\n",
        "local kumo = require 'kumo'\nkumo.set_lua_memory_limit(64 * 1024 * 1024)\n",
    )
}

/// Start a login whose handler spins; the proxy has not answered it yet.
fn spinning_login(proxy: std::net::SocketAddr) -> std::net::TcpStream {
    let mut stream = connect(proxy);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    let mut out = Vec::new();
    socks5::encode_userpass_request(b"proxyuser", b"spin", &mut out).unwrap();
    send(&mut stream, &out);
    stream
}

fn not_answered_yet(stream: &mut std::net::TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending =
        matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    pending
}

#[test]
fn spinning_handlers_stall_neither_logins_nor_relays() {
    let proxy = RunningProxy::start(&isolation_policy());
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut tunnel, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_round_trip(&mut tunnel, b"before the spinners");

    let mut spinners: Vec<_> = (0..2).map(|_| spinning_login(proxy.addr)).collect();
    // While both handlers spin (their logins are unanswered), a new login
    // completes and the established tunnel keeps relaying.
    let (mut fresh, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_round_trip(&mut fresh, b"a login beside the spinners");
    for round in 0..20 {
        assert_echo_round_trip(&mut tunnel, format!("relay round {round}").as_bytes());
    }
    for spinner in &mut spinners {
        assert!(
            not_answered_yet(spinner),
            "a spinning handler was answered early"
        );
    }
    // A deadline then ends them (the handshake's, 5 s here, comes before
    // the policy call's): a refusal or a close, never success.
    for spinner in &mut spinners {
        spinner
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let rest = read_to_eof(spinner, "end of a spinning login");
        assert!(rest.is_empty() || rest == [1, 1], "{rest:?}");
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn handlers_allocating_without_bound_fail_alone_with_bounded_memory() {
    let proxy = RunningProxy::start(&isolation_policy());
    let echo = spawn_echo_server("127.0.0.1:0");
    let hogs: Vec<_> = (0..3)
        .map(|_| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let mut stream = connect(addr);
                assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
                login(&mut stream, b"proxyuser", b"hog")
            })
        })
        .collect();
    for hog in hogs {
        assert_eq!(
            hog.join().unwrap(),
            [1, 1],
            "an allocating handler is a refusal"
        );
    }
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_round_trip(&mut stream, b"still serving");
    // Three states at 64 MiB each, plus the process itself.
    let peak = peak_rss_kib(proxy.pid());
    assert!(peak < 400 * 1024, "peak RSS {peak} KiB");
}
