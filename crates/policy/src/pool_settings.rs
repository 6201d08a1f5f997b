//! The limits of the Lua state pool, shared by the loader, the pool and the
//! policy (which may change them from `pre_init`/`init`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory one Lua state may hold unless the policy says otherwise; an
/// allocation past it is a Lua error for that call only.
pub const DEFAULT_LUA_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// The most a policy may raise a state's memory limit to.
pub const MAX_LUA_MEMORY_LIMIT: usize = 16 * 1024 * 1024 * 1024;

/// Growth of a state during one call above which it is fully collected
/// before it goes back to the pool.
pub const COLLECT_AFTER_GROWTH: usize = 1024 * 1024;

/// Limits of the state pool.
#[derive(Debug)]
pub struct PoolSettings {
    max_spare_states: AtomicUsize,
    memory_limit: AtomicUsize,
    max_concurrent_calls: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PoolSettings {
            max_spare_states: AtomicUsize::new(Self::default_max_spare_states()),
            memory_limit: AtomicUsize::new(DEFAULT_LUA_MEMORY_LIMIT),
            max_concurrent_calls: (cores * 16).max(32),
        }
    }
}

impl PoolSettings {
    /// Idle states kept by default: enough that a busy server does not
    /// reload the policy per call (a state costs about 100 KiB idle).
    pub fn default_max_spare_states() -> usize {
        256
    }

    /// Idle states kept for reuse (`kumo.set_max_spare_lua_contexts`).
    pub fn max_spare_states(&self) -> usize {
        self.max_spare_states.load(Ordering::Relaxed)
    }

    /// Change how many idle states are kept (at least one).
    pub fn set_max_spare_states(&self, limit: usize) {
        self.max_spare_states.store(limit.max(1), Ordering::Relaxed);
    }

    /// Bytes one state may hold (`kumo.set_lua_memory_limit`).
    pub fn memory_limit(&self) -> usize {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// Change the per-state memory limit; applies to states loaded from now
    /// on (and to the calling state, by the Lua function).
    pub fn set_memory_limit(&self, bytes: usize) -> Result<(), String> {
        if !(1024 * 1024..=MAX_LUA_MEMORY_LIMIT).contains(&bytes) {
            return Err(format!(
                "memory limit {bytes} is outside 1 MiB..={MAX_LUA_MEMORY_LIMIT} bytes"
            ));
        }
        self.memory_limit.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Policy calls that may run at once (each holds a blocking thread);
    /// further calls wait for a slot within their own deadline.
    pub fn max_concurrent_calls(&self) -> usize {
        self.max_concurrent_calls
    }

    /// Growth during a call that makes a state be collected before reuse.
    pub fn collect_after_growth(&self) -> usize {
        COLLECT_AFTER_GROWTH
    }
}
