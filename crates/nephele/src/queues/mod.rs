//! Scheduled queues: naming, per-queue configuration from the policy, and
//! the attempt/retry/expire life of each spooled message.
//!
//! A queued message is an id and its scheduling state ([`schedule::Queued`]);
//! its body stays in the spool and is read for each attempt and dropped
//! after it, so the daemon's memory does not grow with the size of the
//! backlog's messages, only (by about 200 bytes each) with their number.

pub mod config_cache;
mod registry;
pub mod schedule;

use crate::delivery::{self, Outcome};
use crate::logs::{LocalLogger, LogRecord, RecordType, Response};
use crate::lua_api::QueueConfigArgs;
use crate::metrics::{NepheleMetrics, ServiceLabel};
use crate::queue_config::{DeliveryProtocol, QueueConfig};
use crate::smtp::{SmtpDeliverer, Via};
use config_cache::QueueConfigCache;
use message::Message;
use policy::PolicyPool;
use registry::QueueRegistry;
use schedule::{Queued, Schedule};
use spool::{GroupCommitter, Spool};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

/// The queue name that discards messages.
pub const NULL_QUEUE: &str = "null";

/// Delivery attempts running at once, across all queues.
pub const MAX_CONCURRENT_ATTEMPTS: usize = 64;

/// Wait before asking the policy again when `get_queue_config` failed.
pub const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(60);

/// Wait before trying again when the spool could not be read (it is
/// failing and recovering): not counted as an attempt.
pub const SPOOL_READ_RETRY: Duration = Duration::from_secs(5);

/// Where a message is queued and the values `get_queue_config` receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

    /// What `get_queue_config` receives (and its answer is cached under).
    pub fn config_args(&self) -> QueueConfigArgs {
        (
            self.domain.clone(),
            self.tenant.clone(),
            self.campaign.clone(),
            self.routing_domain.clone(),
        )
    }
}

