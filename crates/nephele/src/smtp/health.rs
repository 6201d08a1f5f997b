//! `suspend_when_proxy_unhealthy`: egress sources whose proxy was found
//! unreachable (or refused BIND) are skipped by pool selection for the
//! rule's `duration`, so other sources of the pool take their traffic.
//! Process-local, keyed by source name; times are passed in so the rule is
//! a pure function of the failures it was told about.

use crate::metrics::{NepheleMetrics, SourceKindLabel, SourceReasonLabel};
use policy::deserialize_duration;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `suspend_when_proxy_unhealthy = { trigger = ..., duration = '10m' }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendRule {
    /// When the rule fires.
    #[serde(default)]
    pub trigger: Trigger,
    /// How long the source is skipped once it fires.
    #[serde(deserialize_with = "deserialize_duration")]
    pub duration: Duration,
}

/// `'Immediate'` or `{ Threshold = 'N/period' }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub enum Trigger {
    /// The first matching failure fires the rule.
    #[default]
    Immediate,
    /// `N` matching failures within a rolling `period` fire the rule.
    Threshold(String),
}

impl SuspendRule {
    /// Check the threshold's syntax; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        self.threshold().map(|_| ())
    }

    /// `(count, period)` of the trigger; `Immediate` is one in any period.
    fn threshold(&self) -> Result<(u32, Duration), String> {
        match &self.trigger {
            Trigger::Immediate => Ok((1, Duration::ZERO)),
            Trigger::Threshold(text) => {
                let (count, period) = policy::parse_rate(text).map_err(|why| {
                    format!("suspend_when_proxy_unhealthy.trigger.Threshold {text:?}: {why}")
                })?;
                if count == 0 {
                    return Err(format!(
                        "suspend_when_proxy_unhealthy.trigger.Threshold {text:?}: the count must be at least 1"
                    ));
                }
                Ok((count, period))
            }
        }
    }
}

/// The `reason`/`kind` label of this rule's metrics (KumoMTA's).
const PROXY_UNHEALTHY: &str = "ProxyUnhealthy";

/// How often expired suspensions are cleared (gauge back to 0, `INFO`).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct SourceState {
    /// Recent matching failures (within the threshold's period).
    failures: VecDeque<Instant>,
    /// Skipped until then.
    suspended_until: Option<Instant>,
}

/// The suspended sources of this process, and their metrics.
pub struct SourceHealth {
    sources: parking_lot::Mutex<HashMap<String, SourceState>>,
    metrics: Arc<NepheleMetrics>,
}

impl SourceHealth {
    /// No source suspended; counts go to `metrics`.
    pub fn new(metrics: Arc<NepheleMetrics>) -> Self {
        SourceHealth {
            sources: Default::default(),
            metrics,
        }
    }

    /// [`SourceHealth::new`], with a background task clearing expired
    /// suspensions every second until the value is dropped.
    pub fn start(metrics: Arc<NepheleMetrics>) -> Arc<Self> {
        let health = Arc::new(SourceHealth::new(metrics));
        let weak = Arc::downgrade(&health);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_INTERVAL).await;
                let Some(health) = weak.upgrade() else { return };
                health.sweep(Instant::now());
            }
        });
        health
    }

    /// Record an unhealthy-proxy failure of `source`, and apply its `rule`
    /// if it has one; `true` when that suspended the source.
    pub fn proxy_failed(&self, source: &str, rule: Option<&SuspendRule>, now: Instant) -> bool {
        let kind = SourceKindLabel {
            source: source.to_owned(),
            kind: PROXY_UNHEALTHY,
        };
        self.metrics
            .source_connection_failures
            .get_or_create(&kind)
            .inc();
        let Some((rule, Ok((count, period)))) = rule.map(|rule| (rule, rule.threshold())) else {
            return false;
        };
        let mut sources = self.sources.lock();
        let state = sources.entry(source.to_owned()).or_default();
        if state.suspended_until.is_some_and(|until| until > now) {
            return false;
        }
        state.failures.push_back(now);
        while let Some(&first) = state.failures.front() {
            let old = now.saturating_duration_since(first) > period;
            if old || state.failures.len() > count as usize {
                state.failures.pop_front();
            } else {
                break;
            }
        }
        if state.failures.len() < count as usize {
            return false;
        }
        state.failures.clear();
        state.suspended_until = Some(now.checked_add(rule.duration).unwrap_or(now));
        let label = reason_label(source);
        self.metrics.source_suspended.get_or_create(&label).set(1);
        self.metrics.source_suspensions.get_or_create(&label).inc();
        tracing::warn!(
            source,
            duration = ?rule.duration,
            "egress source suspended: proxy unhealthy (suspend_when_proxy_unhealthy)"
        );
        true
    }

    /// How long `source` stays suspended, `None` when it is usable.
    pub fn suspended_for(&self, source: &str, now: Instant) -> Option<Duration> {
        let mut sources = self.sources.lock();
        let state = sources.get_mut(source)?;
        let until = state.suspended_until?;
        if until > now {
            return Some(until - now);
        }
        self.clear(source, state);
        None
    }

    /// Clear every suspension that ended by `now`.
    pub fn sweep(&self, now: Instant) {
        let mut sources = self.sources.lock();
        for (source, state) in sources.iter_mut() {
            if state.suspended_until.is_some_and(|until| until <= now) {
                self.clear(source, state);
            }
        }
        sources.retain(|_, state| state.suspended_until.is_some() || !state.failures.is_empty());
    }

    fn clear(&self, source: &str, state: &mut SourceState) {
        state.suspended_until = None;
        let label = reason_label(source);
        self.metrics.source_suspended.get_or_create(&label).set(0);
        tracing::info!(source, "egress source suspension (proxy unhealthy) ended");
    }
}

