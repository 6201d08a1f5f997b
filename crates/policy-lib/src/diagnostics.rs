//! `kumo.log_error/log_warn/log_info/log_debug`, `kumo.set_diagnostic_log_filter`
//! and `kumo.available_parallelism`.
//!
//! Log records go through `tracing` with the target `lua` (so the filter
//! `lua=debug` enables `log_debug`, as upstream documents) and start with
//! the calling policy file and line, e.g. `policy.lua:12: message`.

use crate::func::{fail, function};
use crate::LogFilterSetter;
use mlua::{Lua, Value, Variadic};
use tracing::Level;

/// Join the arguments like `print`: `tostring` of each, space-separated.
/// Bytes that are not UTF-8 are shown as `\xNN`.
fn join_args(args: &[Value]) -> String {
    let mut out = String::new();
    for (index, value) in args.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        match value {
            Value::String(s) => {
                for chunk in s.as_bytes().utf8_chunks() {
                    out.push_str(chunk.valid());
                    for byte in chunk.invalid() {
                        out.push_str(&format!("\\x{byte:02X}"));
                    }
                }
            }
            other => out.push_str(&other.to_string().unwrap_or_else(|_| format!("{other:?}"))),
        }
    }
    out
}

/// `file:line` of the Lua code that called the log function.
fn caller(lua: &Lua) -> String {
    let Some(debug) = lua.inspect_stack(1) else {
        return "?".to_owned();
    };
    let source = debug.source();
    let file = source.short_src.as_deref().unwrap_or("?");
    // Chunks loaded from a string show as `[string "name"]`.
    let file = file
        .strip_prefix("[string \"")
        .and_then(|rest| rest.strip_suffix("\"]"))
        .unwrap_or(file);
    format!("{file}:{}", debug.curr_line())
}

fn log(lua: &Lua, level: Level, args: &[Value]) {
    macro_rules! emit {
        ($level:expr) => {
            if tracing::event_enabled!(target: "lua", $level) {
                tracing::event!(target: "lua", $level, "{}: {}", caller(lua), join_args(args));
            }
        };
    }
    match level {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        Level::INFO => emit!(Level::INFO),
        _ => emit!(Level::DEBUG),
    }
}

/// The parallelism estimate; `KUMO_AVAILABLE_PARALLELISM` (passed in as
/// `override_text`) replaces it, as upstream.
fn available_parallelism(override_text: Option<String>) -> mlua::Result<usize> {
    if let Some(text) = override_text {
        return text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                fail(format!(
                    "KUMO_AVAILABLE_PARALLELISM={text:?} is not a positive integer"
                ))
            });
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .map_err(|err| fail(err.to_string()))
}

/// Install the functions; `set_filter` is the binary's log filter setter,
/// if it has one.
pub(crate) fn register(lua: &Lua, set_filter: Option<LogFilterSetter>) -> mlua::Result<()> {
    let kumo = policy::kumo_module(lua)?;
    let levels = [
        ("log_error", Level::ERROR),
        ("log_warn", Level::WARN),
        ("log_info", Level::INFO),
        ("log_debug", Level::DEBUG),
    ];
    for (name, level) in levels {
        let func = function(
            lua,
            format!("kumo.{name}"),
            move |lua, args: Variadic<Value>| {
                log(lua, level, &args);
                Ok(())
            },
        )?;
        kumo.set(name, func)?;
    }
    kumo.set(
        "set_diagnostic_log_filter",
        function(
            lua,
            "kumo.set_diagnostic_log_filter",
            move |_, filter: String| {
                let setter = set_filter
                    .as_ref()
                    .ok_or_else(|| fail("this process has no adjustable log filter"))?;
                setter(&filter).map_err(|err| fail(format!("invalid filter {filter:?}: {err:#}")))
            },
        )?,
    )?;
    kumo.set(
        "available_parallelism",
        function(lua, "kumo.available_parallelism", |_, ()| {
            available_parallelism(std::env::var("KUMO_AVAILABLE_PARALLELISM").ok())
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "diagnostics_tests.rs"]
mod tests;
