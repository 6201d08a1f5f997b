//! The policy library: the helper modules real KumoMTA policies call from
//! their event handlers (`kumo.memoize`, `kumo.serde`, `kumo.digest`,
//! `kumo.string`, `kumo.regex`, `require 'sqlite'`, `require 'redis'`,
//! `kumo.http`, ...). Both binaries register it in every Lua state through
//! [`registrar`]; process-wide state (caches shared by all Lua states) lives
//! in [`PolicyLibrary`], which the binary creates once and hands over.
//!
//! It knows nothing of sockets the daemons serve, listeners or protocols.

use mlua::Lua;
use policy::ModuleRegistrar;
use std::sync::Arc;

/// Process-wide state of the policy library, shared by every Lua state of
/// the process.
#[derive(Default)]
pub struct PolicyLibrary {}

impl PolicyLibrary {
    /// Fresh library state (one per process; tests build their own).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// A registrar that installs every library module in a new Lua state.
pub fn registrar(library: Arc<PolicyLibrary>) -> ModuleRegistrar {
    Arc::new(move |lua: &Lua| register(lua, &library))
}

/// Install the library's modules in `lua`.
pub fn register(_lua: &Lua, _library: &Arc<PolicyLibrary>) -> mlua::Result<()> {
    Ok(())
}
