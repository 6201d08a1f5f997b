//! The pool against real policy files.

use policy::{Bytes, EventDecl, LuaAuthResult, PolicyError, PolicyLoader, PolicyPool};
use std::path::PathBuf;
use std::time::Duration;

const CHECK: EventDecl<(Bytes, Bytes), LuaAuthResult> = EventDecl::new("check");

fn write_policy(dir: &tempfile::TempDir, code: &str) -> PathBuf {
    let path = dir.path().join("policy.lua");
    std::fs::write(&path, code).unwrap();
    path
}

fn pool(code: &str) -> (tempfile::TempDir, PolicyPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, code);
    let pool = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(2)).unwrap();
    (dir, pool)
}

fn args(user: &str, pass: &str) -> (Bytes, Bytes) {
    (
        Bytes(user.as_bytes().to_vec()),
        Bytes(pass.as_bytes().to_vec()),
    )
}

const TABLE_POLICY: &str = r#"
local kumo = require 'kumo'
local db = { scott = 'tiger' }
kumo.on('check', function(user, password)
  if password == 'raise' then error('boom') end
  if password == 'string' then return 'yes' end
  if password == 'info' then
    return { identities = { { identity = user, context = 'ProxyAuthRfc1929' } }, groups = { 'g1' } }
  end
  if password == 'badinfo' then return { identities = {}, colour = 'red' } end
  if password == 'spin' then while true do end end
  if not password or password == '' then return false end
  return db[user] == password
end)
"#;

#[tokio::test]
async fn bool_and_auth_info_results() {
    let (_dir, pool) = pool(TABLE_POLICY);
    assert_eq!(
        pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
        Some(LuaAuthResult::Bool(true))
    );
    assert_eq!(
        pool.call(&CHECK, args("scott", "nope")).await.unwrap(),
        Some(LuaAuthResult::Bool(false))
    );
    assert_eq!(
        pool.call(&CHECK, args("scott", "")).await.unwrap(),
        Some(LuaAuthResult::Bool(false))
    );
    let Some(LuaAuthResult::AuthInfo(info)) = pool.call(&CHECK, args("ann", "info")).await.unwrap()
    else {
        panic!("expected AuthInfo")
    };
    assert_eq!(info.identities[0].identity, "ann");
    assert_eq!(info.groups, ["g1"]);
}

#[tokio::test]
async fn bad_handlers_are_errors() {
    let (_dir, pool) = pool(TABLE_POLICY);
    let err = pool.call(&CHECK, args("scott", "raise")).await.unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    let err = pool
        .call(&CHECK, args("scott", "string"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a boolean or an AuthInfo"),
        "{err}"
    );
    let err = pool
        .call(&CHECK, args("scott", "badinfo"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
    // The pool still serves after failures.
    assert_eq!(
        pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
        Some(LuaAuthResult::Bool(true))
    );
}

#[tokio::test]
async fn runaway_handler_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, TABLE_POLICY);
    let pool =
        PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_millis(200)).unwrap();
    let err = pool.call(&CHECK, args("scott", "spin")).await.unwrap_err();
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err}");
    // The VM hook ends the loop too, so the next call gets a state at once.
    assert_eq!(
        pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
        Some(LuaAuthResult::Bool(true))
    );
}

#[tokio::test]
async fn missing_handler_is_none() {
    let (_dir, pool) = pool("local kumo = require 'kumo'");
    assert_eq!(pool.call(&CHECK, args("a", "b")).await.unwrap(), None);
    assert!(!pool.has_handler("check").unwrap());
}

/// Each handler marks its state busy while it burns CPU: a state shared by
/// two overlapping calls would see the mark. Calls run on blocking threads,
/// so they overlap even on this current-thread runtime.
#[tokio::test]
async fn concurrent_calls_use_separate_states() {
    let (_dir, pool) = pool(
        r#"
local kumo = require 'kumo'
kumo.on('check', function()
  if busy then error('state shared by two calls') end
  busy = true
  local stop = os.clock() + 0.02
  while os.clock() < stop do end
  busy = false
  return true
end)
"#,
    );
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.call(&CHECK, args("scott", "tiger")).await })
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await.unwrap().unwrap(),
            Some(LuaAuthResult::Bool(true))
        );
    }
    assert!(
        pool.idle_states() > 1,
        "overlapping calls needed more than one state"
    );
}

