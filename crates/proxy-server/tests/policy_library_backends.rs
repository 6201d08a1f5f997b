//! The policy library in the real proxy, driven by `curl --socks5`: logins
//! decided by SQLite, Redis and an HTTP login service (each started by the
//! test), every one behind `kumo.memoize`, whose cache is proven by the
//! back end not being asked again; handlers whose back end fails refuse
//! the login; and `pre_init`.

#[path = "../../policy-lib/tests/support/backends.rs"]
mod backends;
#[path = "../../policy-lib/tests/support/login_policies.rs"]
mod login_policies;
mod support;
#[path = "../../policy-lib/tests/support/upstream_examples.rs"]
mod upstream_examples;

use backends::{free_port, sqlite3, AuthService, RedisServer};
use login_policies::*;
use support::*;

/// A proxy requiring RFC 1929 logins decided by `login.check`, with
/// `module` as `login.lua` beside the policy; `prepare` may add files.
fn login_proxy(module: &str, prepare: impl FnOnce(&ProxyCommand)) -> RunningProxy {
    let policy = format!(
        "local login = require 'login'\n{}",
        with_http_listener(&policy(
            "require_auth = true",
            Some("return login.check(username, password)")
        ))
    );
    let cmd = ProxyCommand::with_policy(&policy);
    cmd.write_file("login.lua", module);
    prepare(&cmd);
    cmd.start()
}

/// Whether `curl --socks5 user:password@PROXY` fetched the page.
fn socks_login(proxy: &RunningProxy, http: &HttpServer, user: &str, password: &str) -> bool {
    let out = run_tool(
        std::process::Command::new(require_tool("curl"))
            .args(["--silent", "--show-error", "--max-time", "30", "--socks5"])
            .arg(format!("{user}:{password}@{}", proxy.addr))
            .arg(http.url("/")),
        None,
    );
    out.status.success() && out.stdout_text() == HELLO_BODY
}

