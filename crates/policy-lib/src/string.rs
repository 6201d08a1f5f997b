//! `kumo.string.*`: splitting, trimming, replacing, prefix tests, header
//! wrapping, Public Suffix List look-ups and `eval_template` (minijinja).

use crate::convert::lua_to_data;
use crate::func::{fail, function, string_list, sub_module};
use mlua::{Lua, Table, Value};

/// Fuel (minijinja's instruction budget) for one `eval_template` call, so a
/// template loop cannot run without bound.
pub(crate) const TEMPLATE_FUEL: u64 = 1_000_000;

/// Install `kumo.string.*`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "string")?;
    register_splits(lua, &module)?;
    register_edits(lua, &module)?;
    module.set(
        "psl_domain",
        function(lua, "kumo.string.psl_domain", |_, name: String| {
            Ok(psl::domain_str(&normalize_domain(&name)).map(str::to_owned))
        })?,
    )?;
    module.set(
        "psl_suffix",
        function(lua, "kumo.string.psl_suffix", |_, name: String| {
            Ok(psl::suffix_str(&normalize_domain(&name)).map(str::to_owned))
        })?,
    )?;
    module.set(
        "wrap",
        function(
            lua,
            "kumo.string.wrap",
            |lua, (text, soft, hard): (mlua::String, Option<usize>, Option<usize>)| {
                let (soft, hard) = (soft.unwrap_or(75), hard.unwrap_or(900));
                if hard == 0 {
                    return Err(fail("HARD_LIMIT must be at least 1"));
                }
                lua.create_string(wrap(&text.as_bytes(), soft, hard))
            },
        )?,
    )?;
    module.set(
        "eval_template",
        function(
            lua,
            "kumo.string.eval_template",
            |lua, (name, source, context, dialect): (String, String, Value, Option<String>)| {
                eval_template(lua, &name, &source, &context, dialect.as_deref())
            },
        )?,
    )?;
    Ok(())
}

fn register_splits(lua: &Lua, module: &Table) -> mlua::Result<()> {
    module.set(
        "split",
        function(
            lua,
            "kumo.string.split",
            |lua, (s, pat): (String, String)| string_list(lua, s.split(pat.as_str())),
        )?,
    )?;
    module.set(
        "rsplit",
        function(
            lua,
            "kumo.string.rsplit",
            |lua, (s, pat): (String, String)| string_list(lua, s.rsplit(pat.as_str())),
        )?,
    )?;
    module.set(
        "splitn",
        function(
            lua,
            "kumo.string.splitn",
            |lua, (s, limit, pat): (String, usize, String)| {
                string_list(lua, s.splitn(limit, pat.as_str()))
            },
        )?,
    )?;
    module.set(
        "rsplitn",
        function(
            lua,
            "kumo.string.rsplitn",
            |lua, (s, limit, pat): (String, usize, String)| {
                string_list(lua, s.rsplitn(limit, pat.as_str()))
            },
        )?,
    )?;
    module.set(
        "split_whitespace",
        function(lua, "kumo.string.split_whitespace", |lua, s: String| {
            string_list(lua, s.split_whitespace())
        })?,
    )?;
    module.set(
        "split_ascii_whitespace",
        function(
            lua,
            "kumo.string.split_ascii_whitespace",
            |lua, s: String| string_list(lua, s.split_ascii_whitespace()),
        )?,
    )?;
    Ok(())
}

fn register_edits(lua: &Lua, module: &Table) -> mlua::Result<()> {
    module.set(
        "replace",
        function(
            lua,
            "kumo.string.replace",
            |_, (s, from, to): (String, String, String)| Ok(s.replace(&from, &to)),
        )?,
    )?;
    module.set(
        "replacen",
        function(
            lua,
            "kumo.string.replacen",
            |_, (s, from, to, count): (String, String, String, usize)| {
                Ok(s.replacen(&from, &to, count))
            },
        )?,
    )?;
    type Trim = fn(&str) -> &str;
    let trims: [(&str, Trim); 3] = [
        ("trim", str::trim),
        ("trim_start", str::trim_start),
        ("trim_end", str::trim_end),
    ];
    for (name, trim) in trims {
        let func = function(lua, format!("kumo.string.{name}"), move |_, s: String| {
            Ok(trim(&s).to_owned())
        })?;
        module.set(name, func)?;
    }
    module.set(
        "starts_with",
        function(
            lua,
            "kumo.string.starts_with",
            |_, (s, prefix): (mlua::String, mlua::String)| {
                Ok(s.as_bytes().starts_with(&prefix.as_bytes()))
            },
        )?,
    )?;
    module.set(
        "ends_with",
        function(
            lua,
            "kumo.string.ends_with",
            |_, (s, suffix): (mlua::String, mlua::String)| {
                Ok(s.as_bytes().ends_with(&suffix.as_bytes()))
            },
        )?,
    )?;
    Ok(())
}

/// The Public Suffix List wants lowercase names without the root dot.
fn normalize_domain(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Fold `text` into lines joined by `\r\n\t` (a folded mail header): words
/// (split on ASCII whitespace) are packed while a line stays under `soft`
/// bytes; a word longer than `hard` bytes is cut every `hard` bytes (the
/// rest starts the next line).
/// Trailing whitespace is not kept.
pub(crate) fn wrap(text: &[u8], soft: usize, hard: usize) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    for word in text
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
    {
        if line.len() + word.len() < soft {
            if !line.is_empty() {
                line.push(b' ');
            }
            line.extend_from_slice(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if word.len() <= hard {
            line = word.to_vec();
            continue;
        }
        for piece in word.chunks(hard) {
            if piece.len() == hard {
                lines.push(piece.to_vec());
            } else {
                line = piece.to_vec();
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join(&b"\r\n\t"[..])
}

/// Render a minijinja template. Auto-escaping follows the name's extension
/// (`.html`, `.json`, ...), as upstream. Dialects: `Jinja` (default) and
/// `Static`; upstream's `Handlebars` is not available here.
fn eval_template(
    lua: &Lua,
    name: &str,
    source: &str,
    context: &Value,
    dialect: Option<&str>,
) -> mlua::Result<String> {
    match dialect.unwrap_or("Jinja") {
        "Jinja" => {}
        "Static" => return Ok(source.to_owned()),
        "Handlebars" => return Err(fail("the Handlebars dialect is not supported")),
        other => return Err(fail(format!("unknown template dialect {other:?}"))),
    }
    let context = lua_to_data(lua, context).map_err(fail)?;
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.render_named_str(name, source, context)
        .map_err(|err| fail(format!("{err:#}")))
}

#[cfg(test)]
#[path = "string_tests.rs"]
mod tests;