const SLOW_POLICY: &str = r#"
local kumo = require 'kumo'
kumo.set_lua_memory_limit(32 * 1024 * 1024)
kumo.on('check', function(user, password)
  if password == 'spin' then while true do end end
  if password == 'sleep' then os.execute('sleep 3') return true end
  if password == 'hog' then
    local t = {}
    while true do t[#t + 1] = string.rep('x', 1024 * 1024) .. #t end
  end
  return password == 'tiger'
end)
"#;

/// Two handlers that never return do not delay a third login: Lua runs
/// off the async runtime, so the runtime keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_handlers_do_not_stall_other_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, SLOW_POLICY);
    let pool = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(3)).unwrap();
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.call(&CHECK, args("scott", "spin")).await })
        })
        .collect();
    // Let the spinners start before the login they must not delay.
    tokio::task::yield_now().await;
    let login = tokio::time::timeout(
        Duration::from_secs(2),
        pool.call(&CHECK, args("scott", "tiger")),
    )
    .await
    .expect("a login must not wait for spinning handlers");
    assert_eq!(login.unwrap(), Some(LuaAuthResult::Bool(true)));
    assert!(spinners.iter().all(|s| !s.is_finished()));
    for spinner in spinners {
        spinner.abort();
    }
}

/// A handler blocked in C (where no VM hook runs) is refused at the
/// deadline: its late `true` is never taken.
#[tokio::test]
async fn a_handler_sleeping_past_the_deadline_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, SLOW_POLICY);
    let pool =
        PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_millis(300)).unwrap();
    let err = pool.call(&CHECK, args("scott", "sleep")).await.unwrap_err();
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err}");
    assert_eq!(
        pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
        Some(LuaAuthResult::Bool(true))
    );
}

/// Allocating without bound fails that call with Lua's memory error; the
/// pool keeps serving and the state that hit the limit is not reused.
#[tokio::test]
async fn a_handler_allocating_without_bound_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, SLOW_POLICY);
    let pool = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(20)).unwrap();
    for _ in 0..3 {
        let err = pool.call(&CHECK, args("scott", "hog")).await.unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
        assert_eq!(
            pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
            Some(LuaAuthResult::Bool(true))
        );
    }
}

#[test]
fn memory_limits_outside_the_allowed_range_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, "require('kumo').set_lua_memory_limit(10)");
    let err = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(1))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("kumo.set_lua_memory_limit"),
        "{err:#}"
    );
}

#[tokio::test]
async fn bump_epoch_reloads_and_keeps_old_policy_when_new_one_is_broken() {
    let (dir, pool) = pool(TABLE_POLICY);
    write_policy(
        &dir,
        "local kumo = require 'kumo'\nkumo.on('check', function() return false end)",
    );
    assert_eq!(
        pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
        Some(LuaAuthResult::Bool(true))
    );
    assert_eq!(pool.bump_epoch().unwrap(), 1);
    assert_eq!(
        pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
        Some(LuaAuthResult::Bool(false))
    );

    write_policy(&dir, "this is not lua");
    let err = format!("{:#}", pool.bump_epoch().unwrap_err());
    assert!(err.contains("policy.lua:1"), "{err}");
    assert_eq!(pool.epoch(), 1);
    assert_eq!(
        pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
        Some(LuaAuthResult::Bool(false))
    );
}

#[test]
fn load_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, "local kumo = require 'kumo'\n\nerror('bad policy')\n");
    let err = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(1))
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("policy.lua:3") && text.contains("bad policy"),
        "{text}"
    );
}

#[test]
fn registering_an_event_twice_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(
        &dir,
        "local kumo = require 'kumo'\nkumo.on('check', function() end)\nkumo.on('check', function() end)",
    );
    let err = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(1))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("already has a handler"),
        "{err:#}"
    );
}

#[test]
fn require_finds_modules_beside_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("helper.lua"), "return { answer = 42 }").unwrap();
    let path = write_policy(
        &dir,
        "local h = require 'helper'\nassert(h.answer == 42)\nassert(io and os and string.format)",
    );
    PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(1)).unwrap();
}

#[tokio::test]
async fn a_raising_handler_does_not_cost_a_policy_reload() {
    let dir = tempfile::tempdir().unwrap();
    let loads = dir.path().join("loads.txt");
    let code = format!(
        "local f = assert(io.open('{}', 'a')); f:write('load\\n'); f:close()\n{TABLE_POLICY}",
        loads.display()
    );
    let path = write_policy(&dir, &code);
    let pool = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(2)).unwrap();
    for _ in 0..3 {
        assert!(pool.call(&CHECK, args("scott", "raise")).await.is_err());
        assert_eq!(
            pool.call(&CHECK, args("scott", "tiger")).await.unwrap(),
            Some(LuaAuthResult::Bool(true))
        );
    }
    assert_eq!(std::fs::read_to_string(&loads).unwrap().lines().count(), 1);
}

#[tokio::test]
async fn epoch_hooks_run_after_a_successful_reload_only() {
    let (dir, pool) = pool(TABLE_POLICY);
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = seen.clone();
    pool.on_epoch_bump(std::sync::Arc::new(move |epoch| record.lock().push(epoch)));
    pool.bump_epoch().unwrap();
    write_policy(&dir, "this is not lua");
    assert!(pool.bump_epoch().is_err());
    assert_eq!(*seen.lock(), vec![1]);
}
