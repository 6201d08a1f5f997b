//! The Lua policy runtime shared by both binaries.
//!
//! It loads a policy file into Lua 5.4 states (mlua, vendored), provides the
//! `kumo` module (`kumo.on(event, fn)`), lets each binary add its own modules
//! (`proxy`, ...), keeps a pool of loaded states so concurrent callers never
//! wait on one state, and bumps a config epoch to reload the policy. It also
//! owns the small value types that Lua parameter tables share (durations;
//! keysources live in `aaa` and are re-exported here), the `kumo.aaa`
//! module with the process's access-control state ([`AaaContext`]: ACL
//! sources, caches, accounting log, credential files), and the login
//! [`VerdictCache`] both listeners use. It knows nothing of sockets or
//! protocols.

mod aaa_context;
mod aaa_lua;
mod aaa_password_lua;
mod auth_result;
mod credential_files;
mod duration;
mod epoch_cache;
mod error_text;
mod events;
mod identity_limits;
mod init_requests;
mod kumo_module;
mod loader;
mod login;
mod pool;
mod pool_settings;
mod rate_window;
mod verdict_cache;

/// Re-exported so Lua parameter tables keep naming `policy::KeySource`.
pub use aaa::KeySource;
pub use aaa_context::{
    AaaContext, AAA_CACHE_MAX_ENTRIES, ACCESS_DECISION_TTL, ACL_DEFINITION_TTL, GET_ACL_DEFINITION,
};
pub use aaa_lua::{aaa_registrar, AclDefinition, AclMapObject, AclObject, ResourceObject};
pub use auth_result::LuaAuthResult;
pub use credential_files::{CredentialFile, CredentialFiles, DEFAULT_CREDENTIALS_CHECK_INTERVAL};
pub use duration::{
    deserialize_duration, deserialize_optional_duration, parse_duration, parse_rate,
};
pub use epoch_cache::EpochCache;
pub use error_text::{policy_error_text, without_traceback};
pub use events::{Bytes, EventDecl, SerdeArg};
pub use identity_limits::{
    IdentityLimitsCache, Rate, IDENTITY_LIMITS_CAPACITY, IDENTITY_LIMITS_TTL,
};
pub use init_requests::InitRequests;
pub use kumo_module::{call_sync, get_or_create_module, kumo_module, run_pre_init, PRE_INIT};
pub use loader::{ModuleRegistrar, PolicyLoader};
pub use login::{
    LocalOnly, LoginAttempt, LoginObserver, LoginOutcome, LoginPipeline, LoginThrottle,
    LoginVerdict, SharedFailures, Unobserved,
};
pub use pool::{EpochHook, PolicyError, PolicyPool};
pub use pool_settings::{PoolSettings, DEFAULT_LUA_MEMORY_LIMIT};
pub use rate_window::FixedWindow;
pub use verdict_cache::{
    LoginGeneration, Verdict, VerdictCache, VerdictKey, REFUSED_VERDICT_TTL, VERDICT_CACHE_CAPACITY,
};

/// Run CPU-heavy synchronous work (a password hash) from code that may be
/// on an async worker: on a multi-threaded tokio runtime the worker's other
/// tasks move to another thread meanwhile (`block_in_place`); elsewhere
/// (no runtime, a current-thread runtime, a blocking thread) it just runs.
pub fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Convert a Lua parameter table into a serde struct, turning serde's
/// message (which names an unknown key) into a Lua error.
pub fn from_lua_params<T: serde::de::DeserializeOwned>(
    _lua: &mlua::Lua,
    value: mlua::Value,
) -> mlua::Result<T> {
    let options = mlua::DeserializeOptions::new().deny_unsupported_types(false);
    let deserializer = mlua::serde::Deserializer::new_with_options(value, options);
    // The path names the key at fault, however deep (`tcp_keepalive.time`).
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            mlua::Error::RuntimeError(format!("invalid parameters: {inner}"))
        } else {
            mlua::Error::RuntimeError(format!("invalid parameters: {path}: {inner}"))
        }
    })
}
