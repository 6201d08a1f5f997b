//! The process around the proxy: command-line modes, the legacy CLI,
//! graceful exit on SIGTERM/SIGINT.

mod support;

use support::*;

#[test]
fn sigterm_exits_zero() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let finished = proxy.terminate();
    assert!(
        finished.status.success(),
        "exit after SIGTERM: {:?}\n{}",
        finished.status,
        finished.stderr
    );
}

#[test]
fn sigint_exits_zero() {
    let proxy = RunningProxy::start(&seed_policy(""));
    proxy.signal(libc::SIGINT);
    let finished = proxy.wait_exit();
    assert!(
        finished.status.success(),
        "exit after SIGINT: {:?}\n{}",
        finished.status,
        finished.stderr
    );
}

#[test]
fn sigterm_with_a_live_session_exits_zero() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_round_trip(&mut stream, b"session open during shutdown");
    let finished = proxy.terminate();
    assert!(
        finished.status.success(),
        "exit after SIGTERM with a live session: {:?}\n{}",
        finished.status,
        finished.stderr
    );
}

#[test]
fn sigterm_stops_accepting_new_clients() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let addr = proxy.addr;
    let finished = proxy.terminate();
    assert!(finished.status.success(), "{:?}", finished.status);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener {addr} should be closed after exit"
    );
}

#[test]
fn legacy_listen_relays_without_auth() {
    let proxy = ProxyCommand::with_args(&[
        "--listen",
        "127.0.0.1:0",
        "--allow-destination",
        "127.0.0.0/8",
    ])
    .start();
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"legacy mode");
}

#[test]
fn legacy_no_splice_relays_a_large_payload() {
    let proxy = ProxyCommand::with_args(&[
        "--listen",
        "127.0.0.1:0",
        "--no-splice",
        "--allow-destination",
        "127.0.0.0/8",
    ])
    .start();
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
    let payload = pattern_bytes(2 * 1024 * 1024);
    let mut writer = stream.try_clone().unwrap();
    let to_send = payload.clone();
    let sender = std::thread::spawn(move || {
        send(&mut writer, &to_send);
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let got = read_to_eof(&mut stream, "legacy --no-splice echo");
    sender.join().unwrap();
    let mut expected = payload;
    expected.extend_from_slice(EOF_TRAILER);
    assert!(got == expected, "echo differs ({} bytes)", got.len());
}

#[test]
fn legacy_timeout_seconds_closes_a_stalled_greeting() {
    let proxy =
        ProxyCommand::with_args(&["--listen", "127.0.0.1:0", "--timeout-seconds", "1"]).start();
    let mut stream = connect(proxy.addr);
    send(&mut stream, &[5, 2, NO_AUTH]);
    assert_closed(&mut stream, "stalled greeting with --timeout-seconds 1");
}

#[test]
fn legacy_mode_with_two_listeners() {
    let proxy = ProxyCommand::with_args(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--allow-destination",
        "127.0.0.0/8",
        "--allow-destination",
        "::1",
    ])
    .start_listeners(2);
    let echo = spawn_echo_server("127.0.0.1:0");
    for &listener in &proxy.listeners {
        let (mut stream, _) = open_session(listener, None, &ip_target(echo));
        assert_echo_with_half_close(&mut stream, listener.to_string().as_bytes());
    }
}

#[test]
fn neither_mode_given_fails_naming_both_flags() {
    let finished = ProxyCommand::with_args(&[]).run_to_exit();
    assert!(!finished.status.success(), "{:?}", finished.status);
    let output = format!("{}{}", finished.stderr, finished.stdout);
    for flag in ["--proxy-config", "--listen"] {
        assert!(output.contains(flag), "should name {flag}:\n{output}");
    }
}

#[test]
fn proxy_config_conflicts_with_legacy_flags() {
    let cmd = ProxyCommand::with_policy(&seed_policy(""));
    let finished = cmd.arg("--listen").arg("127.0.0.1:0").run_to_exit();
    assert!(
        !finished.status.success(),
        "--proxy-config with --listen should be refused\n{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains(LISTENER_MARKER),
        "nothing should be served\n{}",
        finished.stderr
    );
}