fn reason_label(source: &str) -> SourceReasonLabel {
    SourceReasonLabel {
        source: source.to_owned(),
        reason: PROXY_UNHEALTHY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> (SourceHealth, Arc<NepheleMetrics>) {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(NepheleMetrics::register(&mut registry));
        (SourceHealth::new(metrics.clone()), metrics)
    }

    fn rule(json: &str) -> SuspendRule {
        let rule: SuspendRule = serde_json::from_str(json).unwrap();
        rule.check().unwrap();
        rule
    }

    /// Connection failures of `source` counted as an unhealthy proxy.
    fn unhealthy_failures(metrics: &NepheleMetrics, source: &str) -> u64 {
        let kind = SourceKindLabel {
            source: source.into(),
            kind: PROXY_UNHEALTHY,
        };
        metrics
            .source_connection_failures
            .get_or_create(&kind)
            .get()
    }

    #[test]
    fn immediate_suspends_for_the_duration_then_clears() {
        let (health, metrics) = health();
        let rule = rule(r#"{"duration":"10m"}"#);
        let suspended = || {
            metrics
                .source_suspended
                .get_or_create(&reason_label("a"))
                .get()
        };
        let t0 = Instant::now();
        assert!(health.suspended_for("a", t0).is_none());
        assert!(health.proxy_failed("a", Some(&rule), t0));
        assert_eq!(
            health.suspended_for("a", t0),
            Some(Duration::from_secs(600))
        );
        assert_eq!(suspended(), 1);
        assert!(health.suspended_for("b", t0).is_none());
        let later = t0 + Duration::from_secs(599);
        assert!(health.suspended_for("a", later).is_some());
        // A failure reported while suspended does not extend it, nor count
        // as another suspension; it is still a classified failure.
        assert!(!health.proxy_failed("a", Some(&rule), later));
        let label = reason_label("a");
        assert_eq!(metrics.source_suspensions.get_or_create(&label).get(), 1);
        assert_eq!(unhealthy_failures(&metrics, "a"), 2);
        health.sweep(t0 + Duration::from_secs(600));
        assert_eq!(suspended(), 0);
        assert!(health
            .suspended_for("a", t0 + Duration::from_secs(600))
            .is_none());
    }

    #[test]
    fn without_a_rule_failures_are_only_counted() {
        let (health, metrics) = health();
        let t0 = Instant::now();
        assert!(!health.proxy_failed("a", None, t0));
        assert!(health.suspended_for("a", t0).is_none());
        assert_eq!(unhealthy_failures(&metrics, "a"), 1);
    }

    #[test]
    fn threshold_counts_failures_in_a_rolling_window() {
        let (health, _) = health();
        let rule = rule(r#"{"trigger":{"Threshold":"3/5m"},"duration":"1h"}"#);
        let rule = Some(&rule);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert!(!health.proxy_failed("a", rule, at(0)));
        assert!(!health.proxy_failed("a", rule, at(100)));
        // The first failure left the window: still two.
        assert!(!health.proxy_failed("a", rule, at(301)));
        assert!(health.suspended_for("a", at(301)).is_none());
        assert!(health.proxy_failed("a", rule, at(302)));
        assert_eq!(
            health.suspended_for("a", at(302)),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn bad_rules_name_the_key() {
        let bad = serde_json::from_str::<SuspendRule>(
            r#"{"trigger":{"Threshold":"3 per m"},"duration":"1m"}"#,
        )
        .unwrap();
        let err = bad.check().unwrap_err();
        assert!(
            err.contains("suspend_when_proxy_unhealthy.trigger.Threshold"),
            "{err}"
        );
        let err = serde_json::from_str::<SuspendRule>(r#"{"trigger":"Immediate"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duration"), "{err}");
        let err = serde_json::from_str::<SuspendRule>(r#"{"duration":"1m","durations":"1m"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("durations"), "{err}");
    }
}
