//! nephele's Prometheus metrics, served on `/metrics` and `/metrics.json`.
//! KumoMTA's names where KumoMTA has the same measure (`kumod`'s
//! `total_messages_received`, `scheduled_count`, `message_save_latency`,
//! ...), `nephele_*` for the rest. Every label has a bounded set of values:
//! `queue` is capped at [`MAX_QUEUE_LABELS`] names at once.

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::HashSet;

/// Queues with their own `scheduled_count` series at once; messages of any
/// further queue are counted under `queue="_other"` until a series frees up
/// (a queue's series is dropped when it empties).
pub const MAX_QUEUE_LABELS: usize = 1000;

/// The `queue` value shared by queues past [`MAX_QUEUE_LABELS`].
pub const OTHER_QUEUE: &str = "_other";

/// KumoMTA's bucket bounds for `message_save_latency`, in seconds.
const SAVE_LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A counter exposed under its exact name, without the `_total` suffix
/// OpenMetrics gives counters, because KumoMTA's counters
/// (`total_messages_received`, ...) are scraped under those names. Its
/// type is therefore `unknown`.
#[derive(Debug, Clone, Default)]
pub struct KumoCounter(Counter);

impl KumoCounter {
    /// Add one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Add `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// The count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for KumoCounter {}

impl EncodeMetric for KumoCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.get())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

/// A value read when the metrics are scraped.
pub struct Sampled<F>(pub F);

impl<F> std::fmt::Debug for Sampled<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampled")
    }
}

impl<F: Fn() -> i64 + Send + Sync + 'static> EncodeMetric for Sampled<F> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.0)())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// The `service` label: what delivered (`maildir`, `smtp`), or what
/// received (`http`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// `http`, `maildir`, `smtp`, or `none` (no attempt was made).
    pub service: &'static str,
}

/// The `outcome` of an injection request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// See [`InjectionOutcome`].
    pub outcome: &'static str,
}

/// The `queue` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// A queue name, or [`OTHER_QUEUE`].
    pub queue: String,
}

/// `source` and `reason` of the egress source health gauges (KumoMTA's).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceReasonLabel {
    /// The egress source's name.
    pub source: String,
    /// The rule: `ProxyUnhealthy`.
    pub reason: &'static str,
}

/// `source` and `kind` of `egress_source_connection_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceKindLabel {
    /// The egress source's name.
    pub source: String,
    /// The failure class: `ProxyUnhealthy`.
    pub kind: &'static str,
}

/// How an injection request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectionOutcome {
    /// Answered `200` (some recipients may have failed).
    Accepted,
    /// `400` or `422`: not JSON, bad field, control characters.
    Invalid,
    /// `413`: past a limit.
    TooLarge,
    /// `408`: past `render_timeout`.
    Timeout,
    /// `503`: no spool, or the spool is failing.
    Unavailable,
    /// `500`: an internal failure (a render thread that died, a failed
    /// `http_server_get_injection_limits`).
    Failed,
    /// `429`: past the identity's `max_message_rate`.
    RateLimited,
    /// A repeat of an `Idempotency-Key` answered from its record.
    Replayed,
    /// `409`: the same `Idempotency-Key` is being processed now.
    Conflict,
}

impl InjectionOutcome {
    fn label(self) -> &'static str {
        match self {
            InjectionOutcome::Accepted => "accepted",
            InjectionOutcome::Invalid => "invalid",
            InjectionOutcome::TooLarge => "too_large",
            InjectionOutcome::Timeout => "timeout",
            InjectionOutcome::Unavailable => "unavailable",
            InjectionOutcome::Failed => "failed",
            InjectionOutcome::RateLimited => "rate_limited",
            InjectionOutcome::Replayed => "replayed",
            InjectionOutcome::Conflict => "conflict",
        }
    }
}

/// Name, type and help of one metric, for `--dump-metric-metadata`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricMetadata {
    /// The name as scraped (`_total` included where the exposition adds it).
    pub name: &'static str,
    /// `counter`, `gauge`, `histogram` or `unknown`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The help text.
    pub help: &'static str,
}

