//! The one cache type for answers of the policy (ACL definitions, access
//! decisions, identity limits, queue configurations): bounded (moka evicts
//! the least useful entries), each answer kept for the TTL in force when it
//! was stored (the TTL may change at run time: `kumo.aaa.set_*_ttl`), and
//! tied to the policy's config epoch: an answer stored under another epoch
//! is never returned, and an epoch bump empties the cache. Login verdicts
//! have their own cache ([`crate::VerdictCache`]) because their keys hold
//! secrets and must be salted hashes.

use crate::PolicyPool;
use moka::future::Cache;
use moka::Expiry;
use parking_lot::RwLock;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct Entry<V> {
    value: V,
    epoch: u64,
    ttl: Duration,
}

struct EntryTtl;

impl<K, V> Expiry<K, Entry<V>> for EntryTtl {
    fn expire_after_create(
        &self,
        _key: &K,
        entry: &Entry<V>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// See the module documentation.
pub struct EpochCache<K, V> {
    cache: Cache<K, Entry<V>>,
    ttl: RwLock<Duration>,
}

impl<K, V> EpochCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` answers, each kept for `ttl` (zero: not kept).
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        EpochCache {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryTtl)
                .build(),
            ttl: RwLock::new(ttl),
        }
    }

    /// [`EpochCache::new`], emptied whenever `policy`'s epoch is bumped.
    pub fn for_policy(policy: &PolicyPool, capacity: u64, ttl: Duration) -> Arc<Self> {
        let cache = Arc::new(Self::new(capacity, ttl));
        let emptied = cache.cache.clone();
        policy.on_epoch_bump(Arc::new(move |_| emptied.invalidate_all()));
        cache
    }

    /// The TTL answers stored from now on are kept for.
    pub fn ttl(&self) -> Duration {
        *self.ttl.read()
    }

    /// Keep answers stored from now on for `ttl` (zero: not kept).
    pub fn set_ttl(&self, ttl: Duration) {
        *self.ttl.write() = ttl;
    }

    /// The answer for `key` stored under `epoch`, if it has not expired.
    pub async fn get(&self, key: &K, epoch: u64) -> Option<V> {
        self.cache
            .get(key)
            .await
            .filter(|entry| entry.epoch == epoch)
            .map(|entry| entry.value)
    }

    /// Store the answer for `key` computed under `epoch`.
    pub async fn insert(&self, key: K, value: V, epoch: u64) {
        let ttl = self.ttl();
        if !ttl.is_zero() {
            let entry = Entry { value, epoch, ttl };
            self.cache.insert(key, entry).await;
        }
    }

    /// The answer for `key` under `epoch`, or the one computed by the future
    /// `ask` makes (then stored). Concurrent misses on one key share
    /// one `ask`; an `Err` is not stored. `ask` is made, and its state
    /// boxed, only on a miss: a future calling the policy is kilobytes
    /// that a hit should not carry.
    pub async fn get_or_try_insert<E, F>(
        &self,
        key: K,
        epoch: u64,
        ask: impl FnOnce() -> F,
    ) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(value) = self.get(&key, epoch).await {
            return Ok(value);
        }
        Box::pin(self.insert_asked(key, epoch, ask())).await
    }

    /// The miss path of [`EpochCache::get_or_try_insert`].
    async fn insert_asked<E, F>(&self, key: K, epoch: u64, ask: F) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        // A stale entry (another epoch) would be returned by try_get_with.
        self.cache.invalidate(&key).await;
        let ttl = self.ttl();
        if ttl.is_zero() {
            return ask.await.map_err(Arc::new);
        }
        let entry = self
            .cache
            .try_get_with(key, async {
                ask.await.map(|value| Entry { value, epoch, ttl })
            })
            .await?;
        Ok(entry.value)
    }

    /// Forget every answer.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Answers held (after pending maintenance).
    pub async fn len(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Whether no answer is held (after pending maintenance).
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn ask_counting(calls: &AtomicUsize, value: u32) -> Result<u32, String> {
        calls.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    #[tokio::test]
    async fn answers_are_kept_per_epoch_and_errors_are_not() {
        let cache = EpochCache::<&str, u32>::new(100, Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let first = cache
            .get_or_try_insert("k", 1, || ask_counting(&calls, 7))
            .await;
        let again = cache
            .get_or_try_insert("k", 1, || ask_counting(&calls, 8))
            .await;
        assert_eq!((first.unwrap(), again.unwrap()), (7, 7));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // Another epoch: never the old answer.
        assert_eq!(cache.get(&"k", 2).await, None);
        let newer = cache
            .get_or_try_insert("k", 2, || ask_counting(&calls, 9))
            .await;
        assert_eq!(newer.unwrap(), 9);
        let failed = cache
            .get_or_try_insert("e", 2, || async { Err::<u32, _>("boom".to_string()) })
            .await;
        assert_eq!(*failed.unwrap_err(), "boom");
        assert_eq!(cache.get(&"e", 2).await, None, "errors are not kept");
    }

    #[tokio::test]
    async fn a_zero_ttl_keeps_nothing_and_the_ttl_can_change() {
        let cache = EpochCache::<u32, u32>::new(100, Duration::ZERO);
        cache.insert(1, 1, 0).await;
        assert_eq!(cache.get(&1, 0).await, None);
        cache.set_ttl(Duration::from_secs(60));
        cache.insert(1, 1, 0).await;
        assert_eq!(cache.get(&1, 0).await, Some(1));
        cache.clear();
        assert!(cache.is_empty().await);
    }
}
