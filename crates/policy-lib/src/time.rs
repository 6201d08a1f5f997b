//! `kumo.time.*` (also `require 'kumo.time'`): `Time` and `TimeDelta`
//! objects, `sleep` (also the older `kumo.sleep`) and `start_timer`.
//! `sleep` suspends the calling handler on the tokio timer, so it works in
//! event handlers (which run as coroutines) but not at the top level of the
//! policy file or in `proxy_init`, which are not.

use crate::func::{async_function, fail, function, sub_module};
use chrono::format::StrftimeItems;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use mlua::{IntoLua, Lua, MetaMethod, UserData, UserDataFields, UserDataMethods, Value};
use std::fmt::Write;
use std::time::{Duration, Instant};

/// A point in time, kept in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(pub DateTime<Utc>);

/// A signed interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeDelta(pub chrono::TimeDelta);

/// The result of `kumo.time.start_timer`: `timer:done()` (or leaving a
/// `<close>` scope) returns the seconds since the start, once.
pub struct Timer {
    started: Option<Instant>,
}

fn overflow() -> mlua::Error {
    fail("time would overflow")
}

impl UserData for Time {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("year", |_, this| Ok(this.0.year()));
        fields.add_field_method_get("month", |_, this| Ok(this.0.month()));
        fields.add_field_method_get("day", |_, this| Ok(this.0.day()));
        fields.add_field_method_get("hour", |_, this| Ok(this.0.hour()));
        fields.add_field_method_get("minute", |_, this| Ok(this.0.minute()));
        fields.add_field_method_get("second", |_, this| Ok(this.0.second()));
        fields.add_field_method_get("unix_timestamp", |_, this| Ok(this.0.timestamp()));
        fields.add_field_method_get("unix_timestamp_millis", |_, this| {
            Ok(this.0.timestamp_millis())
        });
        fields.add_field_method_get("rfc2822", |_, this| {
            // chrono panics on years RFC 2822 cannot write.
            if !(0..=9999).contains(&this.0.year()) {
                return Err(fail("Time.rfc2822: the year is outside 0..=9999"));
            }
            Ok(this.0.to_rfc2822())
        });
        fields.add_field_method_get("rfc3339", |_, this| Ok(this.0.to_rfc3339()));
        fields.add_field_method_get("elapsed", |_, this| {
            Ok(TimeDelta(Utc::now().signed_duration_since(this.0)))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.0.to_string()));
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (Value, Value)| {
            Ok(copy_of::<Time>(&a).is_some() && copy_of::<Time>(&a) == copy_of::<Time>(&b))
        });
        methods.add_meta_function(MetaMethod::Add, |_, (a, b): (Value, Value)| {
            let (Some(time), Some(delta)) = (copy_of::<Time>(&a), copy_of::<TimeDelta>(&b)) else {
                return Err(fail("only a TimeDelta can be added to a Time"));
            };
            time.0
                .checked_add_signed(delta.0)
                .map(Time)
                .ok_or_else(overflow)
        });
        methods.add_meta_function(MetaMethod::Sub, |lua, (a, b): (Value, Value)| {
            let time = copy_of::<Time>(&a).ok_or_else(|| fail("expected a Time"))?;
            if let Some(other) = copy_of::<Time>(&b) {
                return TimeDelta(time.0.signed_duration_since(other.0)).into_lua(lua);
            }
            let delta = copy_of::<TimeDelta>(&b)
                .ok_or_else(|| fail("a Time minus something other than a Time or TimeDelta"))?;
            time.0
                .checked_sub_signed(delta.0)
                .map(Time)
                .ok_or_else(overflow)?
                .into_lua(lua)
        });
        methods.add_method("format", |_, this, format: String| {
            let items = StrftimeItems::new(&format)
                .parse()
                .map_err(|err| fail(format!("Time:format: invalid format {format:?}: {err}")))?;
            // Write rather than to_string(): a formatting error must not panic.
            let mut out = String::new();
            write!(out, "{}", this.0.format_with_items(items.iter()))
                .map_err(|_| fail(format!("Time:format: cannot format with {format:?}")))?;
            Ok(out)
        });
    }
}

impl TimeDelta {
    /// `5m`, `1h 30m`, `-10s`: humantime's form, with a sign.
    fn human(&self) -> String {
        let magnitude = self.0.abs().to_std().unwrap_or_default();
        let text = humantime::format_duration(magnitude).to_string();
        if self.0 < chrono::TimeDelta::zero() {
            format!("-{text}")
        } else {
            text
        }
    }
}

impl UserData for TimeDelta {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("seconds", |_, this| Ok(this.0.as_seconds_f64()));
        fields.add_field_method_get("nanoseconds", |_, this| Ok(this.0.num_nanoseconds()));
        fields.add_field_method_get("microseconds", |_, this| Ok(this.0.num_microseconds()));
        fields.add_field_method_get("milliseconds", |_, this| Ok(this.0.num_milliseconds()));
        fields.add_field_method_get("human", |_, this| Ok(this.human()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.human()));
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (Value, Value)| {
            let a = copy_of::<TimeDelta>(&a);
            Ok(a.is_some() && a == copy_of::<TimeDelta>(&b))
        });
        methods.add_meta_function(MetaMethod::Add, |_, (a, b): (Value, Value)| {
            let (a, b) = two_deltas(&a, &b)?;
            a.checked_add(&b).map(TimeDelta).ok_or_else(overflow)
        });
        methods.add_meta_function(MetaMethod::Sub, |_, (a, b): (Value, Value)| {
            let (a, b) = two_deltas(&a, &b)?;
            a.checked_sub(&b).map(TimeDelta).ok_or_else(overflow)
        });
    }
}

