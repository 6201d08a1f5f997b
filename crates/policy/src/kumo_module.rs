use crate::pool_settings::PoolSettings;
use mlua::{Function, Lua, Table};
use std::sync::Arc;

const EVENT_REGISTRY: &str = "nephele.event_handlers";

/// Get the table of module `name` (`require 'name'`), creating and
/// registering it in `package.loaded` (and as a global) on first use.
pub fn get_or_create_module(lua: &Lua, name: &str) -> mlua::Result<Table> {
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    if let Some(existing) = loaded.get::<Option<Table>>(name)? {
        return Ok(existing);
    }
    let module = lua.create_table()?;
    loaded.set(name, &module)?;
    lua.globals().set(name, &module)?;
    Ok(module)
}

/// The `kumo` module table.
pub fn kumo_module(lua: &Lua) -> mlua::Result<Table> {
    get_or_create_module(lua, "kumo")
}

/// Install `kumo.on` (and the empty event registry it writes to) and the
/// pool settings functions.
pub(crate) fn register(lua: &Lua, settings: &Arc<PoolSettings>) -> mlua::Result<()> {
    register_pool_settings(lua, settings)?;
    lua.set_named_registry_value(EVENT_REGISTRY, lua.create_table()?)?;
    let kumo = kumo_module(lua)?;
    kumo.set(
        "on",
        lua.create_function(|lua, (name, handler): (String, Function)| {
            let handlers: Table = lua.named_registry_value(EVENT_REGISTRY)?;
            if handlers.contains_key(name.as_str())? {
                return Err(mlua::Error::RuntimeError(format!(
                    "kumo.on: event '{name}' already has a handler"
                )));
            }
            handlers.set(name, handler)
        })?,
    )?;
    Ok(())
}

/// `kumo.set_max_spare_lua_contexts(n)` (upstream name) and
/// `kumo.set_lua_memory_limit(bytes)` (ours).
fn register_pool_settings(lua: &Lua, settings: &Arc<PoolSettings>) -> mlua::Result<()> {
    let kumo = kumo_module(lua)?;
    let spare = settings.clone();
    kumo.set(
        "set_max_spare_lua_contexts",
        lua.create_function(move |_, limit: usize| {
            spare.set_max_spare_states(limit);
            Ok(())
        })?,
    )?;
    let memory = settings.clone();
    kumo.set(
        "set_lua_memory_limit",
        lua.create_function(move |lua, bytes: usize| {
            memory.set_memory_limit(bytes).map_err(|err| {
                mlua::Error::RuntimeError(format!("kumo.set_lua_memory_limit: {err}"))
            })?;
            lua.set_memory_limit(bytes)?;
            Ok(())
        })?,
    )?;
    Ok(())
}

/// The handler registered for `event`, if any.
pub(crate) fn handler(lua: &Lua, event: &str) -> mlua::Result<Option<Function>> {
    let handlers: Table = lua.named_registry_value(EVENT_REGISTRY)?;
    handlers.get(event)
}

/// Call the handler for a typed event synchronously on `lua` (start-up
/// events such as `proxy_init`); `Ok(None)` when none is registered.
pub fn call_sync<A, R>(
    lua: &Lua,
    event: &crate::EventDecl<A, R>,
    args: A,
) -> mlua::Result<Option<R>>
where
    A: mlua::IntoLuaMulti,
    R: mlua::FromLuaMulti,
{
    match handler(lua, event.name)? {
        Some(handler) => handler.call(args).map(Some),
        None => Ok(None),
    }
}
