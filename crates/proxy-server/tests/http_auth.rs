//! The HTTP listener's logins and access control, against the real binary
//! with curl: trusted hosts, Basic credentials decided by Lua, the verdict
//! cache, the default ACL, the failed-login limit, and no credential in any
//! log line.

mod support;

use support::*;

const TRUSTED_LISTENER: &str = "listen = '127.0.0.1:0'";
const UNTRUSTED_LISTENER: &str = "listen = '127.0.0.1:0', trusted_hosts = { '10.0.0.0/8' }";

fn start(listeners: &[&str], handlers: &str) -> RunningProxy {
    RunningProxy::start(&http_policy(listeners, handlers))
}

#[test]
fn trusted_peer_reads_metrics_without_credentials() {
    let proxy = start(&[TRUSTED_LISTENER], SEED_HTTP_HANDLER);
    let reply = curl(proxy.http_addr(), "/metrics", &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.body.contains("proxy_connections_accepted_total"),
        "{reply:?}"
    );
    assert!(proxy.http_calls().is_empty(), "no credentials, no Lua call");
    let unknown = curl(proxy.http_addr(), "/no/such/path", &[]);
    assert_eq!(unknown.status, 404);
}

#[test]
fn scott_tiger_is_accepted_and_a_wrong_password_is_401_even_from_a_trusted_peer() {
    let proxy = start(&[TRUSTED_LISTENER], SEED_HTTP_HANDLER);
    let addr = proxy.http_addr();
    assert_eq!(curl(addr, "/metrics", &["-u", "scott:tiger"]).status, 200);
    let refused = curl(addr, "/metrics", &["-u", "scott:bogus"]);
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"nephele\"")
    );
}

#[test]
fn a_user_without_password_reaches_lua_as_empty_string_or_nil() {
    let proxy = start(&[TRUSTED_LISTENER], SEED_HTTP_HANDLER);
    let addr = proxy.http_addr();
    // `-u scott:` sends `scott:` (empty password).
    assert_eq!(curl(addr, "/metrics", &["-u", "scott:"]).status, 401);
    // A header with no colon at all: the password is nil.
    let no_colon = basic_header("scott");
    assert_eq!(curl(addr, "/metrics", &["-H", &no_colon]).status, 401);
    assert_eq!(proxy.http_calls(), ["scott string 0", "scott nil -1"]);
}

#[test]
fn a_handler_that_raises_or_returns_another_type_is_500() {
    let handler = r#"
kumo.on('http_server_validate_auth_basic', function(user, password)
  if user == 'stringer' then return 'yes' end
  error('lookup failed for ' .. user .. ' with ' .. tostring(password))
end)
"#;
    let proxy = start(&[TRUSTED_LISTENER], handler);
    let addr = proxy.http_addr();
    let raised = curl(addr, "/metrics", &["-u", "scott:Raise-PW-1234"]);
    assert_eq!(raised.status, 500, "{raised:?}");
    assert!(!raised.body.contains("Raise-PW-1234"), "{raised:?}");
    assert!(!raised.body.contains("traceback"), "{raised:?}");
    assert_eq!(curl(addr, "/metrics", &["-u", "stringer:x"]).status, 500);
    // A malformed header or an unknown scheme is the client's fault.
    assert_eq!(
        curl(addr, "/metrics", &["-H", "Authorization: Basic !!!"]).status,
        400
    );
    assert_eq!(
        curl(addr, "/metrics", &["-H", "Authorization: Digest x=1"]).status,
        400
    );
}

#[test]
fn a_listener_not_trusting_the_client_applies_the_default_acl() {
    let proxy = start(&[UNTRUSTED_LISTENER], SEED_HTTP_HANDLER);
    let addr = proxy.http_addr();
    let anonymous = curl(addr, "/metrics", &[]);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(anonymous.header("www-authenticate").is_some());
    let scott = curl(addr, "/metrics", &["-u", "scott:tiger"]);
    assert_eq!(scott.status, 403, "{scott:?}");
    let named = format!("scott may not GET http_listener/{addr}/metrics");
    assert!(scott.body.contains(&named), "{scott:?}");
    let status = curl(addr, "/proxy/status", &[]);
    assert_eq!(status.status, 200, "{status:?}");
    assert!(status.body.contains("OK"), "{status:?}");
    // HEAD is allowed wherever GET is.
    assert_eq!(curl(addr, "/proxy/status", &["-I"]).status, 200);
    assert_eq!(curl(addr, "/metrics", &["-I"]).status, 401);
    assert_eq!(curl(addr, "/api-docs/openapi.json", &[]).status, 200);
    let admin = curl(
        addr,
        "/api/admin/bump-config-epoch",
        &["-X", "POST", "-u", "scott:tiger"],
    );
    assert_eq!(admin.status, 403, "{admin:?}");
}

#[test]
fn groups_of_an_authinfo_result_are_visible_to_the_acl() {
    let handler = r#"
kumo.on('http_server_validate_auth_basic', function(user, password)
  if not password or password == '' then return false end
  if user == 'ops' and password == 'ops-pw' then
    return { identities = { { identity = 'ops', context = 'HttpBasicAuth' } },
             groups = { 'kumomta:http-listener-trusted-ip' } }
  end
  if user == 'dev' and password == 'dev-pw' then
    return { identities = { { identity = 'dev', context = 'HttpBasicAuth' } },
             groups = { 'developers' } }
  end
  return false
end)
"#;
    let proxy = start(&[UNTRUSTED_LISTENER], handler);
    let addr = proxy.http_addr();
    assert_eq!(curl(addr, "/metrics", &["-u", "ops:ops-pw"]).status, 200);
    let dev = curl(addr, "/metrics", &["-u", "dev:dev-pw"]);
    assert_eq!(dev.status, 403, "{dev:?}");
    assert!(dev.body.contains("dev may not GET"), "{dev:?}");
}