macro_rules! nephele_metrics {
    ($( $field:ident : $ty:ty = $kind:literal, $name:literal, $exposed:literal, $help:literal; )*) => {
        /// Every metric the daemon updates itself (the spool's health and
        /// the log drop counts are read when scraped: see
        /// [`NepheleMetrics::register_sampled`]).
        pub struct NepheleMetrics {
            $( #[doc = $help] pub $field: $ty, )*
            queues_labelled: Mutex<HashSet<String>>,
        }

        impl NepheleMetrics {
            /// Create every metric and register it in `registry`.
            pub fn register(registry: &mut Registry) -> Self {
                let metrics = NepheleMetrics {
                    $( $field: new_metric(), )*
                    queues_labelled: Mutex::new(HashSet::new()),
                };
                $( registry.register($name, $help, metrics.$field.clone()); )*
                metrics
            }

            /// What `--dump-metric-metadata` prints.
            pub fn metadata() -> Vec<MetricMetadata> {
                let mut all = vec![ $( MetricMetadata { name: $exposed, kind: $kind, help: $help }, )* ];
                all.extend(SAMPLED);
                all
            }
        }
    };
}

trait NewMetric {
    fn new_metric() -> Self;
}
impl<T: Default> NewMetric for T {
    fn new_metric() -> Self {
        T::default()
    }
}
fn new_metric<T: NewMetric>() -> T {
    T::new_metric()
}

/// The histogram type of `message_save_latency`.
#[derive(Clone, Debug)]
pub struct SaveLatency(pub Histogram);

impl Default for SaveLatency {
    fn default() -> Self {
        SaveLatency(Histogram::new(SAVE_LATENCY_BUCKETS))
    }
}

impl TypedMetric for SaveLatency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for SaveLatency {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

nephele_metrics! {
    received: Family<ServiceLabel, KumoCounter> = "unknown", "total_messages_received",
        "total_messages_received", "total number of messages ever received (spooled, or discarded by queue null)";
    delivered: Family<ServiceLabel, KumoCounter> = "unknown", "total_messages_delivered",
        "total_messages_delivered", "total number of messages ever delivered";
    transfail: Family<ServiceLabel, KumoCounter> = "unknown", "total_messages_transfail",
        "total_messages_transfail", "total number of message delivery attempts that transiently failed";
    fail: Family<ServiceLabel, KumoCounter> = "unknown", "total_messages_fail",
        "total_messages_fail", "total number of message delivery attempts that permanently failed (bounces)";
    expired: Counter = "counter", "nephele_messages_expired",
        "nephele_messages_expired_total", "messages given up after max_age";
    spooled: Counter = "counter", "nephele_messages_spooled",
        "nephele_messages_spooled_total", "messages committed to the spool";
    requests: Family<OutcomeLabel, Counter> = "counter", "nephele_injection_requests",
        "nephele_injection_requests_total", "injection requests by outcome: accepted, invalid, too_large, timeout, unavailable, failed";
    recipients_rejected: Counter = "counter", "nephele_injection_recipients_rejected",
        "nephele_injection_recipients_rejected_total", "recipients of accepted requests that failed (template error, http_message_generated refused)";
    scheduled: Family<QueueLabel, Gauge> = "gauge", "scheduled_count",
        "scheduled_count", "number of messages in the scheduled queue (waiting or being attempted)";
    scheduled_total: Gauge = "gauge", "scheduled_count_total",
        "scheduled_count_total", "total number of messages across all scheduled queues";
    queue_count: Gauge = "gauge", "scheduled_queue_count",
        "scheduled_queue_count", "how many scheduled queues are tracked";
    ready: Gauge = "gauge", "ready_count",
        "ready_count", "number of messages due for an attempt (waiting for an attempt slot or being attempted)";
    data_resident: Gauge = "gauge", "message_data_resident_count",
        "message_data_resident_count", "queued messages whose body is in memory (only during an attempt)";
    source_suspended: Family<SourceReasonLabel, Gauge> = "gauge", "egress_source_health_suspended",
        "egress_source_health_suspended", "1 while an egress source is suspended by its suspend_when_proxy_unhealthy rule, 0 otherwise";
    source_suspensions: Family<SourceReasonLabel, Counter> = "counter", "egress_source_health_suspensions",
        "egress_source_health_suspensions_total", "times an egress source entered the suspended state";
    source_connection_failures: Family<SourceKindLabel, Counter> = "counter", "egress_source_connection_failures",
        "egress_source_connection_failures_total", "connection failures of a source-health class (ProxyUnhealthy: proxy unreachable or BIND refused), with or without a suspend rule";
    save_latency: SaveLatency = "histogram", "message_save_latency",
        "message_save_latency", "How many seconds it takes to save a message to spool (one request's messages, one group commit)";
}

/// Metrics read when scraped, registered by [`NepheleMetrics::register_sampled`].
const SAMPLED: [MetricMetadata; 4] = [
    MetricMetadata {
        name: "nephele_spool_healthy",
        kind: "gauge",
        help: "1 while the spool accepts writes, 0 after a failed commit until a write works again",
    },
    MetricMetadata {
        name: "nephele_spool_commit_failures_total",
        kind: "counter",
        help: "spool commits that failed",
    },
    MetricMetadata {
        name: "nephele_local_log_dropped_total",
        kind: "counter",
        help: "local log records dropped because the writer's queue was full",
    },
    MetricMetadata {
        name: "nephele_accounting_log_dropped_total",
        kind: "counter",
        help: "accounting log records dropped because the writer's queue was full",
    },
];

impl NepheleMetrics {
    /// Count one injection request's outcome.
    pub fn request(&self, outcome: InjectionOutcome) {
        self.requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Register what is read at scrape time: the spool's health and commit
    /// failures, and the log writers' drop counters.
    pub fn register_sampled(
        registry: &mut Registry,
        spool: Option<std::sync::Arc<spool::GroupCommitter>>,
        local_log_dropped: Option<segment_log::DropCounter>,
        accounting_dropped: Option<segment_log::DropCounter>,
    ) {
        let [healthy, failures, local, accounting] = SAMPLED;
        let health_spool = spool.clone();
        registry.register(
            healthy.name,
            healthy.help,
            Sampled(move || i64::from(health_spool.as_ref().is_some_and(|s| s.is_healthy()))),
        );
        registry.register(
            failures.name.trim_end_matches("_total"),
            failures.help,
            Sampled(move || {
                spool.as_ref().map_or(0, |s| {
                    s.stats()
                        .failures
                        .load(std::sync::atomic::Ordering::Relaxed) as i64
                })
            })
            .as_counter(),
        );
        let counter =
            |meta: MetricMetadata, counter: Option<Counter>| (meta, counter.unwrap_or_default());
        for (meta, counter) in [
            counter(local, local_log_dropped),
            counter(accounting, accounting_dropped),
        ] {
            registry.register(meta.name.trim_end_matches("_total"), meta.help, counter);
        }
    }

    /// The `queue` label for `name`: its own while fewer than
    /// [`MAX_QUEUE_LABELS`] queues have one, else [`OTHER_QUEUE`]. Pair with
    /// [`NepheleMetrics::release_queue_label`] when the queue empties.
    pub fn queue_label(&self, name: &str) -> QueueLabel {
        let mut labelled = self.queues_labelled.lock();
        if labelled.contains(name) || labelled.len() < MAX_QUEUE_LABELS {
            labelled.insert(name.to_owned());
            return QueueLabel {
                queue: name.to_owned(),
            };
        }
        QueueLabel {
            queue: OTHER_QUEUE.to_owned(),
        }
    }

    /// Forget an empty queue's series (its label may be reused).
    pub fn release_queue_label(&self, label: &QueueLabel) {
        if label.queue == OTHER_QUEUE {
            return;
        }
        self.queues_labelled.lock().remove(&label.queue);
        self.scheduled.remove(label);
    }
}

/// A [`Sampled`] value exposed as a counter.
pub struct SampledCounter<F>(Sampled<F>);

impl<F> std::fmt::Debug for SampledCounter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampledCounter")
    }
}

impl<F> Sampled<F> {
    /// The same value, typed as a counter.
    pub fn as_counter(self) -> SampledCounter<F> {
        SampledCounter(self)
    }
}

impl<F: Fn() -> i64 + Send + Sync + 'static> EncodeMetric for SampledCounter<F> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
            &((self.0 .0)().max(0) as u64),
            None,
        )
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn kumo_names_are_exposed_as_kumo_scrapes_them() {
        let mut registry = Registry::default();
        let metrics = NepheleMetrics::register(&mut registry);
        metrics
            .received
            .get_or_create(&ServiceLabel { service: "http" })
            .inc();
        metrics.spooled.inc();
        metrics.save_latency.0.observe(0.003);
        metrics.request(InjectionOutcome::TooLarge);
        NepheleMetrics::register_sampled(&mut registry, None, Some(Counter::default()), None);
        let text = exposition(&registry);
        for needle in [
            "total_messages_received{service=\"http\"} 1\n",
            "nephele_messages_spooled_total 1\n",
            "message_save_latency_bucket{le=\"0.005\"} 1\n",
            "nephele_injection_requests_total{outcome=\"too_large\"} 1\n",
            "nephele_spool_healthy 0\n",
            "nephele_spool_commit_failures_total 0\n",
            "nephele_local_log_dropped_total 0\n",
            "nephele_accounting_log_dropped_total 0\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
        // Every metric of the metadata is exposed under that name.
        for meta in NepheleMetrics::metadata() {
            assert!(
                text.contains(&format!("# HELP {} ", meta.name.trim_end_matches("_total")))
                    || text.contains(&format!("# HELP {} ", meta.name)),
                "{} not registered",
                meta.name
            );
        }
    }

    #[test]
    fn queue_labels_are_bounded_and_reused() {
        let mut registry = Registry::default();
        let metrics = NepheleMetrics::register(&mut registry);
        for i in 0..MAX_QUEUE_LABELS {
            assert_eq!(metrics.queue_label(&format!("q{i}")).queue, format!("q{i}"));
        }
        assert_eq!(metrics.queue_label("one-too-many").queue, OTHER_QUEUE);
        assert_eq!(metrics.queue_label("q3").queue, "q3");
        metrics.release_queue_label(&QueueLabel { queue: "q3".into() });
        assert_eq!(metrics.queue_label("now-free").queue, "now-free");
    }
}
