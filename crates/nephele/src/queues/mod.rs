//! Scheduled queues: naming, per-queue configuration from the policy, and
//! the attempt/retry/expire life of each spooled message.

use crate::delivery::{self, Outcome};
use crate::logs::{LocalLogger, LogRecord, RecordType, Response};
use crate::lua_api::GET_QUEUE_CONFIG;
use crate::queue_config::QueueConfig;
use crate::smtp::{SmtpDeliverer, Via};
use message::Message;
use parking_lot::Mutex;
use policy::PolicyPool;
use spool::GroupCommitter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

/// The queue name that discards messages.
pub const NULL_QUEUE: &str = "null";

/// Delivery attempts running at once, across all queues.
pub const MAX_CONCURRENT_ATTEMPTS: usize = 64;

/// Wait before asking the policy again when `get_queue_config` failed.
pub const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(60);

/// Where a message is queued and the values `get_queue_config` receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKey {
    /// The queue name.
    pub name: String,
    /// The recipient domain.
    pub domain: String,
    /// Meta `tenant`.
    pub tenant: Option<String>,
    /// Meta `campaign`.
    pub campaign: Option<String>,
    /// Meta `routing_domain`.
    pub routing_domain: Option<String>,
}

impl QueueKey {
    /// Meta `queue` if set, else `[campaign:][tenant@]domain`.
    pub fn for_message(message: &Message) -> Self {
        let text = |key: &str| message.get_meta_str(key).map(str::to_owned);
        let domain = message.recipient().domain().to_ascii_lowercase();
        let tenant = text("tenant");
        let campaign = text("campaign");
        let name = text("queue").unwrap_or_else(|| {
            let mut name = String::new();
            if let Some(campaign) = &campaign {
                name.push_str(campaign);
                name.push(':');
            }
            if let Some(tenant) = &tenant {
                name.push_str(tenant);
                name.push('@');
            }
            name.push_str(&domain);
            name
        });
        QueueKey {
            name,
            domain,
            tenant,
            campaign,
            routing_domain: text("routing_domain"),
        }
    }

    /// Whether messages for this queue are discarded.
    pub fn is_null(&self) -> bool {
        self.name == NULL_QUEUE
    }
}

struct CachedConfig {
    epoch: u64,
    config: Arc<QueueConfig>,
}

