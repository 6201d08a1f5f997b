//! The policy library in the real daemon, driven by `curl -u` against its
//! HTTP listener (`http_server_validate_auth_basic`): logins decided by
//! SQLite, Redis and an HTTP login service started by the test, each behind
//! `kumo.memoize`; handlers whose back end fails answer 500; `pre_init`.
//!
//! The listener remembers verdicts per credential (60 s); a config epoch
//! bump makes it ask the policy again, so a repeated login after a bump
//! reaches Lua and shows whether `kumo.memoize` answered it.

#[path = "../../policy-lib/tests/support/backends.rs"]
mod backends;
#[path = "../../policy-lib/tests/support/login_policies.rs"]
mod login_policies;
mod support;

use backends::{free_port, sqlite3, AuthService, RedisServer};
use login_policies::*;
use support::{curl, Daemon, Workspace};

const LOGIN_POLICY: &str = r#"
local kumo = require 'kumo'
local login = require 'login'
kumo.on('init', function()
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('http_server_validate_auth_basic', function(user, password)
  return login.check(user, password)
end)
"#;

/// A daemon whose Basic logins go to `login.check`, `module` being
/// `login.lua`; `prepare` may add files first.
fn login_daemon(module: &str, prepare: impl FnOnce(&Workspace)) -> (Workspace, Daemon) {
    let ws = Workspace::new(LOGIN_POLICY);
    ws.write("login.lua", module);
    prepare(&ws);
    let daemon = ws.start();
    (ws, daemon)
}

/// The status of `GET /metrics` with `-u user:password`: 200 accepted, 401
/// refused, 500 the handler failed.
fn login_status(daemon: &Daemon, user: &str, password: &str) -> u16 {
    let credentials = format!("{user}:{password}");
    curl(&daemon.url("/metrics"), &["-u", &credentials]).status
}

fn bump_epoch(daemon: &Daemon) {
    let reply = curl(&daemon.url("/api/admin/bump-config-epoch"), &["-X", "POST"]);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn sqlite_logins_behind_memoize() {
    let (ws, daemon) = login_daemon(SQLITE_LOGIN, |ws| {
        sqlite3(&ws.dir().join("auth.db"), &sqlite_schema());
    });
    assert_eq!(login_status(&daemon, LOGIN_USER, LOGIN_PASSWORD), 200);
    assert_eq!(login_status(&daemon, LOGIN_USER, "wrong-password"), 401);
    // The database forgets the user and the listener's verdicts are
    // dropped: the login still succeeds, answered by kumo.memoize.
    sqlite3(&ws.dir().join("auth.db"), "DELETE FROM auth");
    bump_epoch(&daemon);
    assert_eq!(login_status(&daemon, LOGIN_USER, LOGIN_PASSWORD), 200);
    assert_eq!(login_status(&daemon, "erin", "whatever"), 401);
    assert!(!daemon.output().contains(LOGIN_PASSWORD));
}

#[test]
fn redis_logins_behind_memoize() {
    let server = RedisServer::start();
    server.cli(&["HSET", "nephele:users", LOGIN_USER, LOGIN_PASSWORD]);
    let (_ws, daemon) = login_daemon(&redis_login(&server.url()), |_| {});
    assert_eq!(login_status(&daemon, LOGIN_USER, LOGIN_PASSWORD), 200);
    // Another credential reaches Lua, but the user's record is cached.
    assert_eq!(login_status(&daemon, LOGIN_USER, "wrong-password"), 401);
    bump_epoch(&daemon);
    assert_eq!(login_status(&daemon, LOGIN_USER, LOGIN_PASSWORD), 200);
    assert_eq!(server.calls("hget"), 1);
}

#[test]
fn http_service_logins_behind_memoize() {
    let service = AuthService::start(&[(LOGIN_USER, LOGIN_PASSWORD)]);
    let (_ws, daemon) = login_daemon(&http_login(&service.url()), |_| {});
    assert_eq!(login_status(&daemon, LOGIN_USER, LOGIN_PASSWORD), 200);
    assert_eq!(login_status(&daemon, LOGIN_USER, "wrong-password"), 401);
    assert_eq!(service.calls(), 2);
    bump_epoch(&daemon);
    assert_eq!(login_status(&daemon, LOGIN_USER, LOGIN_PASSWORD), 200);
    assert_eq!(login_status(&daemon, LOGIN_USER, "wrong-password"), 401);
    assert_eq!(service.calls(), 2, "both were memoize hits");
}

#[test]
fn a_failing_back_end_is_a_500_without_the_password() {
    let closed = free_port();
    let modules = [
        (SQLITE_LOGIN.to_string(), "no such table"),
        (
            redis_login(&format!("redis://127.0.0.1:{closed}")),
            "redis: query: connecting to",
        ),
        (
            http_login(&format!("http://127.0.0.1:{closed}/auth")),
            "kumo.http: send:",
        ),
    ];
    for (module, logged) in modules {
        let (_ws, daemon) = login_daemon(&module, |ws| {
            sqlite3(&ws.dir().join("auth.db"), "CREATE TABLE other (x)");
        });
        assert_eq!(login_status(&daemon, LOGIN_USER, LOGIN_PASSWORD), 500);
        daemon.wait_for_line(logged, support::WAIT_TIMEOUT);
        let output = daemon.output();
        assert!(!output.contains(LOGIN_PASSWORD), "{output}");
    }
}

#[test]
fn pre_init_runs_once_before_init_and_its_settings_hold() {
    let pre_init = r#"
kumo.on('pre_init', function()
  local f = assert(io.open('@DIR@/pre_init.txt', 'a'))
  f:write('ran\n')
  f:close()
end)
"#;
    let checked_init = LOGIN_POLICY.replace(
        "kumo.on('init', function()\n",
        "kumo.on('init', function()\n  assert(io.open('@DIR@/pre_init.txt'), 'pre_init has not run')\n",
    );
    let ws = Workspace::new(&format!("{checked_init}{pre_init}"));
    ws.write(
        "login.lua",
        "return { check = function() return false end }",
    );
    let daemon = ws.start();
    assert_eq!(curl(&daemon.url("/metrics"), &[]).status, 200);
    bump_epoch(&daemon);
    let runs = std::fs::read_to_string(ws.dir().join("pre_init.txt")).unwrap();
    assert_eq!(runs, "ran\n");
    drop(daemon);

    // Turning off the fall-back to the default ACL in pre_init holds: a
    // trusted peer may no longer read /metrics.
    let ws = Workspace::new(&format!(
        "{LOGIN_POLICY}kumo.on('pre_init', function() kumo.aaa.set_fall_back_to_acl_map(false) end)\n"
    ));
    ws.write(
        "login.lua",
        "return { check = function() return false end }",
    );
    let daemon = ws.start();
    assert_eq!(curl(&daemon.url("/metrics"), &[]).status, 401);
}
