//! Unit tests of `kumo.aaa` on a bare Lua state.

use super::*;

fn state() -> (Lua, Arc<AaaContext>) {
    let lua = Lua::new();
    crate::kumo_module::register(&lua, &Default::default()).unwrap();
    let ctx = AaaContext::new();
    aaa_registrar(ctx.clone())(&lua).unwrap();
    (lua, ctx)
}

fn eval<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> mlua::Result<T> {
    lua.load(code).eval()
}

const MAP: &str = r#"
[[acl."http_listener/*/metrics"]]
allow = true
privileges = ["GET"]
identity.Group = "ops"
"#;

#[test]
fn load_map_and_query_with_fall_back() {
    let (lua, _) = state();
    lua.globals().set("MAP", MAP).unwrap();
    let allowed: bool = eval(
        &lua,
        r#"
        local map = kumo.aaa.load_acl_map { key_data = MAP }
        assert(map:get('http_listener/*/metrics'))
        assert(map:get('nope') == nil)
        kumo.on('get_acl_definition', function(name) return map:get(name) end)
        local r = kumo.aaa.make_http_url_resource('127.0.0.1:8000', 'http://x:1/metrics?a=b')
        local ops = { peer_address = '10.0.0.1', identities = {}, groups = { 'ops' } }
        local res = kumo.aaa.query_resource_access(r, ops, 'GET')
        assert(res.matching_resource == 'http_listener/*/metrics', tostring(res.matching_resource))
        assert(res.rule.access == 'Allow')
        -- Not in the map: the default map answers (trusted group may read).
        local trusted = { groups = { 'kumomta:http-listener-trusted-ip' } }
        local status = kumo.aaa.query_resource_access(
          kumo.aaa.make_http_url_resource('127.0.0.1:8000', '/proxy/status'), {}, 'GET')
        assert(status.allow)
        local scott = { identities = { { identity = 'scott', context = 'HttpBasicAuth' } } }
        local denied = kumo.aaa.query_resource_access(r, scott, 'GET')
        assert(not denied.allow)
        assert(denied.rule == nil)
        return res.allow
        "#,
    )
    .unwrap();
    assert!(allowed);
}

#[test]
fn get_acl_definition_replaces_and_fall_back_can_be_turned_off() {
    let (lua, ctx) = state();
    let result: (bool, bool) = eval(
        &lua,
        r#"
        local deny_all = kumo.aaa.make_access_control_list {
          { criteria = { Identity = { Any = {} } }, privilege = 'GET', access = 'Deny' },
        }
        kumo.on('get_acl_definition', function(name)
          if name == 'http_listener/*/proxy/status' then return deny_all end
          return nil
        end)
        local status = kumo.aaa.make_http_url_resource('127.0.0.1:1', '/proxy/status')
        local liveness = kumo.aaa.make_http_url_resource('127.0.0.1:1', '/api/check-liveness')
        local a = kumo.aaa.query_resource_access(status, {}, 'GET').allow
        local b = kumo.aaa.query_resource_access(liveness, {}, 'GET').allow
        kumo.aaa.set_fall_back_to_acl_map(false)
        assert(not kumo.aaa.query_resource_access(liveness, {}, 'GET').allow)
        return a, b
        "#,
    )
    .unwrap();
    assert_eq!(result, (false, true));
    assert!(!ctx.fall_back_to_acl_map());
}

