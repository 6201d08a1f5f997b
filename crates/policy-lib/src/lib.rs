//! The policy library: the helper modules real KumoMTA policies call from
//! their event handlers (`kumo.memoize`, `kumo.serde`, `kumo.digest`,
//! `kumo.string`, `kumo.regex`, `require 'sqlite'`, `require 'redis'`,
//! `kumo.http`, ...). Both binaries register it in every Lua state through
//! [`registrar`]; process-wide state (caches shared by all Lua states) lives
//! in [`PolicyLibrary`], which the binary creates once and hands over.
//!
//! It knows nothing of sockets the daemons serve, listeners or protocols.

mod cache_key;
mod http;
mod http_response;
mod lua_errors;
mod memo_value;
mod memoize;
mod redis;
mod redis_values;
mod sqlite;

use mlua::Lua;
use policy::ModuleRegistrar;
use std::sync::Arc;

/// Process-wide state of the policy library, shared by every Lua state of
/// the process.
#[derive(Default)]
pub struct PolicyLibrary {
    /// `kumo.memoize` caches by name.
    memoize: Arc<memoize::MemoizeRegistry>,
    /// `redis.open` connection pools by parameters.
    redis: Arc<redis::RedisPools>,
    /// TLS client configurations of `kumo.http` clients.
    http: Arc<http::HttpTls>,
}

impl PolicyLibrary {
    /// Fresh library state (one per process; tests build their own).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
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
    memoize::register(lua, &library.memoize)?;
    sqlite::register(lua)?;
    redis::register(lua, &library.redis)?;
    http::register(lua, &library.http)?;
    Ok(())
}
