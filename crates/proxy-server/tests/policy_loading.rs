//! Loading the policy: every documented listener key is accepted, an
//! unknown key or a Lua error stops the start with a message that names the
//! problem, `require` finds modules next to the policy, and `--validate`.

mod support;

use support::*;

fn assert_start_fails(finished: &Finished, needles: &[&str], why: &str) {
    assert!(
        !finished.status.success(),
        "{why}: expected a non-zero exit, got {:?}\n--- stderr ---\n{}",
        finished.status,
        finished.stderr
    );
    for needle in needles {
        assert!(
            finished.stderr.contains(needle),
            "{why}: stderr should mention {needle:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            finished.stderr,
            finished.stdout
        );
    }
    assert!(
        !finished.stderr.contains(LISTENER_MARKER),
        "{why}: no listener should have been started\n{}",
        finished.stderr
    );
}

#[test]
fn unknown_listener_key_fails_start_naming_the_key() {
    let finished =
        ProxyCommand::with_policy(&policy("frobnicate_widgets = true", None)).run_to_exit();
    assert_start_fails(&finished, &["frobnicate_widgets"], "unknown key");
}

#[test]
fn durations_past_ten_years_fail_start_naming_the_key() {
    for keys in [
        "idle_timeout = '11 years'",
        "tcp_keepalive = { time = 1e12 }",
        "auth_failure_limit = { block_for = '50 years' }",
    ] {
        let finished = ProxyCommand::with_policy(&policy(keys, None)).run_to_exit();
        let key = keys.split(" = ").next().unwrap();
        assert_start_fails(&finished, &[key, "10 years"], keys);
    }
}

#[test]
fn misspelled_listener_key_fails_start_naming_the_key() {
    let finished = ProxyCommand::with_policy(&policy("require_aut = true", None)).run_to_exit();
    assert_start_fails(&finished, &["require_aut"], "misspelled key");
}

#[test]
fn bad_nested_keys_fail_start_naming_the_problem() {
    let finished =
        ProxyCommand::with_policy(&policy("auth_failure_limit = { max_failure = 3 }", None))
            .run_to_exit();
    assert_start_fails(
        &finished,
        &["max_failure"],
        "unknown auth_failure_limit key",
    );
    let finished =
        ProxyCommand::with_policy(&policy("auth_failure_limit = { period = '0s' }", None))
            .run_to_exit();
    assert_start_fails(
        &finished,
        &["period and block_for must be greater than zero"],
        "zero period",
    );
    let finished =
        ProxyCommand::with_policy(&policy("tcp_keepalive = { enable = true }", None)).run_to_exit();
    assert_start_fails(&finished, &["enable"], "unknown tcp_keepalive key");
}

#[test]
fn lua_syntax_error_fails_start_with_file_and_line() {
    let text = "local kumo = require 'kumo'\n\
                kumo.on('proxy_init', function()\n\
                \x20 local x = = 1\n\
                end)\n";
    let finished = ProxyCommand::with_policy(text).run_to_exit();
    assert_start_fails(&finished, &["policy.lua:3"], "syntax error on line 3");
}

#[test]
fn error_raised_in_proxy_init_fails_start_with_file_and_line() {
    let text = "local kumo = require 'kumo'\n\
                kumo.on('proxy_init', function()\n\
                \x20 error('no listener for you')\n\
                end)\n";
    let finished = ProxyCommand::with_policy(text).run_to_exit();
    assert_start_fails(
        &finished,
        &["no listener for you", "policy.lua:3"],
        "error in proxy_init",
    );
}

#[test]
fn missing_listen_key_fails_start_naming_it() {
    let text = "local kumo = require 'kumo'\n\
                local proxy = require 'proxy'\n\
                kumo.on('proxy_init', function()\n\
                \x20 proxy.start_proxy_listener { require_auth = true }\n\
                end)\n";
    let finished = ProxyCommand::with_policy(text).run_to_exit();
    assert_start_fails(&finished, &["listen"], "missing listen key");
}

#[test]
fn missing_policy_file_fails_start() {
    let finished = ProxyCommand::with_args(&["--proxy-config", "/nonexistent/nephele-policy.lua"])
        .run_to_exit();
    assert_start_fails(
        &finished,
        &["/nonexistent/nephele-policy.lua"],
        "missing policy file",
    );
}

