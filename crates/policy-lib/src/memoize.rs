//! `kumo.memoize(fn, { name, ttl, capacity, ... })`: a function that
//! remembers `fn`'s results per set of arguments. One cache per `name` is
//! shared by every Lua state of the process (the registry lives in
//! [`crate::PolicyLibrary`]); concurrent misses for the same arguments run
//! `fn` once while the others wait for its result (moka's coalescing).

use crate::cache_key::{update_field, CacheKey, KeyDigest};
use crate::lua_errors::{lua_err, lua_err_from};
use crate::memo_value::CachedValue;
use mlua::{Function, Lua, MultiValue, Value};
use moka::future::Cache;
use parking_lot::Mutex;
use policy::{deserialize_duration, from_lua_params, kumo_module};
use serde::Deserialize;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `populate_timeout` when the policy gives none (KumoMTA's default).
pub const DEFAULT_POPULATE_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest `ttl` accepted (moka refuses durations past 1000 years).
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The `{ ... }` table of `kumo.memoize`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoizeParams {
    /// The cache's name; every memoized function with this name (in any Lua
    /// state) shares one cache.
    name: String,
    /// How long a result is reused.
    #[serde(deserialize_with = "deserialize_duration")]
    ttl: Duration,
    /// How many results are kept; past it the least useful are evicted.
    capacity: u64,
    /// A config epoch bump forgets every result.
    #[serde(default)]
    invalidate_with_epoch: bool,
    /// How long a lookup waits for the function (its own call or another
    /// caller's for the same arguments).
    #[serde(
        default = "default_populate_timeout",
        deserialize_with = "deserialize_duration"
    )]
    populate_timeout: Duration,
    /// After `populate_timeout`, try again instead of raising an error.
    #[serde(default)]
    retry_on_populate_timeout: bool,
    /// After `populate_timeout`, answer with the last result for these
    /// arguments even past its TTL (implies no epoch invalidation).
    #[serde(default)]
    allow_stale_reads: bool,
}

fn default_populate_timeout() -> Duration {
    DEFAULT_POPULATE_TIMEOUT
}

impl MemoizeParams {
    fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            return Err("capacity must be at least 1".into());
        }
        if self.ttl > MAX_TTL {
            return Err(format!("ttl must be at most {MAX_TTL:?}"));
        }
        if self.populate_timeout.is_zero() {
            return Err("populate_timeout must be positive".into());
        }
        Ok(())
    }

    fn follows_epoch(&self) -> bool {
        self.invalidate_with_epoch && !self.allow_stale_reads
    }

    fn function_name(&self) -> String {
        format!("kumo.memoize '{}'", self.name)
    }
}

/// What one call returned (all its return values).
type CachedResult = Arc<Vec<CachedValue>>;

/// One named cache.
struct MemoCache {
    params: MemoizeParams,
    fresh: Cache<CacheKey, CachedResult>,
    /// With `allow_stale_reads`: the last result per key, kept past its TTL
    /// (bounded by `capacity` like `fresh`).
    stale: Option<Cache<CacheKey, CachedResult>>,
}

impl MemoCache {
    fn new(params: MemoizeParams) -> Self {
        let fresh = Cache::builder()
            .max_capacity(params.capacity)
            .time_to_live(params.ttl)
            .build();
        let stale = params
            .allow_stale_reads
            .then(|| Cache::builder().max_capacity(params.capacity).build());
        MemoCache {
            params,
            fresh,
            stale,
        }
    }

    /// The result for `key`: cached, or computed by calling `function` with
    /// `args` (once for all concurrent callers), within `populate_timeout`.
    async fn lookup(
        &self,
        key: CacheKey,
        function: &Function,
        args: MultiValue,
    ) -> mlua::Result<CachedResult> {
        let timeout = self.params.populate_timeout;
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime: a synchronous caller (a policy's top level), so
            // the function cannot wait on anything a timer could cut off.
            let populate = self.populate(key, function, args);
            return self
                .fresh
                .try_get_with(key, populate)
                .await
                .map_err(|err| (*err).clone());
        }
        loop {
            let populate = self.populate(key, function, args.clone());
            match tokio::time::timeout(timeout, self.fresh.try_get_with(key, populate)).await {
                Ok(Ok(result)) => return Ok(result),
                // The function's own error, unchanged; errors are not cached.
                Ok(Err(err)) => return Err((*err).clone()),
                Err(_elapsed) => {
                    if let Some(stale) = &self.stale {
                        if let Some(result) = stale.get(&key).await {
                            return Ok(result);
                        }
                    }
                    if !self.params.retry_on_populate_timeout {
                        return Err(lua_err(
                            &self.params.function_name(),
                            format!("the function did not return within {timeout:?}"),
                        ));
                    }
                }
            }
        }
    }