/// Owns every queued message until it is delivered, bounced or expired.
pub struct QueueManager {
    policy: PolicyPool,
    spool: Arc<GroupCommitter>,
    logs: Arc<LocalLogger>,
    smtp: SmtpDeliverer,
    configs: Mutex<HashMap<String, CachedConfig>>,
    attempt_slots: Semaphore,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl QueueManager {
    /// A manager delivering with `policy`'s queue configurations, removing
    /// finished messages from `spool` and logging to `logs`; MX records
    /// come from `dns` (else the system's resolver).
    pub fn new(
        policy: PolicyPool,
        spool: Arc<GroupCommitter>,
        logs: Arc<LocalLogger>,
        dns: Option<&crate::smtp::mx::ResolverParams>,
    ) -> anyhow::Result<Self> {
        Ok(QueueManager {
            smtp: SmtpDeliverer::new(policy.clone(), dns)?,
            policy,
            spool,
            logs,
            configs: Mutex::new(HashMap::new()),
            attempt_slots: Semaphore::new(MAX_CONCURRENT_ATTEMPTS),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Take a spooled message into its queue. `num_attempts` is 0 for a new
    /// message (a restart also starts counting again).
    pub fn insert(self: &Arc<Self>, message: Message, key: QueueKey) {
        let manager = self.clone();
        let span = tracing::info_span!("message", id = %message.id(), queue = %key.name);
        self.tasks
            .spawn(async move { manager.run_message(message, key).await }.instrument(span));
    }

    /// Stop scheduling: waiting messages stay in the spool for the next
    /// start; attempts in flight may finish within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.tasks.len(),
                "delivery attempts still running at shutdown"
            );
        }
    }

    async fn config_for(&self, key: &QueueKey) -> Result<Arc<QueueConfig>, String> {
        let epoch = self.policy.epoch();
        if let Some(cached) = self.configs.lock().get(&key.name) {
            if cached.epoch == epoch {
                return Ok(cached.config.clone());
            }
        }
        let args = (
            key.domain.clone(),
            key.tenant.clone(),
            key.campaign.clone(),
            key.routing_domain.clone(),
        );
        let config = match self.policy.call(&GET_QUEUE_CONFIG, args).await {
            Ok(Some(Some(config))) => Arc::new(config.0),
            Ok(Some(None) | None) => Arc::new(QueueConfig::default()),
            Err(err) => return Err(crate::policy_error_text(&err)),
        };
        self.configs.lock().insert(
            key.name.clone(),
            CachedConfig {
                epoch,
                config: config.clone(),
            },
        );
        Ok(config)
    }

    fn record(
        &self,
        kind: RecordType,
        message: &Message,
        key: &QueueKey,
        response: Response,
        attempts: u32,
    ) {
        self.record_via(kind, message, key, response, attempts, Via::default());
    }

    fn record_via(
        &self,
        kind: RecordType,
        message: &Message,
        key: &QueueKey,
        response: Response,
        attempts: u32,
        via: Via,
    ) {
        self.logs.log(
            LogRecord::new(kind, message, &key.name, response, attempts)
                .via(via.peer_address, via.egress_source),
        );
    }

    /// Done with a message: forget it in the spool.
    fn finish(&self, message: &Message) {
        self.spool.remove(message.id().to_string());
    }

    async fn run_message(&self, message: Message, key: QueueKey) {
        let mut attempts = 0u32;
        loop {
            let (delay, expires) = match self.config_for(&key).await {
                Ok(config) => {
                    // An age too large to add means "never".
                    let expires = message.created().checked_add(config.max_age);
                    if expires.is_some_and(|expires| SystemTime::now() >= expires) {
                        self.expire(&message, &key, attempts, "max_age reached");
                        return;
                    }
                    let Some(delay) = self.attempt(&message, &key, &config, &mut attempts).await
                    else {
                        return;
                    };
                    (delay, expires)
                }
                Err(text) => {
                    warn!("get_queue_config failed: {text}");
                    let response =
                        Response::new(451, (4, 3, 0), format!("get_queue_config failed: {text}"));
                    self.record(
                        RecordType::TransientFailure,
                        &message,
                        &key,
                        response,
                        attempts,
                    );
                    (CONFIG_ERROR_RETRY, None)
                }
            };
            let next = SystemTime::now().checked_add(delay);
            if let (Some(next), Some(expires)) = (next, expires) {
                if next >= expires {
                    self.expire(
                        &message,
                        &key,
                        attempts,
                        "the next attempt would be past max_age",
                    );
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// One attempt; the wait before the next one, or `None` when the message
    /// is done with (delivered, bounced, or shutting down).
    async fn attempt(
        &self,
        message: &Message,
        key: &QueueKey,
        config: &QueueConfig,
        attempts: &mut u32,
    ) -> Option<Duration> {
        let (outcome, via) = {
            let _slot = self.attempt_slots.acquire().await.ok()?;
            delivery::attempt(config, &key.domain, message, &self.smtp).await
        };
        *attempts += 1;
        let attempts = *attempts;
        match outcome {
            Outcome::Delivered(response) => {
                info!(attempts, "delivered");
                self.record_via(RecordType::Delivery, message, key, response, attempts, via);
                self.finish(message);
                None
            }
            Outcome::Permanent(response) => {
                info!(attempts, response = %response.content, "bounced");
                self.record_via(RecordType::Bounce, message, key, response, attempts, via);
                self.finish(message);
                None
            }
            Outcome::Transient(response) => {
                debug!(attempts, response = %response.content, "attempt failed");
                self.record_via(
                    RecordType::TransientFailure,
                    message,
                    key,
                    response,
                    attempts,
                    via,
                );
                Some(config.delay_after(attempts))
            }
        }
    }

    fn expire(&self, message: &Message, key: &QueueKey, attempts: u32, why: &str) {
        info!(attempts, "expired: {why}");
        let response = Response::new(551, (5, 4, 7), format!("expired: {why}"));
        self.record(RecordType::Expiration, message, key, response, attempts);
        self.finish(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use message::EnvelopeAddress;
    use serde_json::json;

    fn message() -> Message {
        Message::new(
            EnvelopeAddress::parse("a@example.com").unwrap(),
            EnvelopeAddress::parse("b@Example.NET").unwrap(),
            Vec::new(),
        )
    }

    #[test]
    fn queue_names() {
        let mut msg = message();
        assert_eq!(QueueKey::for_message(&msg).name, "example.net");
        msg.set_meta("tenant", json!("acme"));
        assert_eq!(QueueKey::for_message(&msg).name, "acme@example.net");
        msg.set_meta("campaign", json!("spring"));
        let key = QueueKey::for_message(&msg);
        assert_eq!(key.name, "spring:acme@example.net");
        assert_eq!(key.tenant.as_deref(), Some("acme"));
        assert!(!key.is_null());
        msg.set_meta("queue", json!("null"));
        assert!(QueueKey::for_message(&msg).is_null());
    }
}
