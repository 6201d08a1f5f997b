//! A Lua state for the library's integration tests: the library installed
//! and `print` captured into the global table `printed` (one string per
//! call, arguments joined by tabs), so upstream examples that print can be
//! checked.

use mlua::Lua;
use policy_lib::PolicyLibrary;
use std::sync::Arc;

/// A fresh state using `library`.
pub fn state_with(library: &Arc<PolicyLibrary>) -> Lua {
    let lua = Lua::new();
    policy_lib::register(&lua, library).unwrap();
    lua.load(
        "printed = {}
         function print(...)
           local parts = {}
           for i = 1, select('#', ...) do parts[i] = tostring(select(i, ...)) end
           table.insert(printed, table.concat(parts, '\\t'))
         end",
    )
    .exec()
    .unwrap();
    lua
}

/// Run `code` as a coroutine, so the library's waiting functions work.
pub async fn run(lua: &Lua, code: &str) -> mlua::Result<()> {
    lua.load(code).exec_async().await
}
