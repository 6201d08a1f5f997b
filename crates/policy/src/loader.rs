use crate::kumo_module;
use crate::pool_settings::PoolSettings;
use anyhow::Context;
use mlua::Lua;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Adds a binary's own modules (e.g. `proxy`) to a fresh Lua state.
pub type ModuleRegistrar = Arc<dyn Fn(&Lua) -> mlua::Result<()> + Send + Sync>;

/// Knows how to build a Lua state with the policy loaded.
#[derive(Clone)]
pub struct PolicyLoader {
    path: PathBuf,
    registrars: Vec<ModuleRegistrar>,
    settings: Arc<PoolSettings>,
}

impl PolicyLoader {
    /// A loader for the policy file at `path`, with extra modules.
    pub fn new(path: impl Into<PathBuf>, registrars: Vec<ModuleRegistrar>) -> Self {
        PolicyLoader {
            path: path.into(),
            registrars,
            settings: Arc::new(PoolSettings::default()),
        }
    }

    /// The pool limits the states are built with (and the policy may set).
    pub fn settings(&self) -> &Arc<PoolSettings> {
        &self.settings
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Build a new state: standard library, `kumo`, the binary's modules,
    /// `package.path` including the policy's directory, then run the file.
    pub fn load(&self) -> anyhow::Result<Lua> {
        let lua = Lua::new();
        lua.set_memory_limit(self.settings.memory_limit())
            .map_err(lua_error_to_anyhow)?;
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

        kumo_module::register(lua, &self.settings)?;
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
