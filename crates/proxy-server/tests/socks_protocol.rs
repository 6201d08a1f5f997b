//! RFC 1928 on the wire, with raw bytes: method selection, malformed
//! messages, reply codes, targets of every address type, BIND-then-CONNECT
//! source selection, handshake timeouts and half-close relay.

mod support;

use socks5::{Command, ReplyCode, TargetAddr};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use support::*;

fn no_auth_proxy() -> RunningProxy {
    RunningProxy::start(&seed_policy(""))
}

#[test]
fn no_auth_client_is_allowed_when_auth_is_not_required() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[NO_AUTH]), [5, NO_AUTH]);
    let reply = request(&mut stream, Command::Connect, &ip_target(echo));
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    assert_echo_with_half_close(&mut stream, b"no auth needed");
}

#[test]
fn require_auth_refuses_a_no_auth_client_with_ff_and_closes() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[NO_AUTH]), [5, NO_ACCEPTABLE]);
    assert_closed(&mut stream, "after FF");
}

#[test]
fn require_auth_accepts_a_client_that_logs_in() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"logged in");
}

#[test]
fn offering_both_no_auth_and_user_pass_selects_user_pass() {
    let proxy = no_auth_proxy();
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[NO_AUTH, USER_PASS]), [5, USER_PASS]);
    assert_eq!(
        login(&mut stream, USER.as_bytes(), PASSWORD.as_bytes()),
        [1, 0]
    );
}

#[test]
fn offering_only_an_unsupported_method_gets_ff_and_close() {
    let proxy = no_auth_proxy();
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[GSSAPI, 0x80]), [5, NO_ACCEPTABLE]);
    assert_closed(&mut stream, "after FF");
}

#[test]
fn greeting_with_socks4_version_is_closed() {
    let proxy = no_auth_proxy();
    let mut stream = connect(proxy.addr);
    send(&mut stream, &[4, 1, 0]);
    assert_closed(&mut stream, "greeting VER=4");
}

#[test]
fn request_with_wrong_version_is_closed() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[NO_AUTH]), [5, NO_AUTH]);
    let port = echo.port().to_be_bytes();
    send(&mut stream, &[4, 1, 0, 1, 127, 0, 0, 1, port[0], port[1]]);
    assert_closed(&mut stream, "request VER=4");
}

#[test]
fn userpass_subnegotiation_with_wrong_version_is_closed() {
    let proxy = no_auth_proxy();
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    send(&mut stream, &[5, 1, b'u', 1, b'p']);
    match wait_closed(&mut stream) {
        CloseOutcome::Closed => {}
        // A failure status before closing is acceptable too.
        CloseOutcome::SentData(data) => assert_eq!(data, [1, 1], "only a failure status"),
        CloseOutcome::StillOpen => panic!("RFC 1929 VER=5 left the connection open"),
    }
}

#[test]
fn udp_associate_replies_command_not_supported() {
    let proxy = no_auth_proxy();
    let mut stream = connect(proxy.addr);
    authenticate(&mut stream, None);
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let reply = request(&mut stream, Command::UdpAssociate, &ip_target(client));
    assert_eq!(code(&reply), 0x07, "{reply:?}");
}

#[test]
fn unknown_command_replies_command_not_supported() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");
    let mut stream = connect(proxy.addr);
    authenticate(&mut stream, None);
    let port = echo.port().to_be_bytes();
    send(
        &mut stream,
        &[5, 0x09, 0, 1, 127, 0, 0, 1, port[0], port[1]],
    );
    let reply = read_reply(&mut stream);
    assert_eq!(code(&reply), 0x07, "{reply:?}");
}

#[test]
fn unknown_address_type_replies_address_type_not_supported() {
    let proxy = no_auth_proxy();
    let mut stream = connect(proxy.addr);
    authenticate(&mut stream, None);
    // The length of an unknown address type is unknowable: send no more.
    send(&mut stream, &[5, 1, 0, 0x09]);
    let reply = read_reply(&mut stream);
    assert_eq!(code(&reply), 0x08, "{reply:?}");
}

#[test]
fn refused_port_replies_connection_refused() {
    let proxy = no_auth_proxy();
    let mut stream = connect(proxy.addr);
    authenticate(&mut stream, None);
    let reply = request(&mut stream, Command::Connect, &ip_target(closed_port()));
    assert_eq!(code(&reply), 0x05, "{reply:?}");
}

#[test]
fn connect_to_an_ipv6_target() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("[::1]:0");
    let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"over ipv6");
}

#[test]
fn listener_on_ipv6_loopback_serves_clients() {
    let proxy = RunningProxy::start(&policy_on(
        "[::1]:0",
        "",
        Some(&format!("{RECORD_CALL}\n{SEED_HANDLER}")),
    ));
    assert_eq!(proxy.addr.ip(), "::1".parse::<IpAddr>().unwrap());
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"client over ipv6");
}

#[test]
fn connect_to_a_domain_target_resolved_by_the_proxy() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");
    let target = TargetAddr::Domain("localhost".to_string(), echo.port());
    let (mut stream, _) = open_session(proxy.addr, None, &target);
    assert_echo_with_half_close(&mut stream, b"via localhost");
}

