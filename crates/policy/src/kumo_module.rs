use crate::pool_settings::PoolSettings;
use mlua::{Function, Lua, Table};
use std::sync::Arc;

const EVENT_REGISTRY: &str = "nephele.event_handlers";
const MULTI_EVENT_REGISTRY: &str = "nephele.multi_event_handlers";

/// `kumo.on('pre_init', fn)`: run once per process before the binary's
/// start-up event (`init`, `proxy_init`), so that what it sets (e.g.
/// `kumo.aaa.set_fall_back_to_acl_map`) holds from the start.
pub const PRE_INIT: &str = "pre_init";

/// Events that may have several handlers (helper modules each add one);
/// all run, in registration order. Every other event has at most one.
const MULTI_HANDLER_EVENTS: &[&str] = &[PRE_INIT];

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
    lua.set_named_registry_value(MULTI_EVENT_REGISTRY, lua.create_table()?)?;
    let kumo = kumo_module(lua)?;
    kumo.set(
        "on",
        lua.create_function(|lua, (name, handler): (String, Function)| {
            if MULTI_HANDLER_EVENTS.contains(&name.as_str()) {
                let lists: Table = lua.named_registry_value(MULTI_EVENT_REGISTRY)?;
                let list = match lists.get::<Option<Table>>(name.as_str())? {
                    Some(list) => list,
                    None => {
                        let list = lua.create_table()?;
                        lists.set(name.as_str(), &list)?;
                        list
                    }
                };
                return list.push(handler);
            }
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

/// Run every `pre_init` handler, in registration order, on `lua`. The
/// binaries call it once, just before their start-up event.
pub fn run_pre_init(lua: &Lua) -> anyhow::Result<()> {
    let run = || -> mlua::Result<()> {
        let lists: Table = lua.named_registry_value(MULTI_EVENT_REGISTRY)?;
        let Some(handlers) = lists.get::<Option<Table>>(PRE_INIT)? else {
            return Ok(());
        };
        for handler in handlers.sequence_values::<Function>() {
            handler?.call::<()>(())?;
        }
        Ok(())
    };
    run().map_err(|err| anyhow::anyhow!("{PRE_INIT} failed: {err}"))
}
