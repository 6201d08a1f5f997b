use aaa::AuthInfo;
use mlua::{FromLua, Lua, LuaSerdeExt, Value};

/// What an authentication event handler returned, once validated: a bool
/// or an AuthInfo table. Anything else fails conversion, which callers treat
/// as a denial (fail closed).
#[derive(Debug, Clone, PartialEq)]
pub enum LuaAuthResult {
    /// `true` or `false`.
    Bool(bool),
    /// An AuthInfo table (`{ identities = {...}, groups = {...} }`).
    AuthInfo(AuthInfo),
}

impl FromLua for LuaAuthResult {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        match value {
            Value::Boolean(b) => Ok(LuaAuthResult::Bool(b)),
            Value::Table(_) => lua
                .from_value::<AuthInfo>(value)
                .map(LuaAuthResult::AuthInfo)
                .map_err(|err| {
                    mlua::Error::RuntimeError(format!("invalid AuthInfo returned: {err}"))
                }),
            other => Err(mlua::Error::RuntimeError(format!(
                "expected a boolean or an AuthInfo table, got {}",
                other.type_name()
            ))),
        }
    }
}
