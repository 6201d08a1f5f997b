//! The one conversion between Lua values and JSON-shaped data
//! (`serde_json::Value`). `kumo.serde` (JSON, TOML, YAML), digests of
//! non-string arguments, template contexts and the values stored in CIDR and
//! domain maps all go through it, so they agree on every rule:
//!
//! * Lua → data: `nil` and `kumo.serde`'s null sentinel become null; a table
//!   whose keys are exactly `1..n` (n > 0), or an empty table marked as an
//!   array, becomes an array; any other table an object whose keys are
//!   strings (integer keys are written as decimal strings). Functions,
//!   threads, userdata, NaN/infinity and non-UTF-8 strings are errors.
//!   Nesting deeper than [`MAX_DEPTH`] is an error, which also stops a table
//!   that contains itself.
//! * data → Lua: null becomes `nil` (as upstream: a key whose value is null
//!   is absent); arrays carry the array marker, so an empty array encodes
//!   back to `[]`.

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde_json::{Map, Number, Value as Data};

/// How deeply tables may nest when converted to data.
pub(crate) const MAX_DEPTH: usize = 128;

/// Convert a Lua value to data; the error says what could not be converted.
pub(crate) fn lua_to_data(lua: &Lua, value: &Value) -> Result<Data, String> {
    to_data(lua, value, 0)
}

fn to_data(lua: &Lua, value: &Value, depth: usize) -> Result<Data, String> {
    Ok(match value {
        Value::Nil => Data::Null,
        Value::LightUserData(ud) if ud.0.is_null() => Data::Null,
        Value::Boolean(b) => Data::Bool(*b),
        Value::Integer(i) => Data::Number((*i).into()),
        Value::Number(n) => Number::from_f64(*n)
            .map(Data::Number)
            .ok_or_else(|| format!("cannot encode the number {n}"))?,
        Value::String(s) => Data::String(
            s.to_str()
                .map_err(|_| "cannot encode a string that is not valid UTF-8".to_string())?
                .to_string(),
        ),
        Value::Table(table) => {
            if depth >= MAX_DEPTH {
                return Err(format!(
                    "tables nest deeper than {MAX_DEPTH} levels (or a table contains itself)"
                ));
            }
            table_to_data(lua, table, depth + 1)?
        }
        other => return Err(format!("cannot encode a {} value", other.type_name())),
    })
}

fn table_to_data(lua: &Lua, table: &Table, depth: usize) -> Result<Data, String> {
    let lua_err = |err: mlua::Error| err.to_string();
    let len = table.raw_len();
    let mut count = 0usize;
    for pair in table.pairs::<Value, Value>() {
        pair.map_err(lua_err)?;
        count += 1;
    }
    let marked_array = table
        .metatable()
        .is_some_and(|mt| mt == lua.array_metatable());
    if (len > 0 && count == len) || (count == 0 && marked_array) {
        let mut items = Vec::with_capacity(len);
        for index in 1..=len {
            let item: Value = table.raw_get(index).map_err(lua_err)?;
            items.push(to_data(lua, &item, depth)?);
        }
        return Ok(Data::Array(items));
    }
    let mut object = Map::new();
    for pair in table.pairs::<Value, Value>() {
        let (key, item) = pair.map_err(lua_err)?;
        let key = match key {
            Value::String(s) => s
                .to_str()
                .map_err(|_| "cannot encode a table key that is not valid UTF-8".to_string())?
                .to_string(),
            Value::Integer(i) => i.to_string(),
            other => {
                return Err(format!(
                    "cannot encode a table key of type {}",
                    other.type_name()
                ))
            }
        };
        object.insert(key, to_data(lua, &item, depth)?);
    }
    Ok(Data::Object(object))
}

/// Convert data to a Lua value (see the module doc for null and arrays).
pub(crate) fn data_to_lua(lua: &Lua, data: &Data) -> mlua::Result<Value> {
    Ok(match data {
        Data::Null => Value::Nil,
        Data::Bool(b) => Value::Boolean(*b),
        Data::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Data::String(s) => Value::String(lua.create_string(s)?),
        Data::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, data_to_lua(lua, item)?)?;
            }
            table.set_metatable(Some(lua.array_metatable()));
            Value::Table(table)
        }
        Data::Object(object) => {
            let table = lua.create_table_with_capacity(0, object.len())?;
            for (key, item) in object {
                table.raw_set(key.as_str(), data_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}