#[test]
fn all_criteria_from_lua_tables() {
    let (lua, _) = state();
    let allowed: Vec<bool> = eval(
        &lua,
        r#"
        local acl = kumo.aaa.make_access_control_list {
          { criteria = { Not = { Machine = '127.0.0.0/8' } }, privilege = 'connect', access = 'Deny' },
          { criteria = { AllOf = { { Identity = { Authenticated = {} } }, { Identity = { Group = 'g' } } } },
            privilege = 'connect', access = 'Allow' },
          { criteria = { AnyOf = { { Identity = { Individual = 'root' } }, { Identity = { Unauthenticated = {} } } } },
            privilege = 'connect', access = 'Allow' },
        }
        kumo.on('get_acl_definition', function(name) if name == 'x' then return acl end end)
        kumo.aaa.set_fall_back_to_acl_map(false)
        local function q(auth) return kumo.aaa.query_resource_access('x', auth, 'connect').allow end
        local alice = { identity = 'alice', context = 'ProxyAuthRfc1929' }
        local root = { identity = 'root', context = 'ProxyAuthRfc1929' }
        return {
          q { peer_address = '10.0.0.1' },                                  -- Not Machine → deny
          q { peer_address = '127.0.0.1', identities = { alice }, groups = { 'g' } },  -- AllOf
          q { peer_address = '127.0.0.1', identities = { alice } },         -- no rule
          q { peer_address = '127.0.0.1', identities = { root } },          -- AnyOf individual
          q { peer_address = '127.0.0.1' },                                 -- AnyOf unauthenticated
        }
        "#,
    )
    .unwrap();
    assert_eq!(allowed, [false, true, false, true, true]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let (lua, _) = state();
    for (code, needle) in [
        ("kumo.aaa.load_acl_map { key_data = 'acl = 5' }", "invalid ACL map"),
        ("kumo.aaa.load_acl_map '/nonexistent/acl.toml'", "/nonexistent/acl.toml"),
        (
            "kumo.aaa.make_access_control_list { { criteria = { Somebody = 'x' }, privilege = 'GET', access = 'Allow' } }",
            "Somebody",
        ),
        (
            "kumo.aaa.make_access_control_list { { criteria = { Machine = '10.0.0.0/33' }, privilege = 'GET', access = 'Allow' } }",
            "10.0.0.0/33",
        ),
        ("kumo.aaa.make_http_url_resource('nope', '/')", "nope"),
        ("kumo.aaa.query_resource_access('', {}, 'GET')", "empty"),
        (
            "kumo.aaa.query_resource_access('x', { identities = { { identity = 'a', context = 'Magic' } } }, 'GET')",
            "Magic",
        ),
        ("kumo.aaa.configure_acct_log { log_dir = '/tmp/x', colour = 1 }", "colour"),
        (
            "kumo.aaa.configure_acct_log { log_dir = '/tmp/x', compression_level = 99 }",
            "compression_level",
        ),
        (
            "kumo.aaa.configure_acct_log { log_dir = '/proc/no-such-acct-dir' }",
            "creating log_dir /proc/no-such-acct-dir",
        ),
    ] {
        let err = lua.load(code).exec().unwrap_err().to_string();
        assert!(err.contains(needle), "{code}: {err}");
    }
}

#[test]
fn url_paths() {
    assert_eq!(url_path("http://h:1/a/b?x=1#f"), "/a/b");
    assert_eq!(url_path("https://h"), "/");
    assert_eq!(url_path("/metrics"), "/metrics");
}

#[test]
fn configure_acct_log_is_idempotent_per_config() {
    let (lua, ctx) = state();
    let dir = tempfile::tempdir().unwrap();
    lua.globals()
        .set("DIR", dir.path().display().to_string())
        .unwrap();
    let code = "kumo.aaa.configure_acct_log { log_dir = DIR, max_segment_duration = '1s', log_authz_allow = false }";
    lua.load(code).exec().unwrap();
    let first = ctx.accounting().unwrap();
    lua.load(code).exec().unwrap();
    assert!(Arc::ptr_eq(&first, &ctx.accounting().unwrap()));
    assert!(!first.config().log_authz_allow);
    assert_eq!(
        first.config().max_segment_duration,
        Some(Duration::from_secs(1))
    );
    ctx.close_accounting();
}

#[test]
fn cache_ttls_are_set_from_lua_and_bad_values_name_the_function() {
    let (lua, _) = state();
    eval::<()>(
        &lua,
        "kumo.aaa.set_acl_cache_ttl '5 minutes'\nkumo.aaa.set_check_cache_ttl(30)",
    )
    .unwrap();
    for (code, function) in [
        ("kumo.aaa.set_acl_cache_ttl 'soon'", "set_acl_cache_ttl"),
        ("kumo.aaa.set_check_cache_ttl(-1)", "set_check_cache_ttl"),
        ("kumo.aaa.set_check_cache_ttl {}", "set_check_cache_ttl"),
        ("kumo.aaa.set_acl_cache_ttl '20 years'", "set_acl_cache_ttl"),
    ] {
        let err = eval::<()>(&lua, code).unwrap_err().to_string();
        assert!(err.contains(function), "{code}: {err}");
    }
}

#[test]
fn zero_cache_ttls_are_stored() {
    let (lua, ctx) = state();
    eval::<()>(
        &lua,
        "kumo.aaa.set_check_cache_ttl(0)\nkumo.aaa.set_acl_cache_ttl(0)",
    )
    .unwrap();
    assert_eq!(ctx.decision_ttl(), std::time::Duration::ZERO);
    assert_eq!(ctx.definition_ttl(), std::time::Duration::ZERO);
}
