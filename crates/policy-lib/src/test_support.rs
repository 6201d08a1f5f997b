//! Helpers for the unit tests: a Lua state with the library installed, and
//! runners that report Lua errors readably.

use crate::PolicyLibrary;
use mlua::Lua;

/// A Lua state with every library module, plus stand-ins for `kumo.on`
/// (which only registers) and upstream's `policy-extras.policy_utils` (its
/// `assert_eq`), so upstream doc examples run unchanged.
pub(crate) fn lua() -> Lua {
    let lua = Lua::new();
    crate::register(&lua, &PolicyLibrary::new()).expect("library registers");
    lua.load(
        r#"
        -- kumo.on belongs to the policy runtime; examples only register.
        kumo.on = function(event, handler) end
        package.preload['policy-extras.policy_utils'] = function()
          return {
            assert_eq = function(a, b, msg)
              if a ~= b then
                error(string.format('%s: %q ~= %q', msg or 'assert_eq', tostring(a), tostring(b)), 2)
              end
            end,
          }
        end
        "#,
    )
    .exec()
    .expect("policy_utils stand-in");
    lua
}

/// Run `code`; a Lua error fails the test with its message.
pub(crate) fn run(lua: &Lua, code: &str) {
    if let Err(err) = lua.load(code).set_name("test.lua").exec() {
        panic!("Lua failed: {err}\n--- code ---\n{code}");
    }
}

/// Run `code` in a fresh state.
pub(crate) fn run_fresh(code: &str) {
    run(&lua(), code);
}

/// Run `code`, which must fail, and return the error message.
pub(crate) fn error_of(code: &str) -> String {
    match lua().load(code).set_name("test.lua").exec() {
        Ok(()) => panic!("expected a Lua error from:\n{code}"),
        Err(err) => err.to_string(),
    }
}

/// Assert that `code` fails with a message containing every one of `parts`.
pub(crate) fn assert_error(code: &str, parts: &[&str]) {
    let message = error_of(code);
    for part in parts {
        assert!(message.contains(part), "error {message:?} lacks {part:?}");
    }
}
