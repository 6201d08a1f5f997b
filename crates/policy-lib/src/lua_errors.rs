//! Errors the I/O modules raise in Lua: always prefixed by the function
//! that failed (`sqlite: execute: ...`), so a policy author sees where, and
//! never carrying a secret (callers mask passwords before building them).

use std::fmt::Display;

/// A Lua runtime error `"{function}: {message}"`.
pub(crate) fn lua_err(function: &str, message: impl Display) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{function}: {message}"))
}

/// [`lua_err`] for an error mlua produced (a parameter table that did not
/// convert, ...), without mlua's `runtime error: ` prefix.
pub(crate) fn lua_err_from(function: &str, err: mlua::Error) -> mlua::Error {
    lua_err(function, lua_message(err))
}

/// The message of an mlua error, without the `runtime error: ` prefix its
/// `Display` adds.
pub(crate) fn lua_message(err: mlua::Error) -> String {
    match err {
        mlua::Error::RuntimeError(message) => message,
        other => other.to_string(),
    }
}

/// An error and every cause below it, joined by `": "` (the chain that
/// `{:#}` prints for anyhow, for plain `std::error::Error`s such as
/// reqwest's, whose `Display` shows only the top).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their cause in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An error unless this thread is inside a tokio runtime: the waiting
/// functions (queries, requests) need one, and without it tokio would
/// panic rather than fail.
pub(crate) fn require_runtime(function: &str) -> mlua::Result<()> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| {
            lua_err(
                function,
                "needs the async runtime (call it from an event handler)",
            )
        })
}
