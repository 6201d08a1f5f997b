//! The `proxy_server_auth_rfc1929` event: what each kind of handler result
//! does on the wire, that failures close the connection, and that
//! `conn_meta` carries the real addresses.

mod support;

use std::net::TcpStream;
use support::*;

/// Greet offering user/pass, log in, return the RFC 1929 status.
fn try_login(proxy: &RunningProxy, user: &str, pass: &str) -> (TcpStream, [u8; 2]) {
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    let status = login(&mut stream, user.as_bytes(), pass.as_bytes());
    (stream, status)
}

/// Assert the login is refused with `01 01` and the connection closed.
fn assert_refused(proxy: &RunningProxy, user: &str, pass: &str, why: &str) {
    let (mut stream, status) = try_login(proxy, user, pass);
    assert_eq!(status, [1, 1], "{why}: expected RFC 1929 failure status");
    assert_closed(&mut stream, why);
}

/// Assert the login is accepted and the session relays.
fn assert_accepted(proxy: &RunningProxy, user: &str, pass: &str, why: &str) {
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, status) = try_login(proxy, user, pass);
    assert_eq!(status, [1, 0], "{why}: expected RFC 1929 success status");
    let reply = request(&mut stream, socks5::Command::Connect, &ip_target(echo));
    assert_eq!(code(&reply), 0, "{why}: CONNECT after login: {reply:?}");
    assert_echo_with_half_close(&mut stream, why.as_bytes());
}

#[test]
fn correct_password_is_accepted() {
    let proxy = RunningProxy::start(&seed_policy(""));
    assert_accepted(&proxy, USER, PASSWORD, "correct password");
}

#[test]
fn wrong_password_is_refused_with_01_01_and_closed() {
    let proxy = RunningProxy::start(&seed_policy(""));
    assert_refused(&proxy, USER, "not-the-password", "wrong password");
}

#[test]
fn unknown_user_is_refused() {
    let proxy = RunningProxy::start(&seed_policy(""));
    assert_refused(&proxy, "nobody", PASSWORD, "unknown user");
}

#[test]
fn empty_password_reaches_the_policy_and_is_refused() {
    let proxy = RunningProxy::start(&seed_policy(""));
    assert_refused(&proxy, USER, "", "empty password");
    let calls = recorded_calls(proxy.dir());
    assert_eq!(calls.len(), 1, "handler calls: {calls:?}");
    assert_eq!(calls[0].password_len, 0, "{calls:?}");
    assert_eq!(calls[0].username_len, USER.len(), "{calls:?}");
}

#[test]
fn handler_that_raises_fails_closed() {
    let proxy = RunningProxy::start(&policy(
        "",
        Some("error('the password database is on fire')"),
    ));
    assert_refused(&proxy, USER, PASSWORD, "handler raised");
}

#[test]
fn handler_that_returns_a_string_fails_closed() {
    let proxy = RunningProxy::start(&policy("", Some("return 'yes'")));
    assert_refused(&proxy, USER, PASSWORD, "handler returned a string");
}

#[test]
fn handler_that_returns_nothing_fails_closed() {
    let proxy = RunningProxy::start(&policy("", Some("local _ = username")));
    assert_refused(&proxy, USER, PASSWORD, "handler returned nil");
}

#[test]
fn handler_that_returns_a_number_fails_closed() {
    let proxy = RunningProxy::start(&policy("", Some("return 1")));
    assert_refused(&proxy, USER, PASSWORD, "handler returned a number");
}

#[test]
fn auth_info_with_groups_is_accepted() {
    let handler = r#"
  local password_database = {
    ['proxyuser'] = {
      password = 'secretpassword',
      groups = { 'proxy-users', 'premium-tier' },
    },
  }
  local entry = password_database[username]
  if not entry then
    return false
  end
  if entry.password ~= password then
    return false
  end
  return {
    identities = {
      { identity = username, context = 'ProxyAuthRfc1929' },
    },
    groups = entry.groups,
  }
"#;
    let proxy = RunningProxy::start(&policy("require_auth = true", Some(handler)));
    assert_accepted(&proxy, USER, PASSWORD, "AuthInfo with groups");
    assert_refused(&proxy, USER, "wrong", "AuthInfo policy, wrong password");
}

