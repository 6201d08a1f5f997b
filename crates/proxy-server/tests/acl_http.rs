//! Issue 7 on the HTTP listener: ACL maps acting on AuthInfo groups,
//! `get_acl_definition` replacing one resource's ACL, and HTTP logins in
//! the accounting log without passwords or tokens.

mod support;

use std::io::Read;
use support::*;

/// Basic auth: `alice` (group `ops`) and `scott` (no group); bearer token
/// `tok-ops-123` is `alice` as well.
const HANDLERS: &str = r#"
local users = {
  alice = { password = 'alice-pw', groups = { 'ops' } },
  scott = { password = 'tiger', groups = {} },
}
kumo.on('http_server_validate_auth_basic', function(user, password)
  if not password or password == '' then
    return false
  end
  local entry = users[user]
  if not entry or entry.password ~= password then
    return false
  end
  return {
    identities = { { identity = user, context = 'HttpBasicAuth' } },
    groups = entry.groups,
  }
end)
kumo.on('http_server_validate_auth_bearer', function(token)
  if token ~= 'tok-ops-123' then
    return false
  end
  return { identities = { { identity = 'alice', context = 'BearerToken' } }, groups = { 'ops' } }
end)
"#;

const OPS_MAP: &str = r#"
[[acl."http_listener/*/metrics"]]
allow = true
privileges = ["GET"]
identity.Group = "ops"
"#;

fn auth_args(header: &str) -> [&str; 2] {
    ["-H", header]
}

#[test]
fn acl_map_lets_group_ops_read_metrics_from_an_untrusted_address() {
    let policy = http_policy(
        // 127.0.0.1 is not trusted here, so curl is an untrusted client.
        &["listen = '127.0.0.1:0', trusted_hosts = { '10.0.0.0/8' }"],
        &format!(
            "local map = kumo.aaa.load_acl_map '@DIR@/acl.toml'\n\
             kumo.on('get_acl_definition', function(name) return map:get(name) end)\n{HANDLERS}"
        ),
    );
    let cmd = ProxyCommand::with_policy(&policy);
    cmd.write_file("acl.toml", OPS_MAP);
    let proxy = cmd.start();
    let http = proxy.http_addr();

    let alice = basic_header("alice:alice-pw");
    let reply = curl(http, "/metrics", &auth_args(&alice));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("proxy_connections_accepted_total"));
    let reply = curl(
        http,
        "/metrics",
        &["-H", "Authorization: Bearer tok-ops-123"],
    );
    assert_eq!(reply.status, 200, "{reply:?}");

    let scott = basic_header("scott:tiger");
    let reply = curl(http, "/metrics", &auth_args(&scott));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply.body.contains("scott") && reply.body.contains("GET"),
        "{reply:?}"
    );
    let reply = curl(http, "/metrics", &[]);
    assert_eq!(reply.status, 401, "{reply:?}");
    // Names the map does not have still come from the default map.
    assert_eq!(curl(http, "/proxy/status", &[]).status, 200);
    assert_eq!(curl(http, "/metrics.json", &auth_args(&alice)).status, 403);
}

#[test]
fn get_acl_definition_overrides_one_resource() {
    let policy = http_policy(
        &["listen = '127.0.0.1:0'"],
        &format!(
            r#"
local only_scott = kumo.aaa.make_access_control_list {{
  {{ criteria = {{ Identity = {{ Individual = 'scott' }} }}, privilege = 'GET', access = 'Allow' }},
}}
kumo.on('get_acl_definition', function(name)
  if name == 'http_listener/*/proxy/status' then
    return only_scott
  end
  return nil
end)
{HANDLERS}"#
        ),
    );
    let proxy = RunningProxy::start(&policy);
    let http = proxy.http_addr();
    // Open to everyone by default; now scott only (trusted host or not).
    assert_eq!(curl(http, "/proxy/status", &[]).status, 401);
    let alice = basic_header("alice:alice-pw");
    assert_eq!(curl(http, "/proxy/status", &auth_args(&alice)).status, 403);
    let scott = basic_header("scott:tiger");
    assert_eq!(curl(http, "/proxy/status", &auth_args(&scott)).status, 200);
    // Every other resource keeps the default map's ACL.
    assert_eq!(curl(http, "/metrics", &[]).status, 200, "trusted host");
    assert_eq!(curl(http, "/metrics", &auth_args(&scott)).status, 200);
}

#[test]
fn http_logins_and_denials_are_accounted_without_secrets() {
    let acct = tempfile::tempdir().unwrap();
    let dir = acct.path().join("segments");
    let policy = http_policy(
        &["listen = '127.0.0.1:0', trusted_hosts = { '10.0.0.0/8' }"],
        &format!(
            "kumo.aaa.configure_acct_log {{ log_dir = '{}', log_authz_allow = false }}\n{HANDLERS}",
            dir.display()
        ),
    );
    let proxy = RunningProxy::start(&policy);
    let http = proxy.http_addr();
    let wrong = basic_header("alice:wrong-secret-pw");
    assert_eq!(curl(http, "/metrics", &auth_args(&wrong)).status, 401);
    let bad_token = "Authorization: Bearer tok-wrong-456";
    assert_eq!(curl(http, "/metrics", &["-H", bad_token]).status, 401);
    let scott = basic_header("scott:tiger");
    assert_eq!(curl(http, "/metrics", &auth_args(&scott)).status, 403);
    let token = "Authorization: Bearer tok-ops-123";
    assert_eq!(curl(http, "/proxy/status", &["-H", token]).status, 200);
    let finished = proxy.terminate();
    assert!(finished.status.success(), "{}", finished.stderr);

    let mut text = String::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        zstd::Decoder::new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
    }
    for secret in [
        "wrong-secret-pw",
        "tiger",
        "tok-ops-123",
        "tok-wrong-456",
        "alice-pw",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} in the accounting log:\n{text}"
        );
    }
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let authn: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "Authentication")
        .collect();
    let outcomes: Vec<(String, bool)> = authn
        .iter()
        .map(|r| {
            (
                r["attempted_identity"]["identity"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                r["success"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("alice".to_owned(), false),
            ("bearer-token".to_owned(), false),
            ("scott".to_owned(), true),
            ("bearer-token".to_owned(), true),
        ],
        "{text}"
    );
    assert_eq!(authn[3]["auth_info"]["identities"][0]["identity"], "alice");
    let authz: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "Authorization")
        .collect();
    // Allowed decisions are switched off; scott's 403 is the one denial
    // (the 401s stopped at authentication).
    assert_eq!(authz.len(), 1, "{text}");
    assert_eq!(authz[0]["access"], "Deny");
    assert_eq!(authz[0]["privilege"], "GET");
    assert_eq!(authz[0]["auth_info"]["identities"][0]["identity"], "scott");
    assert!(authz[0]["target_resource"]
        .as_str()
        .unwrap()
        .ends_with("/metrics"));
}