#[test]
fn sqlite_logins_behind_memoize() {
    let proxy = login_proxy(SQLITE_LOGIN, |cmd| {
        sqlite3(&cmd.dir().join("auth.db"), &sqlite_schema());
    });
    let http = HttpServer::start();
    assert!(socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
    assert!(!socks_login(&proxy, &http, LOGIN_USER, "wrong-password"));
    // The database forgets the user; the same login still succeeds, so it
    // was answered from the memoize cache without reaching SQLite.
    sqlite3(&proxy.dir().join("auth.db"), "DELETE FROM auth");
    assert!(socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
    // New arguments do reach the (now empty) database.
    assert!(!socks_login(&proxy, &http, "erin", "whatever"));
    assert!(
        !proxy.stderr().contains(LOGIN_PASSWORD),
        "{}",
        proxy.stderr()
    );
}

#[test]
fn redis_logins_behind_memoize() {
    let server = RedisServer::start();
    server.cli(&["HSET", "nephele:users", LOGIN_USER, LOGIN_PASSWORD]);
    let proxy = login_proxy(&redis_login(&server.url()), |_| {});
    let http = HttpServer::start();
    assert!(socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
    assert_eq!(server.calls("hget"), 1);
    // The user's record is cached: a wrong password is refused in Lua and
    // a second good login succeeds, neither reaching Redis.
    assert!(!socks_login(&proxy, &http, LOGIN_USER, "wrong-password"));
    assert!(socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
    assert_eq!(server.calls("hget"), 1);
    assert!(!socks_login(&proxy, &http, "erin", "whatever"));
    assert_eq!(server.calls("hget"), 2);
}

#[test]
fn http_service_logins_behind_memoize() {
    let service = AuthService::start(&[(LOGIN_USER, LOGIN_PASSWORD)]);
    let proxy = login_proxy(&http_login(&service.url()), |_| {});
    let http = HttpServer::start();
    assert!(socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
    assert!(!socks_login(&proxy, &http, LOGIN_USER, "wrong-password"));
    assert_eq!(service.calls(), 2);
    assert!(socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
    assert_eq!(service.calls(), 2, "the second good login was a cache hit");
}

#[test]
fn a_failing_back_end_refuses_the_login() {
    let closed = free_port();
    let modules = [
        // No `auth` table: `sqlite: execute: no such table: auth`.
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
    let http = HttpServer::start();
    for (module, logged) in modules {
        let proxy = login_proxy(&module, |cmd| {
            sqlite3(&cmd.dir().join("auth.db"), "CREATE TABLE other (x)");
        });
        assert!(!socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
        let stderr = wait_for_stderr(&proxy, logged);
        assert!(!stderr.contains(LOGIN_PASSWORD), "{stderr}");
    }
}

#[test]
fn the_upstream_examples_run_inside_a_login_handler() {
    let server = RedisServer::start();
    let service = AuthService::start(&[]);
    let echo = format!("http://{}/echo", service.addr);
    let examples: Vec<String> = [
        upstream_examples::SQLITE,
        upstream_examples::REDIS,
        upstream_examples::HTTP_CLIENT,
        upstream_examples::HTTP_BUILD_URL,
    ]
    .iter()
    .map(|example| {
        let example = upstream_examples::with_addresses(example, &server.url(), &echo);
        format!("do\n{example}\nend")
    })
    .collect();
    let handler = format!(
        "{}\nreturn username == '{LOGIN_USER}' and password == '{LOGIN_PASSWORD}'",
        examples.join("\n")
    );
    let proxy = RunningProxy::start(&policy("require_auth = true", Some(&handler)));
    let http = HttpServer::start();
    assert!(socks_login(&proxy, &http, LOGIN_USER, LOGIN_PASSWORD));
    assert_eq!(server.cli(&["GET", "test-count"]).trim(), "1");
    let finished = proxy.terminate();
    assert!(finished.stdout.contains("deleted rows:\t2"), "{finished:?}");
    assert!(finished.stdout.contains("200\tOK"), "{finished:?}");
}

/// The proxy's stderr once it contains `needle` (the log line may reach
/// the test's reader thread just after curl has finished).
fn wait_for_stderr(proxy: &RunningProxy, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stderr = proxy.stderr();
        if stderr.contains(needle) {
            return stderr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in\n{stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A `pre_init` handler recording each run in `@DIR@/pre_init.txt`, then
/// running `extra`.
fn pre_init_handler(extra: &str) -> String {
    format!(
        "kumo.on('pre_init', function()\n\
           local f = assert(io.open('@DIR@/pre_init.txt', 'a'))\n\
           f:write('ran\\n')\n\
           f:close()\n\
           {extra}\n\
         end)\n"
    )
}

#[test]
fn pre_init_settings_hold_for_the_listeners() {
    // The default ACL lets a trusted peer read /metrics; with the fall-back
    // to it turned off in pre_init (and no get_acl_definition), nothing is
    // allowed any more.
    let policy = format!(
        "{}{}",
        http_policy(&["listen = '127.0.0.1:0'"], ""),
        pre_init_handler("kumo.aaa.set_fall_back_to_acl_map(false)")
    );
    let proxy = RunningProxy::start(&policy);
    assert_eq!(curl(proxy.http_addr(), "/metrics", &[]).status, 401);
}

#[test]
fn pre_init_runs_once_per_process_before_proxy_init() {
    let policy = format!(
        "{}{}",
        http_policy(&["listen = '127.0.0.1:0'"], ""),
        pre_init_handler("")
    )
    .replace(
        "kumo.on('proxy_init', function()\n",
        "kumo.on('proxy_init', function()\n  \
           assert(io.open('@DIR@/pre_init.txt'), 'pre_init has not run')\n",
    );
    let proxy = RunningProxy::start(&policy);
    assert_eq!(curl(proxy.http_addr(), "/metrics", &[]).status, 200);
    let bump = curl(
        proxy.http_addr(),
        "/api/admin/bump-config-epoch",
        &["-X", "POST"],
    );
    assert_eq!(bump.status, 200, "{bump:?}");
    assert_eq!(curl(proxy.http_addr(), "/metrics", &[]).status, 200);
    let runs = std::fs::read_to_string(proxy.dir().join("pre_init.txt")).unwrap();
    assert_eq!(runs, "ran\n");
}