#[test]
fn auth_info_without_groups_is_accepted() {
    let handler =
        "return { identities = { { identity = username, context = 'ProxyAuthRfc1929' } } }";
    let proxy = RunningProxy::start(&policy("", Some(handler)));
    assert_accepted(&proxy, USER, PASSWORD, "AuthInfo without groups");
}

#[test]
fn auth_info_with_empty_identities_is_refused() {
    let handler = "return { identities = {}, groups = { 'proxy-users' } }";
    let proxy = RunningProxy::start(&policy("", Some(handler)));
    assert_refused(&proxy, USER, PASSWORD, "AuthInfo with empty identities");
}

#[test]
fn missing_handler_refuses_every_login() {
    let proxy = RunningProxy::start(&policy("", None));
    assert_refused(&proxy, USER, PASSWORD, "no handler registered");
}

#[test]
fn missing_handler_still_allows_no_auth_clients() {
    let proxy = RunningProxy::start(&policy("", None));
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"no handler, no auth");
}

#[test]
fn conn_meta_holds_the_real_client_and_proxy_addresses() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let (stream, status) = try_login(&proxy, USER, PASSWORD);
    assert_eq!(status, [1, 0]);
    let client_side = stream.local_addr().unwrap();
    let calls = recorded_calls(proxy.dir());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].peer_address,
        client_side.to_string(),
        "conn_meta.peer_address is the client's socket address"
    );
    assert_eq!(
        calls[0].local_address,
        proxy.addr.to_string(),
        "conn_meta.local_address is the proxy's listening socket address"
    );
}

#[test]
fn conn_meta_addresses_over_ipv6() {
    let handler = format!("{RECORD_CALL}\n{SEED_HANDLER}");
    let proxy = RunningProxy::start(&policy_on("[::1]:0", "", Some(&handler)));
    let (stream, status) = try_login(&proxy, USER, PASSWORD);
    assert_eq!(status, [1, 0]);
    let calls = recorded_calls(proxy.dir());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].peer_address,
        stream.local_addr().unwrap().to_string()
    );
    assert_eq!(calls[0].local_address, proxy.addr.to_string());
}

#[test]
fn the_handler_is_called_once_per_login_attempt() {
    // Without the verdict cache (see passwords.rs for the cache itself).
    let proxy = RunningProxy::start(&seed_policy("auth_cache_ttl = 0"));
    assert_accepted(&proxy, USER, PASSWORD, "first");
    assert_refused(&proxy, USER, "bad", "second");
    assert_accepted(&proxy, USER, PASSWORD, "third");
    let calls = recorded_calls(proxy.dir());
    assert_eq!(calls.len(), 3, "{calls:?}");
    let lens: Vec<usize> = calls.iter().map(|c| c.password_len).collect();
    assert_eq!(lens, [PASSWORD.len(), 3, PASSWORD.len()]);
}

#[test]
fn passwords_and_usernames_arrive_byte_exact() {
    // Non-ASCII and Lua-magic characters must reach Lua unchanged.
    let user = "üser%.-[x]";
    let pass = "p\u{e4}ss wörd'\"\\%s";
    let handler = format!(
        "return username == {} and password == {}",
        lua_string(user.as_bytes()),
        lua_string(pass.as_bytes())
    );
    let proxy = RunningProxy::start(&policy("", Some(&handler)));
    assert_accepted(&proxy, user, pass, "non-ASCII credentials");
    assert_refused(&proxy, user, "p\u{e4}ss", "prefix of the password");
}

/// A Lua string literal of `bytes` with every byte escaped.
fn lua_string(bytes: &[u8]) -> String {
    let escaped: String = bytes.iter().map(|b| format!("\\{b:03}")).collect();
    format!("'{escaped}'")
}

#[test]
fn concurrent_logins_are_each_decided_by_the_policy() {
    let proxy = RunningProxy::start(&seed_policy("auth_cache_ttl = 0"));
    let addr = proxy.addr;
    let clients: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                let pass = if i % 3 == 0 { "wrong" } else { PASSWORD };
                let mut stream = connect(addr);
                assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
                let status = login(&mut stream, USER.as_bytes(), pass.as_bytes());
                let expected = if i % 3 == 0 { [1, 1] } else { [1, 0] };
                assert_eq!(status, expected, "client {i} with password {pass:?}");
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    assert_eq!(recorded_calls(proxy.dir()).len(), 12);
}