#[test]
fn a_cidr_block_in_trusted_hosts() {
    let listener = "listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.0/30' }";
    let proxy = start(&[listener], SEED_HTTP_HANDLER);
    let addr = proxy.http_addr();
    // 127.0.0.1 lies in 127.0.0.0/30 ...
    assert_eq!(
        curl(addr, "/metrics", &["--interface", "127.0.0.1"]).status,
        200
    );
    // ... 127.0.0.9 does not (every 127/8 address is local on Linux).
    let outside = curl(addr, "/metrics", &["--interface", "127.0.0.9"]);
    assert_eq!(outside.status, 401, "{outside:?}");
    assert!(outside.body.contains("127.0.0.9"), "{outside:?}");
}

#[test]
fn a_cached_credential_does_not_call_the_policy_again() {
    let proxy = start(&[TRUSTED_LISTENER], SEED_HTTP_HANDLER);
    let addr = proxy.http_addr();
    for _ in 0..5 {
        assert_eq!(curl(addr, "/metrics", &["-u", "scott:tiger"]).status, 200);
        assert_eq!(curl(addr, "/metrics", &["-u", "scott:bogus"]).status, 401);
    }
    assert_eq!(
        proxy.http_calls(),
        ["scott string 5", "scott string 5"],
        "one call per distinct credential within the TTL"
    );
}

#[test]
fn repeated_failures_from_one_address_get_429_without_calling_lua() {
    let listener = "listen = '127.0.0.1:0', trusted_hosts = {}, \
                    auth_failure_limit = { max_failures = 2, period = '1 minute', block_for = '1 minute' }";
    let proxy = start(&[listener], SEED_HTTP_HANDLER);
    let addr = proxy.http_addr();
    for n in 0..3 {
        let wrong = format!("scott:wrong{n}");
        assert_eq!(curl(addr, "/proxy/status", &["-u", &wrong]).status, 401);
    }
    let blocked = curl(addr, "/proxy/status", &["-u", "scott:tiger"]);
    assert_eq!(blocked.status, 429, "{blocked:?}");
    let retry: u64 = blocked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(proxy.http_calls().len(), 3);
    // Without credentials the ACL alone decides.
    assert_eq!(curl(addr, "/proxy/status", &[]).status, 200);
}

#[test]
fn no_credential_in_any_log_line() {
    let handler = r#"
kumo.on('http_server_validate_auth_basic', function(user, password)
  if user == 'raiser' then error('bad password ' .. tostring(password)) end
  if not password or password == '' then return false end
  return user == 'scott' and password == 'Good-PW-9931'
end)
kumo.on('http_server_validate_auth_bearer', function(token)
  if token == 'Raise-Token-4411' then error('bad token ' .. token) end
  return token == 'Good-Token-5521'
end)
"#;
    let proxy = ProxyCommand::with_policy(&http_policy(&[UNTRUSTED_LISTENER], handler))
        .env("KUMO_PROXY_LOG", "trace")
        .start();
    let addr = proxy.http_addr();
    let secrets = [
        "Good-PW-9931",
        "Wrong-PW-7713",
        "Raise-PW-3319",
        "Good-Token-5521",
        "Raise-Token-4411",
    ];
    assert_eq!(
        curl(addr, "/proxy/status", &["-u", "scott:Good-PW-9931"]).status,
        200
    );
    assert_eq!(
        curl(addr, "/metrics", &["-u", "scott:Good-PW-9931"]).status,
        403
    );
    assert_eq!(
        curl(addr, "/metrics", &["-u", "scott:Wrong-PW-7713"]).status,
        401
    );
    assert_eq!(
        curl(addr, "/metrics", &["-u", "raiser:Raise-PW-3319"]).status,
        500
    );
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    assert_eq!(
        curl(addr, "/metrics", &["-H", &bearer("Good-Token-5521")]).status,
        403
    );
    assert_eq!(
        curl(addr, "/metrics", &["-H", &bearer("Raise-Token-4411")]).status,
        500
    );

    let finished = proxy.terminate();
    let output = format!("{}\n{}", finished.stderr, finished.stdout);
    assert!(
        output.contains("authentication handler failed"),
        "the failure is logged:\n{output}"
    );
    let encoded: Vec<String> = [
        "scott:Good-PW-9931",
        "scott:Wrong-PW-7713",
        "raiser:Raise-PW-3319",
    ]
    .iter()
    .map(|pair| {
        basic_header(pair)
            .trim_start_matches("Authorization: Basic ")
            .to_owned()
    })
    .collect();
    for needle in secrets.iter().map(|s| s.to_string()).chain(encoded) {
        let leaks: Vec<&str> = output.lines().filter(|l| l.contains(&needle)).collect();
        assert!(
            leaks.is_empty(),
            "{needle:?} appears in log lines:\n{}",
            leaks.join("\n")
        );
    }
}
