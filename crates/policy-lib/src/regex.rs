//! `kumo.regex.compile` and `kumo.regex.escape` (also `require 'kumo.regex'`):
//! the Rust `regex` syntax with fancy-regex's extensions (look-around,
//! back-references), as upstream. Every pattern is bounded: its text by
//! [`MAX_PATTERN_BYTES`], its compiled size by [`COMPILED_SIZE_LIMIT`] and
//! each search by [`BACKTRACK_LIMIT`] steps, so no pattern can allocate or
//! run without bound; going past a bound is a Lua error naming the function.

use crate::func::{args, fail, function, named_error, string_list, sub_module};
use fancy_regex::{Regex, RegexBuilder};
use mlua::{Lua, MultiValue, UserData, UserDataMethods};

/// The longest pattern text `compile` accepts.
pub const MAX_PATTERN_BYTES: usize = 32 * 1024;
/// The size limit for the compiled program and for each lazy DFA cache.
pub const COMPILED_SIZE_LIMIT: usize = 10 * 1024 * 1024;
/// Backtracking steps one search may take (fancy-regex's default).
pub const BACKTRACK_LIMIT: usize = 1_000_000;

/// A compiled regex, as Lua sees it.
pub struct LuaRegex(Regex);

/// Compile `pattern` within the bounds above.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "pattern is {} bytes, more than the limit of {MAX_PATTERN_BYTES}",
            pattern.len()
        ));
    }
    RegexBuilder::new(pattern)
        .delegate_size_limit(COMPILED_SIZE_LIMIT)
        .delegate_dfa_size_limit(COMPILED_SIZE_LIMIT)
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
        .map_err(|err| format!("invalid pattern: {err}"))
}

/// Run one method body: convert its arguments, and name `regex:<method>` in
/// any error (a search can fail when it exceeds the backtrack limit).
fn method<A, R>(
    lua: &Lua,
    name: &str,
    values: MultiValue,
    body: impl FnOnce(A) -> Result<R, fancy_regex::Error>,
) -> mlua::Result<R>
where
    A: mlua::FromLuaMulti,
{
    let full = format!("regex:{name}");
    let args: A = args(lua, &full, values)?;
    body(args).map_err(|err| named_error(&full, err))
}

impl UserData for LuaRegex {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("captures", |lua, this, values: MultiValue| {
            let haystack: String = args(lua, "regex:captures", values)?;
            let found = this
                .0
                .captures(&haystack)
                .map_err(|err| named_error("regex:captures", err))?;
            let Some(captures) = found else {
                return Ok(None);
            };
            let table = lua.create_table()?;
            for (index, name) in this.0.capture_names().enumerate() {
                if let Some(group) = captures.get(index) {
                    table.raw_set(index, group.as_str())?;
                    if let Some(name) = name {
                        table.raw_set(name, group.as_str())?;
                    }
                }
            }
            Ok(Some(table))
        });
        methods.add_method("is_match", |lua, this, values: MultiValue| {
            method(lua, "is_match", values, |haystack: String| {
                this.0.is_match(&haystack)
            })
        });
        methods.add_method("find", |lua, this, values: MultiValue| {
            method(lua, "find", values, |haystack: String| {
                Ok(this.0.find(&haystack)?.map(|m| m.as_str().to_owned()))
            })
        });
        methods.add_method("find_all", |lua, this, values: MultiValue| {
            let found = method(lua, "find_all", values, |haystack: String| {
                this.0
                    .find_iter(&haystack)
                    .map(|m| m.map(|m| m.as_str().to_owned()))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            string_list(lua, found.iter().map(String::as_str))
        });
        methods.add_method("replace", |lua, this, values: MultiValue| {
            method(lua, "replace", values, |(text, rep): (String, String)| {
                Ok(this.0.try_replacen(&text, 1, rep.as_str())?.into_owned())
            })
        });
        methods.add_method("replace_all", |lua, this, values: MultiValue| {
            method(
                lua,
                "replace_all",
                values,
                |(text, rep): (String, String)| {
                    Ok(this.0.try_replacen(&text, 0, rep.as_str())?.into_owned())
                },
            )
        });
        methods.add_method("replacen", |lua, this, values: MultiValue| {
            method(
                lua,
                "replacen",
                values,
                |(text, limit, rep): (String, usize, String)| {
                    Ok(this
                        .0
                        .try_replacen(&text, limit, rep.as_str())?
                        .into_owned())
                },
            )
        });
        methods.add_method("split", |lua, this, values: MultiValue| {
            let parts = method(lua, "split", values, |text: String| {
                this.0
                    .split(&text)
                    .map(|part| part.map(str::to_owned))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            string_list(lua, parts.iter().map(String::as_str))
        });
    }
}

/// Install `kumo.regex.*`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "regex")?;
    module.set(
        "compile",
        function(lua, "kumo.regex.compile", |_, pattern: String| {
            compile(&pattern).map(LuaRegex).map_err(fail)
        })?,
    )?;
    module.set(
        "escape",
        function(lua, "kumo.regex.escape", |_, text: String| {
            Ok(fancy_regex::escape(&text).into_owned())
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "regex_tests.rs"]
mod tests;