/// A copy of the `T` inside a userdata value. Copying (rather than holding
/// a borrow) lets `d + d` use one object twice.
fn copy_of<T: Copy + 'static>(value: &Value) -> Option<T> {
    match value {
        Value::UserData(ud) => ud.borrow::<T>().ok().map(|inner| *inner),
        _ => None,
    }
}

fn two_deltas(a: &Value, b: &Value) -> mlua::Result<(chrono::TimeDelta, chrono::TimeDelta)> {
    match (copy_of::<TimeDelta>(a), copy_of::<TimeDelta>(b)) {
        (Some(a), Some(b)) => Ok((a.0, b.0)),
        _ => Err(fail("TimeDelta arithmetic needs two TimeDelta values")),
    }
}

impl UserData for Timer {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        fn done(this: &mut Timer) -> Option<f64> {
            this.started
                .take()
                .map(|start| start.elapsed().as_secs_f64())
        }
        methods.add_method_mut("done", |_, this, ()| Ok(done(this)));
        methods.add_meta_method_mut(MetaMethod::Close, |_, this, _: MultiArgs| Ok(done(this)));
    }
}

type MultiArgs = mlua::MultiValue;

/// Seconds as a number (integer or fraction), signed.
fn seconds_delta(value: &Value) -> mlua::Result<chrono::TimeDelta> {
    let out_of_range = || fail("seconds out of range");
    match value {
        Value::Integer(seconds) => {
            chrono::TimeDelta::try_seconds(*seconds).ok_or_else(out_of_range)
        }
        // Whole seconds and the fraction apart, so a timestamp keeps its
        // precision; past +-9.2e15 s TimeDelta cannot hold it anyway.
        Value::Number(seconds) if seconds.is_finite() && seconds.abs() < 9.2e15 => {
            let whole = seconds.trunc();
            let nanos = ((seconds - whole) * 1e9).round() as i64;
            chrono::TimeDelta::try_seconds(whole as i64)
                .and_then(|delta| delta.checked_add(&chrono::TimeDelta::nanoseconds(nanos)))
                .ok_or_else(out_of_range)
        }
        Value::Number(_) => Err(out_of_range()),
        _ => Err(fail("expected a number of seconds")),
    }
}

fn parse_duration(value: Value) -> mlua::Result<TimeDelta> {
    if let Value::String(text) = &value {
        let duration = policy::parse_duration(&text.to_str()?).map_err(fail)?;
        return chrono::TimeDelta::from_std(duration)
            .map(TimeDelta)
            .map_err(|_| fail("duration out of range"));
    }
    seconds_delta(&value).map(TimeDelta)
}

fn from_unix_timestamp(value: Value) -> mlua::Result<Time> {
    let delta = seconds_delta(&value)?;
    DateTime::UNIX_EPOCH
        .checked_add_signed(delta)
        .map(Time)
        .ok_or_else(|| fail("invalid timestamp"))
}

/// Install `kumo.time.*` and `kumo.sleep`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "time")?;
    module.set(
        "now",
        function(lua, "kumo.time.now", |_, ()| Ok(Time(Utc::now())))?,
    )?;
    module.set(
        "from_unix_timestamp",
        function(lua, "kumo.time.from_unix_timestamp", |_, v: Value| {
            from_unix_timestamp(v)
        })?,
    )?;
    module.set(
        "with_ymd_hms",
        function(
            lua,
            "kumo.time.with_ymd_hms",
            |_, (y, mo, d, h, mi, s): (i32, u32, u32, u32, u32, u32)| {
                Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
                    .single()
                    .map(Time)
                    .ok_or_else(|| fail("no such date and time"))
            },
        )?,
    )?;
    module.set(
        "parse_rfc3339",
        function(lua, "kumo.time.parse_rfc3339", |_, text: String| {
            let time = DateTime::parse_from_rfc3339(&text)
                .map_err(|err| fail(format!("invalid RFC 3339 time {text:?}: {err}")))?;
            Ok(Time(time.to_utc()))
        })?,
    )?;
    module.set(
        "parse_rfc2822",
        function(lua, "kumo.time.parse_rfc2822", |_, text: String| {
            let time = DateTime::parse_from_rfc2822(&text)
                .map_err(|err| fail(format!("invalid RFC 2822 time {text:?}: {err}")))?;
            Ok(Time(time.to_utc()))
        })?,
    )?;
    module.set(
        "parse_duration",
        function(lua, "kumo.time.parse_duration", |_, v: Value| {
            parse_duration(v)
        })?,
    )?;
    module.set(
        "start_timer",
        function(lua, "kumo.time.start_timer", |_, _label: String| {
            Ok(Timer {
                started: Some(Instant::now()),
            })
        })?,
    )?;
    for (table, name) in [
        (module, "kumo.time.sleep"),
        (policy::kumo_module(lua)?, "kumo.sleep"),
    ] {
        table.set(
            "sleep",
            async_function(lua, name, |seconds: f64| async move {
                let duration = Duration::try_from_secs_f64(seconds)
                    .map_err(|_| fail("expected a non-negative number of seconds"))?;
                // tokio's timer panics outside a runtime; say so instead.
                tokio::runtime::Handle::try_current()
                    .map_err(|_| fail("needs the async runtime (call it from an event handler)"))?;
                tokio::time::sleep(duration).await;
                Ok(())
            })?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "time_tests.rs"]
mod tests;
