use crate::test_support::{assert_error, lua, run_fresh};

/// The examples of upstream's `kumo.time` pages, unchanged but for one
/// line: the `TimeDelta` page asserts `(delta2 - delta1).seconds == 10`
/// for 10 s - 20 s, which is -10 (upstream's own subtraction gives -10 too).
#[test]
fn upstream_examples() {
    run_fresh(
        r#"
local now = kumo.time.now()
print(now.year)
print(now.unix_timestamp)

local now = kumo.time.now()
local string = now:format '%H:%M:%S'

local delta1 = kumo.time.parse_duration(20)
local delta2 = kumo.time.parse_duration '10 seconds'

assert((delta2 - delta1).seconds == -10)
assert((delta1 - delta2).seconds == 10)

local delta = kumo.time.parse_duration '5m'
local t = kumo.time.parse_rfc2822 'Sun, 2 Jan 2000 03:04:05 +0000'
local t = kumo.time.parse_rfc3339 '2000-01-02T03:04:05+00:00'

local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local t = kumo.time.with_ymd_hms(2000, 01, 02, 03, 04, 05)
utils.assert_eq(tostring(t), '2000-01-02 03:04:05 UTC')
utils.assert_eq(t.year, 2000)
utils.assert_eq(t.month, 1)
utils.assert_eq(t.day, 2)
utils.assert_eq(t.hour, 3)
utils.assert_eq(t.minute, 4)
utils.assert_eq(t.second, 5)
utils.assert_eq(t.unix_timestamp, 946782245)
utils.assert_eq(t.rfc2822, 'Sun, 2 Jan 2000 03:04:05 +0000')
utils.assert_eq(t.rfc3339, '2000-01-02T03:04:05+00:00')
"#,
    );
}

#[test]
fn arithmetic_and_fields() {
    run_fresh(
        r#"
local t = kumo.time.with_ymd_hms(2000, 1, 2, 3, 4, 5)
assert(t == kumo.time.parse_rfc3339 '2000-01-02T05:04:05+02:00')
assert(t == kumo.time.parse_rfc2822 'Sun, 2 Jan 2000 03:04:05 +0000')
assert(t == kumo.time.from_unix_timestamp(946782245))
assert(kumo.time.from_unix_timestamp(946782245.5).unix_timestamp_millis == 946782245500)
local later = t + kumo.time.parse_duration '1h 30m'
assert(later.hour == 4 and later.minute == 34)
assert((later - t).seconds == 5400)
assert((later - t).human == '1h 30m')
assert(tostring(t - later) == '-1h 30m')
assert((later - kumo.time.parse_duration(5400)) == t)
local d = kumo.time.parse_duration(1.5)
assert(d.milliseconds == 1500 and d.microseconds == 1500000 and d.nanoseconds == 1500000000)
assert(kumo.time.parse_duration(-2).seconds == -2)
assert(d + d == kumo.time.parse_duration(3))
assert(t:format('%Y/%m/%d %H:%M') == '2000/01/02 03:04')
assert(kumo.time.now().elapsed.seconds >= 0)
local timer = kumo.time.start_timer 'label'
local took = timer:done()
assert(type(took) == 'number' and took >= 0)
assert(timer:done() == nil)
do
  local scoped <close> = kumo.time.start_timer 'scoped'
end
assert(require('kumo.time').now ~= nil)
"#,
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.time.parse_rfc3339 'yesterday'",
        &["kumo.time.parse_rfc3339: invalid RFC 3339 time"],
    );
    assert_error(
        "kumo.time.parse_rfc2822 'nope'",
        &["kumo.time.parse_rfc2822: invalid RFC 2822 time"],
    );
    assert_error(
        "kumo.time.with_ymd_hms(2000, 2, 30, 0, 0, 0)",
        &["kumo.time.with_ymd_hms: no such date and time"],
    );
    assert_error(
        "kumo.time.with_ymd_hms(2000)",
        &["kumo.time.with_ymd_hms: bad argument #2"],
    );
    assert_error(
        "kumo.time.parse_duration 'soon'",
        &["kumo.time.parse_duration: invalid duration"],
    );
    assert_error(
        "kumo.time.parse_duration(1e300)",
        &["kumo.time.parse_duration: seconds out of range"],
    );
    assert_error(
        "kumo.time.parse_duration({})",
        &["kumo.time.parse_duration: expected a number of seconds"],
    );
    assert_error(
        "kumo.time.from_unix_timestamp(0/0)",
        &["kumo.time.from_unix_timestamp: seconds out of range"],
    );
    assert_error(
        "kumo.time.now():format('%Q')",
        &["Time:format: invalid format"],
    );
    assert_error(
        "local t = kumo.time.now() return t - 5",
        &["a Time minus something other than a Time or TimeDelta"],
    );
    assert_error(
        "return kumo.time.from_unix_timestamp(3e11).rfc2822",
        &["Time.rfc2822: the year is outside 0..=9999"],
    );
    assert_error(
        "local t = kumo.time.with_ymd_hms(2000, 1, 1, 0, 0, 0) return t + kumo.time.parse_duration(9e15)",
        &["time would overflow"],
    );
}

/// `kumo.sleep` and `kumo.time.sleep` wait on tokio's clock (paused here,
/// so the test takes no wall time) and only from a coroutine.
#[tokio::test(start_paused = true)]
async fn sleep_waits_on_the_tokio_clock() {
    let lua = lua();
    let start = tokio::time::Instant::now();
    lua.load("kumo.sleep(30) kumo.time.sleep(0.5)")
        .exec_async()
        .await
        .unwrap();
    assert_eq!(start.elapsed(), std::time::Duration::from_millis(30_500));
    let err = lua.load("kumo.sleep(-1)").exec_async().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("kumo.sleep: expected a non-negative number of seconds"),
        "{err}"
    );
    let err = lua
        .load("kumo.time.sleep('x')")
        .exec_async()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("kumo.time.sleep: bad argument #1"),
        "{err}"
    );
}

/// Outside a coroutine (the top of a policy file, `proxy_init`) `sleep`
/// cannot suspend, and outside a runtime it has no timer: both are errors,
/// not a hang or a panic.
#[test]
fn sleep_outside_a_coroutine_or_runtime_is_an_error() {
    assert_error(
        "kumo.sleep(0.01)",
        &["kumo.sleep: needs the async runtime (call it from an event handler)"],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let message = crate::test_support::error_of("kumo.time.sleep(0.01)");
    assert!(message.contains("yield"), "{message}");
}
