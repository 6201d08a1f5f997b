//! `auth_failure_limit` on the SOCKS listener (issue 9): password guessing
//! from one client IP blocks that IP's logins without calling the policy
//! until `block_for` passes; other IPs are unaffected; `false` disables it;
//! the block is logged without any password.

mod support;

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use support::*;

/// A block that outlasts the test.
const LIMIT: &str = "auth_failure_limit = { max_failures = 10, period = '1 minute', \
                     block_for = '1 hour' }";

const WRONG_PASSWORD_PREFIX: &str = "guess-number-";

/// The log line written when an IP becomes blocked.
const BLOCK_LINE: &str = "client IP blocked after repeated login failures";

fn local_ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Greet offering user/pass from `source`, log in, return the status.
fn try_login(proxy: &RunningProxy, source: IpAddr, pass: &str) -> (TcpStream, [u8; 2]) {
    let mut stream = connect_from(proxy.addr, source);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    let status = login(&mut stream, USER.as_bytes(), pass.as_bytes());
    (stream, status)
}

fn assert_refused(proxy: &RunningProxy, source: IpAddr, pass: &str, why: &str) {
    let (mut stream, status) = try_login(proxy, source, pass);
    assert_eq!(status, [1, 1], "{why}: expected RFC 1929 failure status");
    assert_closed(&mut stream, why);
}

/// Log in from `source` with the right password and relay an echo.
fn assert_accepted(proxy: &RunningProxy, source: IpAddr, why: &str) {
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, status) = try_login(proxy, source, PASSWORD);
    assert_eq!(
        status,
        [1, 0],
        "{why}: expected RFC 1929 success status\n{}",
        proxy.output_dump()
    );
    let reply = request(&mut stream, socks5::Command::Connect, &ip_target(echo));
    assert_eq!(code(&reply), 0, "{why}: CONNECT after login: {reply:?}");
    assert_echo_with_half_close(&mut stream, why.as_bytes());
}

fn wrong_password(n: usize) -> String {
    format!("{WRONG_PASSWORD_PREFIX}{n:02}")
}

/// Handler calls so far, with the peer IP of each.
fn call_peers(proxy: &RunningProxy) -> Vec<String> {
    recorded_calls(proxy.dir())
        .into_iter()
        .map(|call| call.peer_address)
        .collect()
}

#[test]
fn eleven_wrong_passwords_block_the_ip_without_lua_calls_until_block_for_passes() {
    let proxy = RunningProxy::start(&with_http_listener(&seed_policy(&format!(
        "require_auth = true, {LIMIT}"
    ))));
    let attacker = local_ip(1);
    let bystander = local_ip(2);

    for n in 1..=11 {
        assert_refused(&proxy, attacker, &wrong_password(n), &format!("wrong #{n}"));
    }
    let calls = call_peers(&proxy);
    assert_eq!(
        calls.len(),
        11,
        "each wrong password reaches Lua: {calls:?}"
    );

    // The 12th login, with the right password, is refused without Lua.
    assert_refused(
        &proxy,
        attacker,
        PASSWORD,
        "right password from a blocked IP",
    );
    let calls = call_peers(&proxy);
    assert_eq!(
        calls.len(),
        11,
        "the handler must not be called for a blocked IP: {calls:?}"
    );
    assert!(
        proxy.listener_metric("proxy_auth_blocked_total") >= 1,
        "proxy_auth_blocked_total should count the refused login"
    );

    // Another client IP is not blocked meanwhile.
    assert_accepted(&proxy, bystander, "right password from another IP");
    let calls = call_peers(&proxy);
    assert_eq!(calls.len(), 12, "{calls:?}");
    assert!(
        calls[11].starts_with("127.0.0.2:"),
        "the bystander's login reaches Lua from 127.0.0.2: {calls:?}"
    );

    // Unblocking after block_for is tested under a paused clock in
    // tests/timeouts.rs.
    let log = proxy.stderr();
    assert_eq!(
        log.lines().filter(|line| line.contains(BLOCK_LINE)).count(),
        1,
        "one '{BLOCK_LINE}' line for the one block\n{log}"
    );
    assert!(
        log.lines()
            .any(|line| line.contains(BLOCK_LINE) && line.contains("127.0.0.1")),
        "the block line names the client IP\n{log}"
    );
    assert!(
        !log.contains(PASSWORD) && !log.contains(WRONG_PASSWORD_PREFIX),
        "no password may reach the log\n{log}"
    );
}

#[test]
fn the_default_limit_blocks_after_the_eleventh_failure_too() {
    // No auth_failure_limit key: the default (10 per minute) is in force.
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let attacker = local_ip(1);
    for n in 1..=11 {
        assert_refused(&proxy, attacker, &wrong_password(n), &format!("wrong #{n}"));
    }
    assert_refused(&proxy, attacker, PASSWORD, "right password, default limit");
    let calls = call_peers(&proxy);
    assert_eq!(calls.len(), 11, "blocked without Lua: {calls:?}");
    assert_accepted(&proxy, local_ip(3), "another IP under the default limit");
}

#[test]
fn auth_failure_limit_false_never_blocks_and_logs_no_password() {
    let proxy = RunningProxy::start(&seed_policy(
        "require_auth = true, auth_failure_limit = false",
    ));
    let attacker = local_ip(1);
    for n in 1..=25 {
        assert_refused(&proxy, attacker, &wrong_password(n), &format!("wrong #{n}"));
    }
    assert_accepted(&proxy, attacker, "right password with the limit disabled");
    let calls = call_peers(&proxy);
    assert_eq!(calls.len(), 26, "every login reaches Lua: {calls:?}");
    let log = proxy.stderr();
    assert!(!log.contains(BLOCK_LINE), "nothing is blocked\n{log}");
    assert!(
        !log.contains(PASSWORD) && !log.contains(WRONG_PASSWORD_PREFIX),
        "no password may reach the log\n{log}"
    );
}
