//! The answers of `get_queue_config`, cached under every argument the
//! event receives (domain, tenant, campaign, routing_domain), bounded in
//! size and age, and emptied when the policy's config epoch changes.

use crate::lua_api::{QueueConfigArgs, GET_QUEUE_CONFIG};
use crate::queue_config::QueueConfig;
use policy::{EpochCache, PolicyPool};
use std::sync::Arc;
use std::time::Duration;

/// Most answers kept; the least recently used go first.
pub const CAPACITY: u64 = 10_000;

/// An answer is asked for again after this long, even without a reload.
pub const TTL: Duration = Duration::from_secs(300);

/// See the module documentation.
#[derive(Clone)]
pub struct QueueConfigCache {
    policy: PolicyPool,
    cache: Arc<EpochCache<QueueConfigArgs, Arc<QueueConfig>>>,
}

impl QueueConfigCache {
    /// A cache in front of `policy`'s `get_queue_config`, emptied by every
    /// epoch bump of `policy`.
    pub fn new(policy: PolicyPool) -> Self {
        let cache = EpochCache::for_policy(&policy, CAPACITY, TTL);
        QueueConfigCache { policy, cache }
    }

    /// The configuration for `args`, from the cache or the policy (`nil`
    /// or no handler: the defaults). An error is the policy's text; it is
    /// not cached.
    pub async fn get(&self, args: &QueueConfigArgs) -> Result<Arc<QueueConfig>, String> {
        let ask = || async {
            match self.policy.call(&GET_QUEUE_CONFIG, args.clone()).await {
                Ok(Some(Some(config))) => Ok(Arc::new(config.0)),
                Ok(Some(None) | None) => Ok(Arc::new(QueueConfig::default())),
                Err(err) => Err(crate::policy_error_text(&err)),
            }
        };
        self.cache
            .get_or_try_insert(args.clone(), self.policy.epoch(), ask)
            .await
            .map_err(|err| (*err).clone())
    }

    /// Answers cached now (after pending maintenance).
    pub async fn len(&self) -> u64 {
        self.cache.len().await
    }

    /// Whether nothing is cached.
    pub async fn is_empty(&self) -> bool {
        self.cache.is_empty().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lua_api::{registrar, InitRequests};
    use crate::queue_config::DeliveryProtocol;
    use policy::PolicyLoader;

    fn pool(dir: &std::path::Path) -> PolicyPool {
        let path = dir.join("policy.lua");
        std::fs::write(
            &path,
            r#"local kumo = require 'kumo'
            calls = 0
            kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
              return kumo.make_queue_config {
                protocol = { maildir_path = '/md/' .. domain .. '/' .. (tenant or '-') .. '/'
                  .. (campaign or '-') .. '/' .. (routing_domain or '-') },
              }
            end)"#,
        )
        .unwrap();
        let loader = PolicyLoader::new(&path, vec![registrar(Arc::new(InitRequests::new("init")))]);
        PolicyPool::new(loader, Duration::from_secs(10)).unwrap()
    }

    fn args(routing_domain: Option<&str>) -> QueueConfigArgs {
        (
            "example.com".into(),
            Some("t".into()),
            None,
            routing_domain.map(str::to_owned),
        )
    }

    fn path(config: &QueueConfig) -> String {
        match &config.protocol {
            Some(DeliveryProtocol::MaildirPath(path)) => path.display().to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn keyed_by_every_argument_and_emptied_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let policy = pool(dir.path());
        let cache = QueueConfigCache::new(policy.clone());
        let plain = cache.get(&args(None)).await.unwrap();
        let routed = cache.get(&args(Some("r.example"))).await.unwrap();
        assert_eq!(path(&plain), "/md/example.com/t/-/-");
        assert_eq!(path(&routed), "/md/example.com/t/-/r.example");
        // Cached: the same Arc comes back.
        assert!(Arc::ptr_eq(&plain, &cache.get(&args(None)).await.unwrap()));
        assert_eq!(cache.len().await, 2);
        policy.bump_epoch().unwrap();
        assert!(cache.is_empty().await);
        let again = cache.get(&args(None)).await.unwrap();
        assert!(!Arc::ptr_eq(&plain, &again));
    }
}
