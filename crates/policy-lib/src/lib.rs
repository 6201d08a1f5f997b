//! The policy library: the helper modules real KumoMTA policies call from
//! their event handlers (`kumo.memoize`, `kumo.serde`, `kumo.digest`,
//! `kumo.string`, `kumo.regex`, `require 'sqlite'`, `require 'redis'`,
//! `kumo.http`, ...). Both binaries register it in every Lua state through
//! [`registrar`]; process-wide state (caches shared by all Lua states) lives
//! in [`PolicyLibrary`], which the binary creates once and hands over.
//!
//! It knows nothing of sockets the daemons serve, listeners or protocols.

mod cache_key;
mod cidr_map;
mod convert;
mod diagnostics;
mod digest;
mod domain_map;
mod encode;
mod formats;
mod func;
mod http;
mod http_response;
mod lua_errors;
mod memo_value;
mod memoize;
mod redis;
mod redis_values;
mod regex;
mod secrets;
mod sqlite;
mod startup;
mod string;
#[cfg(test)]
mod test_support;
mod time;
mod uuid;

pub use crate::redis::{RedisParams, RedisPool};
use mlua::Lua;
use policy::ModuleRegistrar;
pub use startup::load_policy;
use std::sync::Arc;

/// Process-wide state of the policy library, shared by every Lua state of
/// the process.
#[derive(Default)]
pub struct PolicyLibrary {
    /// Backs `kumo.set_diagnostic_log_filter` (the binary's log filter).
    log_filter: Option<LogFilterSetter>,
    /// `kumo.memoize` caches by name.
    memoize: Arc<memoize::MemoizeRegistry>,
    /// `redis.open` connection pools by parameters.
    redis: Arc<redis::RedisPools>,
    /// TLS client configurations of `kumo.http` clients.
    http: Arc<http::HttpTls>,
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
    pub fn with_log_filter(set_filter: LogFilterSetter) -> Arc<Self> {
        Arc::new(Self {
            log_filter: Some(set_filter),
            ..Self::default()
        })
    }

    /// The config epoch was bumped (policy reload): forget what
    /// `kumo.memoize` caches with `invalidate_with_epoch = true` hold.
    pub fn bump_epoch(&self) {
        self.memoize.bump_epoch();
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
    memoize::register(lua, &library.memoize)?;
    sqlite::register(lua)?;
    redis::register(lua, &library.redis)?;
    http::register(lua, &library.http)?;
    Ok(())
}