    async fn populate(
        &self,
        key: CacheKey,
        function: &Function,
        args: MultiValue,
    ) -> mlua::Result<CachedResult> {
        let returned: MultiValue = function.call_async(args).await?;
        let values = returned
            .iter()
            .map(CachedValue::from_lua)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                lua_err(
                    &self.params.function_name(),
                    format!("cannot cache the result: {err}"),
                )
            })?;
        let result = Arc::new(values);
        if let Some(stale) = &self.stale {
            stale.insert(key, result.clone()).await;
        }
        Ok(result)
    }
}

/// Every memoize cache of the process, by name, and the config epoch that
/// `invalidate_with_epoch` caches follow.
pub(crate) struct MemoizeRegistry {
    caches: Mutex<HashMap<String, Arc<MemoCache>>>,
    epoch: AtomicU64,
    digest: KeyDigest,
}

impl Default for MemoizeRegistry {
    fn default() -> Self {
        MemoizeRegistry {
            caches: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            digest: KeyDigest::default(),
        }
    }
}

impl MemoizeRegistry {
    /// The cache named in `params`. Every Lua state runs the policy's top
    /// level, so the same `kumo.memoize` call arrives once per state: equal
    /// parameters share the cache; changed ones (a reloaded policy) start a
    /// new one, and states still holding the old cache keep using it.
    fn cache_for(&self, params: MemoizeParams) -> Arc<MemoCache> {
        let mut caches = self.caches.lock();
        if let Some(existing) = caches.get(&params.name) {
            if existing.params == params {
                return existing.clone();
            }
        }
        let cache = Arc::new(MemoCache::new(params));
        caches.insert(cache.params.name.clone(), cache.clone());
        cache
    }

    /// Forget every result of the caches with `invalidate_with_epoch`.
    pub(crate) fn bump_epoch(&self) {
        // The epoch is part of their keys, so a result being computed right
        // now lands under the old epoch and is never read.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for cache in self.caches.lock().values() {
            if cache.params.follows_epoch() {
                cache.fresh.invalidate_all();
            }
        }
    }

    /// The salted digest of `args` (never the arguments themselves: they
    /// may be passwords).
    fn key(&self, cache: &MemoCache, args: &MultiValue) -> mlua::Result<CacheKey> {
        let mut encoded = Vec::new();
        for (position, arg) in args.iter().enumerate() {
            CachedValue::from_lua(arg)
                .map_err(|err| {
                    lua_err(
                        &cache.params.function_name(),
                        format!("argument #{} cannot be a cache key: {err}", position + 1),
                    )
                })?
                .encode_key(&mut encoded);
        }
        let epoch = if cache.params.follows_epoch() {
            self.epoch.load(Ordering::Acquire)
        } else {
            0
        };
        Ok(self.digest.key(|hasher| {
            hasher.update(epoch.to_le_bytes());
            hasher.update((args.len() as u64).to_le_bytes());
            update_field(hasher, &encoded);
        }))
    }
}

/// Install `kumo.memoize`.
pub(crate) fn register(lua: &Lua, registry: &Arc<MemoizeRegistry>) -> mlua::Result<()> {
    let registry = registry.clone();
    let memoize = lua.create_function(move |lua, (function, params): (Value, Value)| {
        let Value::Function(function) = function else {
            return Err(lua_err(
                "kumo.memoize",
                format!("expected a function, got {}", function.type_name()),
            ));
        };
        let params: MemoizeParams =
            from_lua_params(lua, params).map_err(|err| lua_err_from("kumo.memoize", err))?;
        params
            .validate()
            .map_err(|err| lua_err("kumo.memoize", err))?;
        let cache = registry.cache_for(params);
        let registry = registry.clone();
        lua.create_async_function(move |lua, args: MultiValue| {
            let (registry, cache, function) = (registry.clone(), cache.clone(), function.clone());
            async move {
                let key = registry.key(&cache, &args)?;
                let result = cache.lookup(key, &function, args).await?;
                result
                    .iter()
                    .map(|value| value.to_lua(&lua))
                    .collect::<mlua::Result<MultiValue>>()
            }
        })
    })?;
    kumo_module(lua)?.set("memoize", memoize)
}

#[cfg(test)]
#[path = "memoize_tests.rs"]
mod tests;
