//! `kumo.memoize` in real Lua states sharing one [`PolicyLibrary`]. Waits in
//! the memoized functions are tokio sleeps under the paused clock; only the
//! TTL tests sleep for real, because moka keeps its own clock.

use crate::PolicyLibrary;
use mlua::Lua;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A Lua state with the library, plus `note()` (counts calls into
/// `counter`) and `wait(seconds)` (a tokio sleep) for the functions under
/// test.
fn state(library: &Arc<PolicyLibrary>, counter: &Arc<AtomicUsize>) -> Lua {
    let lua = Lua::new();
    crate::register(&lua, library).unwrap();
    let counter = counter.clone();
    let note = lua
        .create_function(move |_, ()| Ok(counter.fetch_add(1, Ordering::SeqCst) + 1))
        .unwrap();
    lua.globals().set("note", note).unwrap();
    let wait = lua
        .create_async_function(|_, seconds: f64| async move {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok(())
        })
        .unwrap();
    lua.globals().set("wait", wait).unwrap();
    lua
}

async fn run(lua: &Lua, code: &str) -> mlua::Result<()> {
    lua.load(code).exec_async().await
}

async fn eval<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> mlua::Result<T> {
    lua.load(code).eval_async().await
}

const SUM: &str = r#"
  sum = kumo.memoize(function(a, b)
    note()
    return { sum = a + b, args = { a, b } }, 'second'
  end, { name = 'sum', ttl = '1 minute', capacity = 10 })
"#;

#[tokio::test]
async fn results_are_cached_per_arguments_and_shared_by_every_state() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = (state(&library, &calls), state(&library, &calls));
    run(&a, SUM).await.unwrap();
    run(&b, SUM).await.unwrap();
    let check = "local r, second = sum(1, 2) \
                 return r.sum == 3 and r.args[2] == 2 and second == 'second'";
    assert!(eval::<bool>(&a, check).await.unwrap());
    assert!(eval::<bool>(&a, check).await.unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the second call is a hit");
    // Another Lua state of the process: same cache, result rebuilt there.
    assert!(eval::<bool>(&b, check).await.unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Other arguments are another entry; 2 and 2.0 are the same in Lua.
    assert_eq!(eval::<i64>(&b, "return sum(2, 1).sum").await.unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(eval::<i64>(&a, "return sum(2.0, 1).sum").await.unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_for_the_same_arguments_run_the_function_once() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let slow = r#"
      lookup = kumo.memoize(function(user)
        note()
        wait(5)
        return 'record of ' .. user
      end, { name = 'lookup', ttl = '1 minute', capacity = 10 })
    "#;
    let (a, b) = (state(&library, &calls), state(&library, &calls));
    run(&a, slow).await.unwrap();
    run(&b, slow).await.unwrap();
    let (from_a, from_b) = tokio::join!(
        eval::<String>(&a, "return lookup('scott')"),
        eval::<String>(&b, "return lookup('scott')"),
    );
    assert_eq!(from_a.unwrap(), "record of scott");
    assert_eq!(from_b.unwrap(), "record of scott");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_function_slower_than_populate_timeout_is_an_error_naming_the_cache() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    run(
        &lua,
        r#"slow = kumo.memoize(function() wait(3600) return 1 end,
             { name = 'slow', ttl = '1 minute', capacity = 1, populate_timeout = '2s' })"#,
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let err = run(&lua, "slow()").await.unwrap_err().to_string();
    assert!(
        err.contains("kumo.memoize 'slow': the function did not return within 2s"),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn retry_on_populate_timeout_calls_the_function_again() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    run(
        &lua,
        r#"flaky = kumo.memoize(function()
             if note() == 1 then wait(3600) end
             return 'second try'
           end, { name = 'flaky', ttl = '1 minute', capacity = 1,
                  populate_timeout = '2s', retry_on_populate_timeout = true })"#,
    )
    .await
    .unwrap();
    assert_eq!(
        eval::<String>(&lua, "return flaky()").await.unwrap(),
        "second try"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn allow_stale_reads_answers_with_the_last_value_when_the_refresh_is_slow() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    run(
        &lua,
        r#"stale = kumo.memoize(function()
             local n = note()
             if n > 1 then wait(3600) end
             return 'value ' .. n
           end, { name = 'stale', ttl = '100ms', capacity = 1,
                  populate_timeout = '2s', allow_stale_reads = true })"#,
    )
    .await
    .unwrap();
    assert_eq!(
        eval::<String>(&lua, "return stale()").await.unwrap(),
        "value 1"
    );
    // moka's TTL runs on the real clock, not tokio's.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        eval::<String>(&lua, "return stale()").await.unwrap(),
        "value 1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a refresh was attempted");
}

#[tokio::test]
async fn entries_expire_after_ttl() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    run(
        &lua,
        "short = kumo.memoize(function() return note() end, \
           { name = 'short', ttl = '100ms', capacity = 5 })",
    )
    .await
    .unwrap();
    assert_eq!(eval::<i64>(&lua, "return short()").await.unwrap(), 1);
    assert_eq!(eval::<i64>(&lua, "return short()").await.unwrap(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(eval::<i64>(&lua, "return short()").await.unwrap(), 2);
}

#[tokio::test]
async fn capacity_bounds_the_number_of_results() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    run(
        &lua,
        "small = kumo.memoize(function(n) note() return n * 2 end, \
           { name = 'small', ttl = '1 minute', capacity = 3 }) \
         for i = 1, 50 do assert(small(i) == i * 2) end",
    )
    .await
    .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    let cache = library.memoize.caches.lock()["small"].clone();
    cache.fresh.run_pending_tasks().await;
    assert!(
        cache.fresh.entry_count() <= 3,
        "{} entries",
        cache.fresh.entry_count()
    );
}

#[tokio::test]
async fn an_epoch_bump_forgets_only_caches_that_follow_it() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    run(
        &lua,
        "following = kumo.memoize(function() return note() end, \
           { name = 'following', ttl = '1 minute', capacity = 5, invalidate_with_epoch = true }) \
         steady = kumo.memoize(function() return note() end, \
           { name = 'steady', ttl = '1 minute', capacity = 5 })",
    )
    .await
    .unwrap();
    let both = "return following(), steady()";
    assert_eq!(eval::<(i64, i64)>(&lua, both).await.unwrap(), (1, 2));
    assert_eq!(eval::<(i64, i64)>(&lua, both).await.unwrap(), (1, 2));
    library.bump_epoch();
    assert_eq!(eval::<(i64, i64)>(&lua, both).await.unwrap(), (3, 2));
}

#[tokio::test]
async fn errors_pass_through_and_are_not_cached() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    run(
        &lua,
        "once_failing = kumo.memoize(function() \
             if note() == 1 then error('backend down') end return 'up' end, \
           { name = 'once_failing', ttl = '1 minute', capacity = 5 })",
    )
    .await
    .unwrap();
    let err = run(&lua, "once_failing()").await.unwrap_err().to_string();
    assert!(err.contains("backend down"), "{err}");
    assert_eq!(
        eval::<String>(&lua, "return once_failing()").await.unwrap(),
        "up"
    );
}

#[tokio::test]
async fn bad_input_is_a_lua_error_naming_the_function() {
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    let cases = [
        (
            "kumo.memoize('nope', { name = 'x', ttl = 1, capacity = 1 })",
            "kumo.memoize: expected a function, got string",
        ),
        (
            "kumo.memoize(print, { name = 'x', capacity = 1 })",
            "kumo.memoize: invalid parameters: deserialize error: missing field `ttl`",
        ),
        (
            "kumo.memoize(print, { name = 'x', ttl = 1, capacity = 1, colour = 'red' })",
            "unknown field `colour`",
        ),
        (
            "kumo.memoize(print, { name = 'x', ttl = 'soon', capacity = 1 })",
            "invalid duration",
        ),
        (
            "kumo.memoize(print, { name = 'x', ttl = 1, capacity = 0 })",
            "kumo.memoize: capacity must be at least 1",
        ),
        (
            "kumo.memoize(function() return 1 end, { name = 'args', ttl = 1, capacity = 1 })(print)",
            "kumo.memoize 'args': argument #1 cannot be a cache key: a function value cannot be cached",
        ),
        (
            "kumo.memoize(function() return print end, { name = 'ret', ttl = 1, capacity = 1 })()",
            "kumo.memoize 'ret': cannot cache the result: a function value cannot be cached",
        ),
    ];
    for (code, expected) in cases {
        let err = run(&lua, code).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{code}: {err}");
    }
}

#[test]
fn a_pure_lua_function_memoizes_outside_a_coroutine_too() {
    // Top-level code and synchronous events (init) call without a
    // coroutine; a function that never waits completes on the first poll.
    let library = PolicyLibrary::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lua = state(&library, &calls);
    lua.load(SUM).exec().unwrap();
    let sum: i64 = lua
        .load("return sum(3, 4).sum + sum(3, 4).sum")
        .eval()
        .unwrap();
    assert_eq!(sum, 14);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
