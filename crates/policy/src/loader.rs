use crate::kumo_module;
use anyhow::Context;
use mlua::{HookTriggers, Lua, VmState};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Adds a binary's own modules (e.g. `proxy`) to a fresh Lua state.
pub type ModuleRegistrar = Arc<dyn Fn(&Lua) -> mlua::Result<()> + Send + Sync>;

/// How many VM instructions run between two checks of a call's deadline.
const DEADLINE_CHECK_INSTRUCTIONS: u32 = 10_000;

/// The deadline of the policy call a state is running, if any. The
/// instruction hook reads it so a runaway handler is stopped instead of
/// holding a worker thread forever.
#[derive(Default)]
pub(crate) struct CallDeadline(pub(crate) Mutex<Option<Instant>>);

/// Knows how to build a Lua state with the policy loaded.
#[derive(Clone)]
pub struct PolicyLoader {
    path: PathBuf,
    registrars: Vec<ModuleRegistrar>,
}

impl PolicyLoader {
    /// A loader for the policy file at `path`, with extra modules.
    pub fn new(path: impl Into<PathBuf>, registrars: Vec<ModuleRegistrar>) -> Self {
        PolicyLoader {
            path: path.into(),
            registrars,
        }
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Build a new state: standard library, `kumo`, the binary's modules,
    /// `package.path` including the policy's directory, then run the file.
    pub fn load(&self) -> anyhow::Result<Lua> {
        let lua = Lua::new();
        self.prepare(&lua).map_err(lua_error_to_anyhow)?;
        let code = std::fs::read(&self.path)
            .with_context(|| format!("reading policy {}", self.path.display()))?;
        lua.load(&code[..])
            .set_name(format!("@{}", self.path.display()))
            .exec()
            .map_err(lua_error_to_anyhow)
            .with_context(|| format!("loading policy {}", self.path.display()))?;
        Ok(lua)
    }

    fn prepare(&self, lua: &Lua) -> mlua::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let package: mlua::Table = lua.globals().get("package")?;
        let old_path: String = package.get("path")?;
        let dir = dir.display();
        package.set("path", format!("{dir}/?.lua;{dir}/?/init.lua;{old_path}"))?;

        lua.set_app_data(CallDeadline::default());
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(DEADLINE_CHECK_INSTRUCTIONS),
            |lua, _debug| {
                let expired = lua
                    .app_data_ref::<CallDeadline>()
                    .and_then(|d| *d.0.lock())
                    .is_some_and(|deadline| Instant::now() > deadline);
                if expired {
                    Err(mlua::Error::RuntimeError(
                        "policy call exceeded its time limit".into(),
                    ))
                } else {
                    Ok(VmState::Continue)
                }
            },
        );

        kumo_module::register(lua)?;
        for registrar in &self.registrars {
            registrar(lua)?;
        }
        Ok(())
    }
}

/// mlua errors carry a traceback after the message; keep it (it names file
/// and line) but as one anyhow error so `{:#}` prints the whole chain.
pub(crate) fn lua_error_to_anyhow(err: mlua::Error) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}
