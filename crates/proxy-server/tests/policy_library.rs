//! The policy library in the real binary: a `proxy_server_auth_rfc1929`
//! handler that checks the username's shape with `kumo.regex`, the client's
//! address with a `kumo.cidr` map, and the password against salted SHA-256
//! digests (`kumo.digest`) kept in a JSON credential file (`kumo.json_parse`),
//! driven by curl `--socks5`. It also logs through `kumo.log_*` after
//! raising the log level with `kumo.set_diagnostic_log_filter`, and sleeps
//! briefly with `kumo.time.sleep` (an async function) in the handler.

mod support;

use std::process::Command;
use support::*;

const PASSWORD: &str = "correct horse battery";

/// `sha256('pepper-salt-1' .. PASSWORD)` and `sha256('pepper-salt-2' ..
/// PASSWORD)`, computed outside this project (Python's hashlib).
const USERS_JSON: &str = r#"{
  // comments are allowed, as upstream's parser allows them
  "alice": { "salt": "pepper-salt-1",
             "sha256": "d7091c966913c6deddcb02f76687f64318771f0ae5f86b56627869a3fa0ca70a" },
  "Bad User": { "salt": "pepper-salt-2",
             "sha256": "9c85df0f3ad767fce876cd6b31e2ff98106b465032fd579d5afeee4c8153778e" }
}"#;

const POLICY: &str = r#"
local kumo = require 'kumo'
local proxy = require 'proxy'

local file = assert(io.open('@DIR@/users.json'))
local USERS = kumo.json_parse(file:read('a'))
file:close()
local USERNAME = kumo.regex.compile '^[a-z][a-z0-9_.-]{0,31}$'
local CLIENTS = kumo.cidr.make_map { ['127.0.0.0/8'] = 'loopback' }

kumo.on('proxy_init', function()
  kumo.set_diagnostic_log_filter 'info,lua=debug'
  proxy.start_proxy_listener {
    listen = '127.0.0.1:0', timeout = '5 seconds', require_auth = true,
    -- the test's HTTP server listens on loopback, prohibited by default
    prohibited_destinations = {},
  }
end)

kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)
  kumo.time.sleep(0.001) -- async library functions work in handlers
  if not USERNAME:is_match(username) then
    kumo.log_warn('refused: username', kumo.string.trim(username), 'has a bad shape')
    return false
  end
  local network = CLIENTS[conn_meta.peer_address]
  if network == nil then
    return false
  end
  local user = USERS[username]
  if user == nil then
    return false
  end
  local ok = kumo.digest.sha256(user.salt, password).hex == user.sha256
  kumo.log_debug('login of', username, 'from', network, 'ok:', ok)
  return ok
end)
"#;

fn start_proxy() -> RunningProxy {
    let command = ProxyCommand::with_policy(POLICY);
    command.write_file("users.json", USERS_JSON);
    command.start()
}

fn curl_through(proxy: &RunningProxy, user: &str, pass: &str, url: &str) -> ToolOutput {
    // --proxy-user, not user:pass@ in the proxy URL: the password has spaces.
    let credentials = format!("{user}:{pass}");
    let addr = proxy.addr.to_string();
    run_tool(
        Command::new(require_tool("curl")).args([
            "--silent",
            "--show-error",
            "--max-time",
            "30",
            "--socks5",
            &addr,
            "--proxy-user",
            &credentials,
            url,
        ]),
        None,
    )
}

#[test]
fn digest_checked_login_accepts_the_right_password_and_refuses_others() {
    let proxy = start_proxy();
    let http = HttpServer::start();

    let out = curl_through(&proxy, "alice", PASSWORD, &http.url("/"));
    out.assert_success("alice with her password");
    assert_eq!(out.stdout_text(), HELLO_BODY);

    let out = curl_through(&proxy, "alice", "correct horse batterY", &http.url("/"));
    out.assert_failure("alice with a wrong password");
    assert!(out.stdout.is_empty(), "no body: {}", out.stdout_text());

    let out = curl_through(&proxy, "bob", PASSWORD, &http.url("/"));
    out.assert_failure("a user not in the credential file");

    // The right password, but a username the regex refuses.
    let out = curl_through(&proxy, "Bad User", PASSWORD, &http.url("/"));
    out.assert_failure("a username of the wrong shape");

    let finished = proxy.terminate();
    let log = finished.stderr;
    let warn_line = 1 + POLICY
        .lines()
        .position(|line| line.contains("kumo.log_warn("))
        .expect("the policy logs a warning");
    let expected = format!("policy.lua:{warn_line}: refused: username Bad User has a bad shape");
    let line_of = |text: &str| {
        log.lines()
            .find(|line| line.contains(text))
            .map(str::to_owned)
    };
    let warn = line_of(&expected).unwrap_or_else(|| panic!("no {expected:?} in {log}"));
    assert!(
        warn.contains(" WARN ") && warn.contains(" lua: "),
        "kumo.log_warn logs at WARN with target lua: {warn}"
    );
    let debug = line_of("login of alice from loopback ok: true").unwrap_or_else(|| {
        panic!("kumo.log_debug, enabled by kumo.set_diagnostic_log_filter: {log}")
    });
    assert!(
        debug.contains(" DEBUG ") && debug.contains(" lua: "),
        "{debug}"
    );
    assert!(
        log.contains("login of alice from loopback ok: false"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "no password in the log: {log}");
}
