//! Conversions between Lua and Redis for `conn:query(CMD, ...)`: Lua
//! arguments to a command (tables flatten, as KumoMTA does), and replies
//! to Lua values (KumoMTA's mapping: `OK` is `true`, arrays and sets are
//! lists, maps are tables, an error reply raises).

use ::redis::{Cmd, Value as RedisValue};
use mlua::{Lua, MultiValue, Table, Value};

/// How deep a table argument may nest (also what stops a cycle).
const MAX_ARG_DEPTH: usize = 16;

/// The command `CMD ARGS...`: `CMD` is a string; each argument a string
/// (bytes as they are), number or boolean (`1`/`0`); `nil` adds nothing; a
/// sequence adds its elements, another table its keys and values.
pub(crate) fn command_from_lua(args: MultiValue) -> Result<Cmd, String> {
    let mut args = args.into_iter();
    let name = match args.next() {
        Some(Value::String(name)) => name.as_bytes().to_vec(),
        Some(other) => {
            return Err(format!(
                "expected a command name, got {}",
                other.type_name()
            ))
        }
        None => return Err("expected a command name".into()),
    };
    let mut cmd = Cmd::new();
    cmd.arg(name);
    for (index, value) in args.enumerate() {
        push_arg(&mut cmd, &value, 0).map_err(|err| format!("argument #{}: {err}", index + 2))?;
    }
    Ok(cmd)
}

fn push_arg(cmd: &mut Cmd, value: &Value, depth: usize) -> Result<(), String> {
    match value {
        Value::Nil => {}
        Value::String(s) => {
            cmd.arg(s.as_bytes().as_ref());
        }
        Value::Integer(i) => {
            cmd.arg(*i);
        }
        Value::Number(n) => {
            cmd.arg(*n);
        }
        Value::Boolean(b) => {
            cmd.arg(i64::from(*b));
        }
        Value::Table(table) => {
            if depth >= MAX_ARG_DEPTH {
                return Err(format!(
                    "tables nest deeper than {MAX_ARG_DEPTH} levels (or contain themselves)"
                ));
            }
            push_table(cmd, table, depth + 1)?;
        }
        other => return Err(format!("a {} cannot be sent to redis", other.type_name())),
    }
    Ok(())
}

fn push_table(cmd: &mut Cmd, table: &Table, depth: usize) -> Result<(), String> {
    let length = table.raw_len();
    let pairs = table.pairs::<Value, Value>().count();
    if pairs == length {
        for index in 1..=length {
            let value: Value = table.raw_get(index).map_err(|err| err.to_string())?;
            push_arg(cmd, &value, depth)?;
        }
    } else {
        for pair in table.pairs::<Value, Value>() {
            let (key, value) = pair.map_err(|err| err.to_string())?;
            push_arg(cmd, &key, depth)?;
            push_arg(cmd, &value, depth)?;
        }
    }
    Ok(())
}

/// A reply as a Lua value; an error reply is `Err(message)`.
pub(crate) fn reply_to_lua(lua: &Lua, value: RedisValue) -> Result<Value, ReplyError> {
    Ok(match value {
        RedisValue::Nil => Value::Nil,
        RedisValue::Int(i) => Value::Integer(i),
        RedisValue::Boolean(b) => Value::Boolean(b),
        RedisValue::Double(n) => Value::Number(n),
        RedisValue::Okay => Value::Boolean(true),
        RedisValue::BulkString(bytes) => Value::String(lua.create_string(bytes)?),
        RedisValue::SimpleString(text) => Value::String(lua.create_string(text)?),
        RedisValue::BigNumber(digits) => Value::String(lua.create_string(digits)?),
        RedisValue::Array(items) | RedisValue::Set(items) => Value::Table(list(lua, items)?),
        RedisValue::Map(pairs) => Value::Table(map(lua, pairs)?),
        RedisValue::Attribute { data, attributes } => {
            let table = lua.create_table()?;
            table.set("data", reply_to_lua(lua, *data)?)?;
            table.set("attributes", map(lua, attributes)?)?;
            Value::Table(table)
        }
        RedisValue::VerbatimString { format, text } => {
            let table = lua.create_table()?;
            table.set("format", format.to_string())?;
            table.set("text", text)?;
            Value::Table(table)
        }
        RedisValue::Push { kind, data } => {
            let table = lua.create_table()?;
            table.set("kind", kind.to_string())?;
            table.set("data", list(lua, data)?)?;
            Value::Table(table)
        }
        RedisValue::ServerError(err) => {
            // As redis-cli shows it: `WRONGTYPE Operation against ...`.
            let text = match err.details() {
                Some(details) => format!("{} {details}", err.code()),
                None => err.code().to_string(),
            };
            return Err(ReplyError::Server(text));
        }
        // A kind added by a later redis-rs: say so rather than guess.
        other => return Err(ReplyError::Server(format!("unsupported reply {other:?}"))),
    })
}

