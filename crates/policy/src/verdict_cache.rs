//! The login verdict cache both listeners share (HTTP Basic/Bearer and
//! SOCKS RFC 1929): what the policy decided about a credential, remembered
//! for a while so that a strong password hash (argon2id costs tens of
//! milliseconds by design) is checked once per credential and TTL, not once
//! per connection.
//!
//! Keys are a salted SHA-256 over the login generation and the
//! credential's fields (each length-prefixed), with a salt drawn at random
//! per cache: the clear password is never kept, and a key means nothing
//! outside this process. Accepted and refused verdicts have their own TTL;
//! the cache is bounded (moka, evicting the least useful entries), emptied
//! when the policy's config epoch changes or a credential file reloads,
//! and concurrent misses on one key run the policy once.

use crate::{AaaContext, PolicyPool};
use moka::future::Cache;
use moka::Expiry;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// How many credentials a verdict cache remembers at most.
pub const VERDICT_CACHE_CAPACITY: u64 = 16_384;
/// How long a refusal is remembered (at most the accepted TTL): long
/// enough that a client retrying a wrong password costs one hash check
/// per few seconds, short enough that a user just added gets in quickly.
pub const REFUSED_VERDICT_TTL: Duration = Duration::from_secs(5);

/// A decided login that a [`VerdictCache`] can keep.
pub trait Verdict: Clone + Send + Sync + 'static {
    /// Accepted verdicts get the accepted TTL, others the refused one.
    fn is_accepted(&self) -> bool;
}

/// What a cached verdict is valid for: the policy's config epoch and the
/// generation of the process's credential files. Part of every key, so a
/// verdict from before a reload is never found again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LoginGeneration {
    /// [`PolicyPool::epoch`].
    pub policy_epoch: u64,
    /// `CredentialFiles::generation` (0 without `kumo.aaa`).
    pub credentials: u64,
}

impl LoginGeneration {
    /// The generation now. Checks the credential files whose check
    /// interval has passed, so an edited file takes effect even when every
    /// login is answered from the cache.
    pub fn current(policy: &PolicyPool, aaa: Option<&AaaContext>) -> Self {
        LoginGeneration {
            policy_epoch: policy.epoch(),
            credentials: aaa.map_or(0, |aaa| aaa.credentials().generation()),
        }
    }
}

/// A cache key: 32 bytes of salted SHA-256. `Debug` shows hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerdictKey(pub [u8; 32]);

impl std::fmt::Debug for VerdictKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

struct VerdictExpiry {
    accepted: Duration,
    refused: Duration,
}

impl<V: Verdict> Expiry<VerdictKey, V> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &VerdictKey,
        value: &V,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_accepted() {
            self.accepted
        } else {
            self.refused
        })
    }
}

/// Remembers login verdicts (see the module docs). One per listener.
pub struct VerdictCache<V: Verdict> {
    /// `None`: caching disabled (a zero TTL).
    cache: Option<Cache<VerdictKey, V>>,
    salt: [u8; 32],
    generation: Mutex<LoginGeneration>,
}

impl<V: Verdict> VerdictCache<V> {
    /// A cache keeping accepted verdicts for `accepted_ttl` and refusals
    /// for `min(refused_ttl, accepted_ttl)`, at most `capacity` of them. A
    /// zero `accepted_ttl` disables caching.
    pub fn new(accepted_ttl: Duration, refused_ttl: Duration, capacity: u64) -> Self {
        let cache = (!accepted_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(VerdictExpiry {
                    accepted: accepted_ttl,
                    refused: refused_ttl.min(accepted_ttl),
                })
                .build()
        });
        let mut salt = [0u8; 32];
        if let Err(err) = getrandom::fill(&mut salt) {
            // The salt only hides keys in memory; a fixed one still never
            // keeps the password in clear.
            warn!("no random salt for the verdict cache: {err}");
        }
        VerdictCache {
            cache,
            salt,
            generation: Mutex::new(LoginGeneration::default()),
        }
    }

    /// Whether verdicts are kept at all.
    pub fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The key of a credential: SHA-256 of the salt, the generation and
    /// each field length-prefixed (so no two field lists share an input).
    pub fn key(&self, generation: LoginGeneration, fields: &[&[u8]]) -> VerdictKey {
        let mut hash = Sha256::new();
        hash.update(self.salt);
        hash.update(generation.policy_epoch.to_be_bytes());
        hash.update(generation.credentials.to_be_bytes());
        for field in fields {
            hash.update((field.len() as u64).to_be_bytes());
            hash.update(field);
        }
        VerdictKey(hash.finalize().into())
    }

    /// The verdict on the credential made of `fields`, from the cache or
    /// from the future `decide` makes (run once for concurrent misses on
    /// the same key), and whether it came from the cache. An `Err` from
    /// `decide` is not kept.
    ///
    /// `decide` is made, and its state boxed, only on a miss: a future
    /// that calls the policy is kilobytes, and a hit (most logins) should
    /// not carry it.
    pub async fn get_or_decide<E, F>(
        &self,
        generation: LoginGeneration,
        fields: &[&[u8]],
        decide: impl FnOnce() -> F,
    ) -> Result<(V, bool), Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        let Some(cache) = &self.cache else {
            let verdict = Box::pin(decide()).await;
            return verdict.map(|v| (v, false)).map_err(Arc::new);
        };
        {
            let mut seen = self.generation.lock();
            if *seen != generation {
                // Old keys can never match again; drop them now rather
                // than holding memory until they expire.
                cache.invalidate_all();
                *seen = generation;
            }
        }
        let key = self.key(generation, fields);
        if let Some(verdict) = cache.get(&key).await {
            return Ok((verdict, true));
        }
        let entry = Box::pin(cache.entry(key).or_try_insert_with(decide())).await?;
        let cached = !entry.is_fresh();
        Ok((entry.into_value(), cached))
    }

    /// Every key held now, for inspection (tests, diagnostics): salted
    /// digests only.
    pub fn keys(&self) -> Vec<VerdictKey> {
        self.cache
            .iter()
            .flat_map(|cache| cache.iter().map(|(key, _)| *key))
            .collect()
    }

    /// Verdicts held now (approximate until pending maintenance ran).
    pub fn len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |cache| cache.entry_count())
    }

    /// Whether no verdict is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "verdict_cache_tests.rs"]
mod tests;