#[test]
fn success_reply_carries_the_outbound_local_address() {
    let proxy = no_auth_proxy();
    let reporter = spawn_peer_reporter("127.0.0.1:0");
    let (mut stream, reply) = open_session(proxy.addr, None, &ip_target(reporter));
    let seen = String::from_utf8(read_to_eof(&mut stream, "peer report")).unwrap();
    assert_eq!(
        seen.trim(),
        reply.bound.to_string(),
        "the destination's view of the proxy's socket vs the reply's BND.ADDR"
    );
}

fn bind_then_connect_originates_from(source: Ipv4Addr) {
    let proxy = no_auth_proxy();
    let reporter = spawn_peer_reporter("127.0.0.1:0");
    let mut stream = connect(proxy.addr);
    authenticate(&mut stream, None);
    let bind_to = SocketAddr::new(IpAddr::V4(source), 0);
    let reply = request(&mut stream, Command::Bind, &ip_target(bind_to));
    assert_eq!(
        reply.code,
        ReplyCode::Succeeded,
        "BIND {bind_to}: {reply:?}"
    );
    assert_eq!(
        reply.bound.host(),
        source.to_string(),
        "BIND reply {reply:?}"
    );
    let reply = request(&mut stream, Command::Connect, &ip_target(reporter));
    assert_eq!(
        reply.code,
        ReplyCode::Succeeded,
        "CONNECT after BIND: {reply:?}"
    );
    let seen = String::from_utf8(read_to_eof(&mut stream, "peer report")).unwrap();
    let seen: SocketAddr = seen.trim().parse().expect("reporter writes ip:port");
    assert_eq!(seen.ip(), IpAddr::V4(source), "destination saw peer {seen}");
}

#[test]
fn bind_127_0_0_2_then_connect_originates_from_it() {
    bind_then_connect_originates_from(Ipv4Addr::new(127, 0, 0, 2));
}

#[test]
fn bind_127_0_0_1_then_connect_originates_from_it() {
    bind_then_connect_originates_from(Ipv4Addr::LOCALHOST);
}

#[test]
fn relay_passes_the_client_half_close_on() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
    assert_echo_round_trip(&mut stream, b"first round trip");
    // The echo server only writes its trailer after it sees EOF, so the
    // trailer arriving proves the half-close crossed the proxy and the
    // destination could still answer.
    assert_echo_with_half_close(&mut stream, b"then half-close");
}

#[test]
fn relay_carries_a_large_payload_both_ways() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");
    let (stream, _) = open_session(proxy.addr, None, &ip_target(echo));
    let payload = pattern_bytes(4 * 1024 * 1024);
    let mut writer = stream.try_clone().unwrap();
    let to_send = payload.clone();
    let sender = std::thread::spawn(move || {
        send(&mut writer, &to_send);
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut reader = stream;
    let got = read_to_eof(&mut reader, "large echo");
    sender.join().unwrap();
    let mut expected = payload;
    expected.extend_from_slice(EOF_TRAILER);
    assert_eq!(got.len(), expected.len(), "echoed length");
    assert!(got == expected, "echoed bytes differ");
}

/// A policy with a 1-second step timeout.
fn one_second_timeout_proxy() -> RunningProxy {
    RunningProxy::start(&seed_policy("timeout = '1 second'"))
}

#[test]
fn half_a_greeting_then_stall_is_closed_after_timeout() {
    let proxy = one_second_timeout_proxy();
    let mut stream = connect(proxy.addr);
    // Announces two methods, sends one, then nothing.
    send(&mut stream, &[5, 2, NO_AUTH]);
    assert_closed(&mut stream, "stalled greeting with timeout = 1 second");
}

#[test]
fn stall_during_userpass_subnegotiation_is_closed_after_timeout() {
    let proxy = one_second_timeout_proxy();
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    send(&mut stream, &[1, 9, b'p', b'r']);
    assert_closed(
        &mut stream,
        "stalled RFC 1929 request with timeout = 1 second",
    );
}

#[test]
fn stall_before_the_request_is_closed_after_timeout() {
    let proxy = one_second_timeout_proxy();
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[NO_AUTH]), [5, NO_AUTH]);
    send(&mut stream, &[5, 1]);
    assert_closed(&mut stream, "stalled request with timeout = 1 second");
}

#[test]
fn username_of_255_bytes_reaches_the_policy() {
    let handler = format!(
        "{RECORD_CALL}\n  return username == string.rep('u', 255) and password == '{PASSWORD}'"
    );
    let proxy = RunningProxy::start(&policy("", Some(&handler)));
    let echo = spawn_echo_server("127.0.0.1:0");
    let username = "u".repeat(255);
    let (mut stream, _) = open_session(proxy.addr, Some((&username, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"long name");
    let calls = recorded_calls(proxy.dir());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].username_len, 255);
}

#[test]
fn several_sessions_at_once_are_served_independently() {
    let proxy = no_auth_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");
    let addr = proxy.addr;
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let creds = (i % 2 == 0).then_some((USER, PASSWORD));
                let (mut stream, _) = open_session(addr, creds, &ip_target(echo));
                assert_echo_with_half_close(&mut stream, format!("client {i}").as_bytes());
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}