/// Items by position; a nil item stays a hole rather than shifting the
/// rest (`MGET` with a missing key).
fn list(lua: &Lua, items: Vec<RedisValue>) -> Result<Table, ReplyError> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (index, item) in items.into_iter().enumerate() {
        table.raw_set(index + 1, reply_to_lua(lua, item)?)?;
    }
    Ok(table)
}

fn map(lua: &Lua, pairs: Vec<(RedisValue, RedisValue)>) -> Result<Table, ReplyError> {
    let table = lua.create_table_with_capacity(0, pairs.len())?;
    for (key, value) in pairs {
        let key = reply_to_lua(lua, key)?;
        if !key.is_nil() {
            table.raw_set(key, reply_to_lua(lua, value)?)?;
        }
    }
    Ok(table)
}

/// Why a reply did not become a Lua value.
#[derive(Debug)]
pub(crate) enum ReplyError {
    /// An error reply from the server (inside an array, say).
    Server(String),
    /// Building the Lua value failed (memory).
    Lua(mlua::Error),
}

impl From<mlua::Error> for ReplyError {
    fn from(err: mlua::Error) -> Self {
        ReplyError::Lua(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(lua: &Lua, code: &str) -> Result<Vec<u8>, String> {
        let args: MultiValue = lua.load(code).eval().unwrap();
        command_from_lua(args).map(|cmd| cmd.get_packed_command())
    }

    #[test]
    fn arguments_flatten_like_kumomta() {
        let lua = Lua::new();
        let expected = Cmd::new()
            .arg("HSET")
            .arg("k")
            .arg("a")
            .arg(1)
            .arg(0)
            .arg(b"\0\xff".as_slice())
            .get_packed_command();
        assert_eq!(
            packed(
                &lua,
                "return 'HSET', 'k', { 'a', 1 }, nil, false, '\\0\\255'"
            )
            .unwrap(),
            expected
        );
        let map = packed(&lua, "return 'HSET', 'k', { field = 'v' }").unwrap();
        assert_eq!(
            map,
            Cmd::new()
                .arg("HSET")
                .arg("k")
                .arg("field")
                .arg("v")
                .get_packed_command()
        );
    }

    #[test]
    fn bad_arguments_say_which() {
        let lua = Lua::new();
        assert_eq!(
            packed(&lua, "return 42").unwrap_err(),
            "expected a command name, got integer"
        );
        assert_eq!(
            packed(&lua, "return 'GET', print").unwrap_err(),
            "argument #2: a function cannot be sent to redis"
        );
        let cycle = packed(&lua, "local t = {} t[1] = t return 'GET', t").unwrap_err();
        assert!(cycle.contains("contain themselves"), "{cycle}");
    }

    #[test]
    fn replies_map_to_lua_values() {
        let lua = Lua::new();
        let reply = RedisValue::Array(vec![
            RedisValue::BulkString(b"one".to_vec()),
            RedisValue::Nil,
            RedisValue::Okay,
            RedisValue::Int(3),
            RedisValue::Map(vec![(
                RedisValue::SimpleString("k".into()),
                RedisValue::Double(1.5),
            )]),
        ]);
        let value = reply_to_lua(&lua, reply).unwrap();
        lua.globals().set("r", value).unwrap();
        let ok: bool = lua
            .load("return r[1] == 'one' and r[2] == nil and r[3] == true and r[4] == 3 and r[5].k == 1.5")
            .eval()
            .unwrap();
        assert!(ok);
    }
}