#[test]
fn every_documented_listener_key_is_accepted() {
    let keys = "hostname = 'proxy.test', timeout = '30s', use_splice = false, \
                use_tls = false, require_auth = true, \
                tcp_keepalive = { enabled = true, time = '5 minutes', \
                interval = '30 seconds', retries = 3 }";
    let proxy = RunningProxy::start(&seed_policy(keys));
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"all keys");
}

#[test]
fn durations_accept_the_documented_forms() {
    for timeout in [
        "'60 seconds'",
        "'5 minutes'",
        "'30s'",
        "'1min'",
        "'2h'",
        "15",
    ] {
        let proxy = RunningProxy::start(&seed_policy(&format!("timeout = {timeout}")));
        let echo = spawn_echo_server("127.0.0.1:0");
        let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
        assert_echo_round_trip(&mut stream, timeout.as_bytes());
    }
}

#[test]
fn kumo_start_proxy_listener_alias_works() {
    let text = format!(
        "local kumo = require 'kumo'\n\
         kumo.on('proxy_init', function()\n  \
           kumo.start_proxy_listener {{ listen = '127.0.0.1:0', timeout = '5 seconds', prohibited_destinations = {{}} }}\n\
         end)\n\
         kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)\n\
         {SEED_HANDLER}\n\
         end)\n"
    );
    let proxy = RunningProxy::start(&text);
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"alias");
}

#[test]
fn two_listeners_from_one_policy() {
    let text = "local kumo = require 'kumo'\n\
                local proxy = require 'proxy'\n\
                kumo.on('proxy_init', function()\n\
                \x20 proxy.start_proxy_listener { listen = '127.0.0.1:0', prohibited_destinations = {} }\n\
                \x20 proxy.start_proxy_listener { listen = '127.0.0.1:0', require_auth = true, prohibited_destinations = {} }\n\
                end)\n";
    let proxy = ProxyCommand::with_policy(text).start_listeners(2);
    let echo = spawn_echo_server("127.0.0.1:0");
    let opened: Vec<bool> = proxy
        .listeners
        .iter()
        .map(|&listener| {
            let mut stream = connect(listener);
            greet(&mut stream, &[NO_AUTH]) == [5, NO_AUTH]
        })
        .collect();
    let mut sorted = opened.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [false, true],
        "one open, one require_auth: {opened:?}"
    );
    let open = proxy.listeners[opened.iter().position(|&o| o).unwrap()];
    let (mut stream, _) = open_session(open, None, &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"second listener");
}

#[test]
fn policy_can_require_a_module_next_to_it() {
    let cmd = ProxyCommand::with_policy(&policy(
        "",
        Some("return require('nephele_test_users').check(username, password)"),
    ));
    cmd.write_file(
        "nephele_test_users.lua",
        "local M = {}\n\
         function M.check(u, p) return u == 'proxyuser' and p == 'secretpassword' end\n\
         return M\n",
    );
    let proxy = cmd.start();
    let echo = spawn_echo_server("127.0.0.1:0");
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"module");
}

#[test]
fn validate_accepts_a_good_policy_without_serving() {
    // A port nobody listens on: validation must not bind it.
    let listen = closed_port().to_string();
    let finished = ProxyCommand::with_policy(&policy_on(&listen, "", Some(SEED_HANDLER)))
        .arg("--validate")
        .run_to_exit();
    assert!(
        finished.status.success(),
        "--validate of a good policy: {:?}\n{}",
        finished.status,
        finished.stderr
    );
    assert!(
        !finished.stderr.contains(LISTENER_MARKER),
        "--validate must not serve\n{}",
        finished.stderr
    );
}

#[test]
fn validate_rejects_an_unknown_key_with_exit_1() {
    let finished = ProxyCommand::with_policy(&policy("frobnicate_widgets = 1", None))
        .arg("--validate")
        .run_to_exit();
    assert_eq!(
        finished.status.code(),
        Some(1),
        "--validate of a bad policy\n{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("frobnicate_widgets"),
        "names the key\n{}",
        finished.stderr
    );
}

#[test]
fn validate_rejects_a_syntax_error_with_exit_1() {
    let finished = ProxyCommand::with_policy("local kumo = require 'kumo'\nkumo.on(\n")
        .arg("--validate")
        .run_to_exit();
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("policy.lua:"),
        "names the file\n{}",
        finished.stderr
    );
}
