//! Prohibited destinations: by default no client reaches loopback,
//! link-local, multicast or the proxy's own listeners, whatever spelling or
//! name it uses; `prohibited_destinations` and `--allow-destination` change
//! that. Every refusal is reply 02.

mod support;

use socks5::{Command, TargetAddr};
use support::*;

/// A policy without `prohibited_destinations` (the default applies), no
/// auth, with an HTTP (admin) listener on loopback.
const DEFAULT_POLICY: &str = "local kumo = require 'kumo'\n\
    local proxy = require 'proxy'\n\
    kumo.on('proxy_init', function()\n\
      proxy.start_proxy_listener { listen = '127.0.0.1:0', timeout = '5 seconds' }\n\
      proxy.start_http_listener { listen = '127.0.0.1:0' }\n\
    end)\n";

fn connect_code(proxy: std::net::SocketAddr, target: &TargetAddr) -> u8 {
    let mut stream = connect(proxy);
    authenticate(&mut stream, None);
    code(&request(&mut stream, Command::Connect, target))
}

#[test]
fn loopback_is_refused_by_default_in_every_spelling_and_name() {
    let proxy = RunningProxy::start(DEFAULT_POLICY);
    let echo = spawn_echo_server("127.0.0.1:0");
    let port = echo.port();
    let targets = [
        ip_target(echo),
        ip_target(format!("[::ffff:127.0.0.1]:{port}").parse().unwrap()),
        TargetAddr::Domain("localhost".into(), port),
        TargetAddr::Domain("LOCALHOST".into(), port),
        TargetAddr::Domain("127.1".into(), port),
        TargetAddr::Domain("2130706433".into(), port),
        TargetAddr::Domain("0x7f000001".into(), port),
    ];
    for target in targets {
        assert_eq!(connect_code(proxy.addr, &target), 0x02, "CONNECT {target}");
    }
}

#[test]
fn the_admin_listener_is_not_reachable_through_the_proxy() {
    let proxy = RunningProxy::start(DEFAULT_POLICY);
    let admin = proxy.http_addr();
    assert_eq!(connect_code(proxy.addr, &ip_target(admin)), 0x02);
    assert_eq!(
        connect_code(
            proxy.addr,
            &TargetAddr::Domain("localhost".into(), admin.port())
        ),
        0x02
    );
}

/// The link-local metadata address is refused before any packet: the
/// session first binds a loopback source, so even a broken refusal could
/// not route a packet off the host (the kernel would answer instead).
#[test]
fn link_local_metadata_addresses_are_refused() {
    let proxy = RunningProxy::start(DEFAULT_POLICY);
    for target in ["169.254.169.254:80", "[fe80::1]:80", "224.0.0.1:80"] {
        let mut stream = connect(proxy.addr);
        authenticate(&mut stream, None);
        let source = if target.starts_with('[') {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let bind = request(
            &mut stream,
            Command::Bind,
            &ip_target(source.parse().unwrap()),
        );
        assert_eq!(code(&bind), 0x00, "BIND {source}");
        let reply = request(
            &mut stream,
            Command::Connect,
            &ip_target(target.parse().unwrap()),
        );
        assert_eq!(code(&reply), 0x02, "CONNECT {target}");
    }
}

#[test]
fn an_explicit_list_replaces_the_default() {
    let open = RunningProxy::start(&policy("prohibited_destinations = {}", None));
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(open.addr, None, &ip_target(echo));
    assert_echo_round_trip(&mut stream, b"loopback allowed by the policy");

    let custom = RunningProxy::start(&policy(
        "prohibited_destinations = { '127.0.0.2', '10.0.0.0/8' }",
        None,
    ));
    let (mut stream, _) = open_session(custom.addr, None, &ip_target(echo));
    assert_echo_round_trip(&mut stream, b"127.0.0.1 is not in the list");
    let other = spawn_echo_server("127.0.0.2:0");
    assert_eq!(connect_code(custom.addr, &ip_target(other)), 0x02);
}

#[test]
fn a_bad_range_is_a_start_up_error_naming_it() {
    let finished = ProxyCommand::with_policy(&policy(
        "prohibited_destinations = { 'not-an-address' }",
        None,
    ))
    .run_to_exit();
    assert!(!finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("not-an-address"),
        "{}",
        finished.stderr
    );
}

#[test]
fn legacy_mode_refuses_loopback_unless_allowed_and_always_refuses_itself() {
    let echo = spawn_echo_server("127.0.0.1:0");
    let strict = ProxyCommand::with_args(&["--listen", "127.0.0.1:0"]).start();
    assert_eq!(connect_code(strict.addr, &ip_target(echo)), 0x02);

    let allowing = ProxyCommand::with_args(&[
        "--listen",
        "127.0.0.1:0",
        "--allow-destination",
        "127.0.0.0/8",
    ])
    .start();
    let (mut stream, _) = open_session(allowing.addr, None, &ip_target(echo));
    assert_echo_round_trip(&mut stream, b"exempted range");
    assert_eq!(connect_code(allowing.addr, &ip_target(allowing.addr)), 0x02);
}
