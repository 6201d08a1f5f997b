//! The policy library: the helper modules real KumoMTA policies call from
//! their event handlers (`kumo.memoize`, `kumo.serde`, `kumo.digest`,
//! `kumo.string`, `kumo.regex`, `require 'sqlite'`, `require 'redis'`,
//! `kumo.http`, ...). Both binaries register it in every Lua state through
//! [`registrar`]; process-wide state (caches shared by all Lua states) lives
//! in [`PolicyLibrary`], which the binary creates once and hands over.
//!
//! It knows nothing of sockets the daemons serve, listeners or protocols.

mod cidr_map;
mod convert;
mod diagnostics;
mod digest;
mod domain_map;
mod encode;
mod formats;
mod func;
mod regex;
mod secrets;
mod string;
#[cfg(test)]
mod test_support;
mod time;
mod uuid;

use mlua::Lua;
use policy::ModuleRegistrar;
use std::sync::Arc;

/// Process-wide state of the policy library, shared by every Lua state of
/// the process.
#[derive(Default)]
pub struct PolicyLibrary {
    /// Backs `kumo.set_diagnostic_log_filter` (the binary's log filter).
    log_filter: Option<LogFilterSetter>,
}

/// Replaces the process's diagnostic log filter (`EnvFilter` syntax); the
/// same shape as `daemon::FilterSetter`.
pub type LogFilterSetter = Arc<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

impl PolicyLibrary {
    /// Fresh library state (one per process; tests build their own).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Fresh library state whose `kumo.set_diagnostic_log_filter` calls
    /// `set_filter`.
    // The update syntax keeps this right as other fields are added.
    #[allow(clippy::needless_update)]
    pub fn with_log_filter(set_filter: LogFilterSetter) -> Arc<Self> {
        Arc::new(Self {
            log_filter: Some(set_filter),
            ..Self::default()
        })
    }
}

/// A registrar that installs every library module in a new Lua state.
pub fn registrar(library: Arc<PolicyLibrary>) -> ModuleRegistrar {
    Arc::new(move |lua: &Lua| register(lua, &library))
}

/// Install the library's modules in `lua`.
pub fn register(lua: &Lua, library: &Arc<PolicyLibrary>) -> mlua::Result<()> {
    cidr_map::register(lua)?;
    diagnostics::register(lua, library.log_filter.clone())?;
    digest::register(lua)?;
    domain_map::register(lua)?;
    encode::register(lua)?;
    formats::register(lua)?;
    regex::register(lua)?;
    secrets::register(lua)?;
    string::register(lua)?;
    time::register(lua)?;
    uuid::register(lua)?;
    Ok(())
}
