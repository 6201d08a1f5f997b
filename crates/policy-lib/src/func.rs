//! What every module of the library shares: Lua functions whose errors name
//! them, argument conversion that names the function, and sub-module tables
//! (`kumo.digest`, also reachable as `require 'kumo.digest'`).

use mlua::{FromLuaMulti, Function, IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table};
use std::future::Future;

/// A Lua error whose message starts with the Lua name of the function that
/// failed, e.g. `kumo.digest.sha256: bad argument #1: ...`.
pub(crate) fn named_error(name: &str, err: impl Into<ErrorText>) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{name}: {}", err.into().0))
}

/// The text of an error without mlua's `runtime error: ` prefix, so a
/// named error reads `name: message`.
pub(crate) struct ErrorText(String);

impl From<mlua::Error> for ErrorText {
    fn from(err: mlua::Error) -> Self {
        match err {
            mlua::Error::RuntimeError(message) => ErrorText(message),
            mlua::Error::CallbackError { cause, .. } => ErrorText::from((*cause).clone()),
            other => ErrorText(other.to_string()),
        }
    }
}

impl From<String> for ErrorText {
    fn from(message: String) -> Self {
        ErrorText(message)
    }
}

impl From<fancy_regex::Error> for ErrorText {
    fn from(err: fancy_regex::Error) -> Self {
        ErrorText(err.to_string())
    }
}

/// A plain runtime error; [`function`] adds the function's name in front.
pub(crate) fn fail(message: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(message.into())
}

/// Convert `values` into the argument type `A` of the function `name`
/// (methods use this; [`function`] does it for plain functions).
pub(crate) fn args<A: FromLuaMulti>(lua: &Lua, name: &str, values: MultiValue) -> mlua::Result<A> {
    A::from_lua_args(values, 1, None, lua).map_err(|err| named_error(name, err))
}

/// A Lua function called `name` (its full Lua name, used in errors): bad
/// arguments and failures of `func` both become errors naming it.
pub(crate) fn function<A, R, F>(
    lua: &Lua,
    name: impl Into<String>,
    func: F,
) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + Send + 'static,
{
    let name = name.into();
    lua.create_function(move |lua, values: MultiValue| {
        let args = args(lua, &name, values)?;
        func(lua, args).map_err(|err| named_error(&name, err))
    })
}

/// The async form of [`function`] (for `kumo.sleep`): it can only be called
/// from a handler the binary runs as a coroutine (every event handler).
pub(crate) fn async_function<A, R, F, Fut>(
    lua: &Lua,
    name: &'static str,
    func: F,
) -> mlua::Result<Function>
where
    A: FromLuaMulti + 'static,
    R: IntoLuaMulti,
    F: Fn(A) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = mlua::Result<R>> + Send + 'static,
{
    lua.create_async_function(move |lua, values: MultiValue| {
        let func = func.clone();
        async move {
            let args = args(&lua, name, values)?;
            func(args).await.map_err(|err| named_error(name, err))
        }
    })
}

/// The table `kumo.<name>`, created on first use and also registered as
/// `package.loaded['kumo.<name>']` so `require 'kumo.<name>'` finds it.
pub(crate) fn sub_module(lua: &Lua, name: &str) -> mlua::Result<Table> {
    let kumo = policy::kumo_module(lua)?;
    if let Some(existing) = kumo.get::<Option<Table>>(name)? {
        return Ok(existing);
    }
    let module = lua.create_table()?;
    kumo.set(name, &module)?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set(format!("kumo.{name}"), &module)?;
    Ok(module)
}

/// A Lua array of strings; it carries the array marker so that
/// `kumo.serde.json_encode` writes `[]` for an empty one.
pub(crate) fn string_list<'a>(
    lua: &Lua,
    items: impl IntoIterator<Item = &'a str>,
) -> mlua::Result<Table> {
    let table = lua.create_sequence_from(items)?;
    table.set_metatable(Some(lua.array_metatable()));
    Ok(table)
}
