//! `kumo.serde.*` (JSON, TOML, YAML) and the older names `kumo.json_*` and
//! `kumo.toml_*`, which are the same functions. Every format converts through
//! [`crate::convert`], so null, arrays and errors behave alike.
//!
//! The `*_load` functions read synchronously (upstream awaits the read):
//! policies load their data files at the top of the file, where nothing may
//! yield. Files larger than [`MAX_FILE_BYTES`] are refused.

use crate::convert::{data_to_lua, lua_to_data};
use crate::func::{fail, function, sub_module};
use mlua::{Lua, Table, Value};
use serde_json::Value as Data;
use std::io::Read;

/// The largest file a `*_load` function reads.
pub(crate) const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The formats and what each can do; `Format::Json` and `Format::Toml` are
/// also registered under their old top-level `kumo.` names.
#[derive(Clone, Copy)]
enum Format {
    Json,
    Toml,
    Yaml,
}

impl Format {
    fn prefix(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Toml => "toml",
            Format::Yaml => "yaml",
        }
    }

    fn parse(self, text: &[u8]) -> Result<Data, String> {
        match self {
            Format::Json => {
                // Comments (`/* */`, `//`, `#`) count as spaces, as upstream.
                let stripped = json_comments::StripComments::new(text);
                serde_json::from_reader(stripped).map_err(|err| format!("invalid JSON: {err}"))
            }
            Format::Toml => {
                let text = std::str::from_utf8(text).map_err(|_| "TOML text is not UTF-8")?;
                let value: toml::Value =
                    toml::from_str(text).map_err(|err| toml_error(text, &err))?;
                Ok(toml_to_data(value))
            }
            Format::Yaml => {
                serde_yaml_ng::from_slice(text).map_err(|err| format!("invalid YAML: {err}"))
            }
        }
    }

    fn encode(self, data: &Data, pretty: bool) -> Result<String, String> {
        let result = match (self, pretty) {
            (Format::Json, false) => serde_json::to_string(data).map_err(|e| e.to_string()),
            (Format::Json, true) => serde_json::to_string_pretty(data).map_err(|e| e.to_string()),
            (Format::Toml, false) => toml::to_string(data).map_err(|e| e.to_string()),
            (Format::Toml, true) => toml::to_string_pretty(data).map_err(|e| e.to_string()),
            (Format::Yaml, _) => serde_yaml_ng::to_string(data).map_err(|e| e.to_string()),
        };
        result.map_err(|err| format!("cannot encode as {}: {err}", self.prefix()))
    }
}

/// A TOML error without the quoted source line that toml's own message
/// shows (the text may be a secret): the message and where it is.
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message();
    match err.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            format!("invalid TOML at line {line}, column {column}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    }
}

/// TOML dates and times become their RFC 3339 text (a Lua value has no
/// date type); everything else maps one to one.
fn toml_to_data(value: toml::Value) -> Data {
    match value {
        toml::Value::String(s) => Data::String(s),
        toml::Value::Integer(i) => Data::Number(i.into()),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Data::Null, Data::Number),
        toml::Value::Boolean(b) => Data::Bool(b),
        toml::Value::Datetime(dt) => Data::String(dt.to_string()),
        toml::Value::Array(items) => Data::Array(items.into_iter().map(toml_to_data).collect()),
        toml::Value::Table(table) => Data::Object(
            table
                .into_iter()
                .map(|(key, value)| (key, toml_to_data(value)))
                .collect(),
        ),
    }
}

/// Read a whole file of at most [`MAX_FILE_BYTES`]; errors name the file.
pub(crate) fn read_bounded(path: &str) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("reading {path}: {err}"))?;
    let mut data = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|err| format!("reading {path}: {err}"))?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{path} is larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(data)
}

/// Install `kumo.serde.*` and the top-level `kumo.json_*`/`kumo.toml_*`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let serde = sub_module(lua, "serde")?;
    let kumo = policy::kumo_module(lua)?;
    for format in [Format::Json, Format::Toml, Format::Yaml] {
        install(lua, &serde, "kumo.serde", format, format.prefix())?;
        if !matches!(format, Format::Yaml) {
            install(lua, &kumo, "kumo", format, format.prefix())?;
        }
    }
    Ok(())
}

fn install(
    lua: &Lua,
    table: &Table,
    owner: &str,
    format: Format,
    prefix: &str,
) -> mlua::Result<()> {
    let name = |suffix: &str| {
        (
            format!("{prefix}_{suffix}"),
            format!("{owner}.{prefix}_{suffix}"),
        )
    };

    let (key, full) = name("load");
    let load = function(lua, full, move |lua, path: String| {
        let text = read_bounded(&path).map_err(fail)?;
        let data = format
            .parse(&text)
            .map_err(|err| fail(format!("{path}: {err}")))?;
        data_to_lua(lua, &data)
    })?;
    table.set(key, load)?;

    let (key, full) = name("parse");
    let parse = function(lua, full, move |lua, text: mlua::String| {
        let data = format.parse(&text.as_bytes()).map_err(fail)?;
        data_to_lua(lua, &data)
    })?;
    table.set(key, parse)?;

    let pretty_variants: &[(&str, bool)] = match format {
        // No pretty YAML: the one encoder is already pretty (as upstream).
        Format::Yaml => &[("encode", false)],
        _ => &[("encode", false), ("encode_pretty", true)],
    };
    for &(suffix, pretty) in pretty_variants {
        let (key, full) = name(suffix);
        let encode = function(lua, full, move |lua, value: Value| {
            let data = lua_to_data(lua, &value).map_err(fail)?;
            format.encode(&data, pretty).map_err(fail)
        })?;
        table.set(key, encode)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "formats_tests.rs"]
mod tests;