/// Owns every queued message until it is delivered, bounced or expired.
pub struct QueueManager {
    configs: QueueConfigCache,
    committer: Arc<GroupCommitter>,
    spool: Arc<dyn Spool>,
    logs: Arc<LocalLogger>,
    metrics: Arc<NepheleMetrics>,
    smtp: SmtpDeliverer,
    schedule: Schedule,
    queues: QueueRegistry,
    attempt_slots: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// How one attempt ended for the scheduler.
enum Next {
    /// Done with (delivered, bounced, expired, gone from the spool).
    Done,
    /// Try again after this long; `counted` when an attempt was made.
    Retry { delay: Duration, counted: bool },
}

impl QueueManager {
    /// A manager delivering with `policy`'s queue configurations, reading
    /// bodies from `spool`, removing finished messages through `committer`
    /// and logging to `logs`; MX records come from `dns` (else the
    /// system's resolver). Call [`QueueManager::start`] to run it.
    pub fn new(
        policy: PolicyPool,
        committer: Arc<GroupCommitter>,
        spool: Arc<dyn Spool>,
        logs: Arc<LocalLogger>,
        metrics: Arc<NepheleMetrics>,
        dns: Option<&crate::smtp::mx::ResolverParams>,
    ) -> anyhow::Result<Self> {
        Ok(QueueManager {
            smtp: SmtpDeliverer::new(policy.clone(), dns, metrics.clone())?,
            configs: QueueConfigCache::new(policy),
            committer,
            spool,
            logs,
            queues: QueueRegistry::new(metrics.clone()),
            metrics,
            schedule: Schedule::default(),
            attempt_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_ATTEMPTS)),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Start taking due messages to attempts (on the current runtime).
    pub fn start(self: &Arc<Self>) {
        let manager = self.clone();
        self.tasks.spawn(async move { manager.dispatch().await });
    }

    /// Take a spooled message into its queue, due now. Only its id and
    /// scheduling state are kept.
    pub fn insert(&self, message: &Message, key: QueueKey) {
        let key = self.queues.enter(key);
        self.schedule_at(Instant::now(), queued(message, key));
    }

    /// Queue a message found in the spool at start from its meta record
    /// alone (its body is not read).
    pub fn requeue(&self, id: &str, meta: &[u8]) -> Result<(), message::SpoolDecodeError> {
        let message = Message::decode(id, meta, Vec::new())?;
        self.insert(&message, QueueKey::for_message(&message));
        Ok(())
    }

    /// Queue every message left in `spool` from its meta record (bodies are
    /// not read), within `timeout`; the number queued. A record that does
    /// not decode is logged and left in place.
    pub async fn requeue_all(
        self: &Arc<Self>,
        spool: Arc<dyn Spool>,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let manager = self.clone();
        let scanning = tokio::task::spawn_blocking(move || {
            let mut count = 0;
            spool.scan_meta(&mut |id, meta| {
                // Idempotency records share the spool (see inject::idempotency).
                if id.starts_with(crate::inject::idempotency::RECORD_PREFIX) {
                    return;
                }
                match manager.requeue(id, meta) {
                    Ok(()) => count += 1,
                    Err(err) => tracing::error!("spool: {err}; left in place"),
                }
            })?;
            Ok::<_, spool::SpoolError>(count)
        });
        let count = tokio::time::timeout(timeout, scanning)
            .await
            .map_err(|_| anyhow::anyhow!("loading the spool timed out"))??
            .map_err(|err| anyhow::anyhow!("loading the spool: {err}"))?;
        Ok(count)
    }

    /// Messages queued (waiting or being attempted).
    pub fn len(&self) -> usize {
        self.queues.messages()
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn schedule_at(&self, at: Instant, item: Queued) {
        self.schedule.push(at, item);
    }

    /// Take each message as it falls due to an attempt, at most
    /// [`MAX_CONCURRENT_ATTEMPTS`] at once.
    async fn dispatch(self: Arc<Self>) {
        while let Some(item) = self.schedule.next_due(&self.shutdown).await {
            self.metrics.ready.inc();
            let slot = tokio::select! {
                slot = self.attempt_slots.clone().acquire_owned() => slot,
                () = self.shutdown.cancelled() => {
                    self.metrics.ready.dec();
                    break;
                }
            };
            let Ok(slot) = slot else { break };
            let manager = self.clone();
            let span = tracing::info_span!("message", id = %item.id, queue = %item.key.name);
            self.tasks.spawn(
                async move {
                    manager.attempt(item).await;
                    manager.metrics.ready.dec();
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }

    /// One attempt of `item`, then its next step.
    async fn attempt(&self, mut item: Queued) {
        match self.try_once(&item).await {
            Next::Done => self.queues.leave(&item.key),
            Next::Retry { delay, counted } => {
                if counted {
                    item.attempts += 1;
                }
                self.schedule_at(Instant::now() + delay, item);
            }
        }
    }

    /// Read the body, ask for the queue's configuration, deliver, log.
    async fn try_once(&self, item: &Queued) -> Next {
        let config = match self.configs.get(&item.key.config_args()).await {
            Ok(config) => config,
            Err(text) => return self.config_failed(item, &text).await,
        };
        let Some(message) = self.load(item).await else {
            return Next::Retry {
                delay: SPOOL_READ_RETRY,
                counted: false,
            };
        };
        let Some(message) = message else {
            return Next::Done;
        };
        // An age too large to add means "never".
        let expires = item.created.checked_add(config.max_age);
        if expires.is_some_and(|expires| SystemTime::now() >= expires) {
            self.expire(&message, item, "max_age reached");
            return Next::Done;
        }
        let Some(delay) = self.deliver(&message, item, &config).await else {
            return Next::Done;
        };
        let next = SystemTime::now().checked_add(delay);
        if let (Some(next), Some(expires)) = (next, expires) {
            if next >= expires {
                self.expire(&message, item, "the next attempt would be past max_age");
                return Next::Done;
            }
        }
        Next::Retry {
            delay,
            counted: true,
        }
    }

    /// The message with its body, read from the spool; `Some(None)` when it
    /// is no longer there, `None` when the spool could not be read.
    async fn load(&self, item: &Queued) -> Option<Option<ResidentMessage>> {
        let spool = self.spool.clone();
        let id = item.id.to_string();
        let entry = match tokio::task::spawn_blocking(move || spool.load(&id)).await {
            Ok(Ok(entry)) => entry,
            Ok(Err(err)) => {
                warn!("reading the message from the spool: {err}; trying again in {SPOOL_READ_RETRY:?}");
                return None;
            }
            Err(err) => {
                warn!("spool read task failed: {err}");
                return None;
            }
        };
        let Some(entry) = entry else {
            warn!("the message is no longer in the spool; dropped from its queue");
            return Some(None);
        };
        match Message::decode(&entry.id, &entry.meta, entry.data) {
            Ok(message) => Some(Some(ResidentMessage::new(message, &self.metrics))),
            Err(err) => {
                warn!("spool: {err}; left in place, not retried until restart");
                Some(None)
            }
        }
    }

    async fn config_failed(&self, item: &Queued, text: &str) -> Next {
        warn!("get_queue_config failed: {text}");
        if let Some(Some(message)) = self.load(item).await {
            let response =
                Response::new(451, (4, 3, 0), format!("get_queue_config failed: {text}"));
            self.record(
                RecordType::TransientFailure,
                &message,
                item,
                response,
                Via::default(),
            );
        }
        self.metrics
            .transfail
            .get_or_create(&ServiceLabel { service: "none" })
            .inc();
        Next::Retry {
            delay: CONFIG_ERROR_RETRY,
            counted: false,
        }
    }

    fn record(
        &self,
        kind: RecordType,
        message: &Message,
        item: &Queued,
        response: Response,
        via: Via,
    ) {
        self.logs.log(
            LogRecord::new(kind, message, &item.key.name, response, item.attempts)
                .via(via.peer_address, via.egress_source),
        );
    }

    /// Done with a message: forget it in the spool.
    fn finish(&self, message: &Message) {
        self.committer.remove(message.id().to_string());
    }

    /// One delivery; the wait before the next one, or `None` when the
    /// message is done with (delivered or bounced).
    async fn deliver(
        &self,
        message: &Message,
        item: &Queued,
        config: &QueueConfig,
    ) -> Option<Duration> {
        let (outcome, via) = delivery::attempt(config, &item.key.domain, message, &self.smtp).await;
        let attempts = item.attempts + 1;
        let service = ServiceLabel {
            service: match config.protocol {
                Some(DeliveryProtocol::MaildirPath(_)) => "maildir",
                _ => "smtp",
            },
        };
        let counted = Queued {
            attempts,
            ..item.clone()
        };
        match outcome {
            Outcome::Delivered(response) => {
                info!(attempts, "delivered");
                self.metrics.delivered.get_or_create(&service).inc();
                self.record(RecordType::Delivery, message, &counted, response, via);
                self.finish(message);
                None
            }
            Outcome::Permanent(response) => {
                info!(attempts, response = %response.content, "bounced");
                self.metrics.fail.get_or_create(&service).inc();
                self.record(RecordType::Bounce, message, &counted, response, via);
                self.finish(message);
                None
            }
            Outcome::Transient(response) => {
                debug!(attempts, response = %response.content, "attempt failed");
                self.metrics.transfail.get_or_create(&service).inc();
                self.record(
                    RecordType::TransientFailure,
                    message,
                    &counted,
                    response,
                    via,
                );
                Some(config.delay_after(attempts))
            }
        }
    }

    fn expire(&self, message: &Message, item: &Queued, why: &str) {
        info!(attempts = item.attempts, "expired: {why}");
        let response = Response::new(551, (5, 4, 7), format!("expired: {why}"));
        self.metrics.expired.inc();
        self.record(
            RecordType::Expiration,
            message,
            item,
            response,
            Via::default(),
        );
        self.finish(message);
    }
}

fn queued(message: &Message, key: Arc<QueueKey>) -> Queued {
    Queued {
        id: message.id().as_str().into(),
        key,
        created: message.created(),
        attempts: 0,
    }
}

/// A message whose body was read for an attempt, counted in
/// `message_data_resident_count` until dropped.
struct ResidentMessage {
    message: Message,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl ResidentMessage {
    fn new(message: Message, metrics: &NepheleMetrics) -> Self {
        metrics.data_resident.inc();
        ResidentMessage {
            message,
            gauge: metrics.data_resident.clone(),
        }
    }
}

impl std::ops::Deref for ResidentMessage {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

impl Drop for ResidentMessage {
    fn drop(&mut self) {
        self.gauge.dec();
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
