use mlua::{IntoLua, Lua, LuaSerdeExt, Value};
use std::marker::PhantomData;

/// A typed declaration of a policy event: its name, the Rust type of its
/// arguments `A` and of the value its handler returns `R`. Declaring events
/// as constants keeps callers and handlers in agreement at compile time.
pub struct EventDecl<A, R> {
    /// The name passed to `kumo.on`.
    pub name: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> EventDecl<A, R> {
    /// Declare an event.
    pub const fn new(name: &'static str) -> Self {
        EventDecl {
            name,
            _types: PhantomData,
        }
    }
}

/// Bytes handed to Lua as a Lua string, whether or not they are UTF-8
/// (RFC 1929 usernames and passwords are arbitrary octets).
pub struct Bytes(pub Vec<u8>);

impl IntoLua for Bytes {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        lua.create_string(&self.0).map(Value::String)
    }
}

/// Any `Serialize` value handed to Lua through the serde bridge (tables for
/// structs and maps).
pub struct SerdeArg<T>(pub T);

impl<T: serde::Serialize> IntoLua for SerdeArg<T> {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        lua.to_value(&self.0)
    }
}
