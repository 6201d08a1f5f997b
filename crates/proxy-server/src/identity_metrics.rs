//! Per-identity metrics with bounded cardinality: the first
//! [`MAX_IDENTITY_LABELS`] identities seen get a label value of their own,
//! every later one is counted under [`OTHER_IDENTITIES`], so a policy that
//! accepts any username cannot grow the registry without bound.

use crate::metrics::MetricMetadata;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;

/// Identities that get a label value of their own.
pub const MAX_IDENTITY_LABELS: usize = 1000;
/// The label value every identity past the cap is counted under.
pub const OTHER_IDENTITIES: &str = "(other)";

/// The label of the per-identity metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabel {
    /// The identity, or [`OTHER_IDENTITIES`].
    pub identity: String,
}

/// The label of refusals: identity and which limit refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// The identity, or [`OTHER_IDENTITIES`].
    pub identity: String,
    /// `max_sessions` or `max_connect_rate`.
    pub limit: String,
}

/// The per-identity families and the set of identities labelled so far.
pub struct IdentityMetrics {
    sessions_open: Family<IdentityLabel, Gauge>,
    refused: Family<RefusalLabel, Counter>,
    bytes_client_to_dest: Family<IdentityLabel, Counter>,
    bytes_dest_to_client: Family<IdentityLabel, Counter>,
    /// Counted when shared state (Redis) could not be used.
    pub shared_state_fallbacks: Counter,
    labelled: Mutex<HashSet<String>>,
}

/// One identity's handles, resolved once per tunnel.
#[derive(Clone)]
pub struct IdentityHandles {
    /// Tunnels open now.
    pub sessions_open: Gauge,
    /// Bytes from the identity's clients.
    pub bytes_client_to_dest: Counter,
    /// Bytes to the identity's clients.
    pub bytes_dest_to_client: Counter,
}

const METRICS: [(&str, &str, &str); 5] = [
    (
        "proxy_identity_sessions_open",
        "gauge",
        "tunnels open now, per identity",
    ),
    (
        "proxy_identity_sessions_refused",
        "counter",
        "CONNECTs refused by a per-identity limit (max_sessions, max_connect_rate)",
    ),
    (
        "proxy_identity_bytes_client_to_dest",
        "counter",
        "bytes relayed from an identity's clients",
    ),
    (
        "proxy_identity_bytes_dest_to_client",
        "counter",
        "bytes relayed to an identity's clients",
    ),
    (
        "proxy_shared_state_fallbacks",
        "counter",
        "shared-state (Redis) operations that failed and fell back to this proxy's own counts",
    ),
];

impl IdentityMetrics {
    /// Create the families and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = IdentityMetrics {
            sessions_open: Family::default(),
            refused: Family::default(),
            bytes_client_to_dest: Family::default(),
            bytes_dest_to_client: Family::default(),
            shared_state_fallbacks: Counter::default(),
            labelled: Mutex::new(HashSet::new()),
        };
        registry.register(METRICS[0].0, METRICS[0].2, metrics.sessions_open.clone());
        registry.register(METRICS[1].0, METRICS[1].2, metrics.refused.clone());
        registry.register(
            METRICS[2].0,
            METRICS[2].2,
            metrics.bytes_client_to_dest.clone(),
        );
        registry.register(
            METRICS[3].0,
            METRICS[3].2,
            metrics.bytes_dest_to_client.clone(),
        );
        registry.register(
            METRICS[4].0,
            METRICS[4].2,
            metrics.shared_state_fallbacks.clone(),
        );
        metrics
    }

    /// Name, type and help of each, for `--dump-metric-metadata`.
    pub fn metadata() -> Vec<MetricMetadata> {
        METRICS
            .iter()
            .map(|(name, kind, help)| MetricMetadata {
                name: if *kind == "counter" {
                    format!("{name}_total")
                } else {
                    (*name).to_owned()
                },
                kind,
                help,
            })
            .collect()
    }

    /// The label value for `identity`: itself while fewer than
    /// [`MAX_IDENTITY_LABELS`] identities are labelled, else
    /// [`OTHER_IDENTITIES`].
    pub fn label(&self, identity: &str) -> String {
        let mut labelled = self.labelled.lock();
        if labelled.contains(identity) {
            return identity.to_owned();
        }
        if labelled.len() < MAX_IDENTITY_LABELS {
            labelled.insert(identity.to_owned());
            return identity.to_owned();
        }
        OTHER_IDENTITIES.to_owned()
    }

    /// The handles of `identity`'s tunnels.
    pub fn handles(&self, identity: &str) -> IdentityHandles {
        let label = IdentityLabel {
            identity: self.label(identity),
        };
        IdentityHandles {
            sessions_open: self.sessions_open.get_or_create(&label).clone(),
            bytes_client_to_dest: self.bytes_client_to_dest.get_or_create(&label).clone(),
            bytes_dest_to_client: self.bytes_dest_to_client.get_or_create(&label).clone(),
        }
    }

    /// Count a CONNECT of `identity` refused by `limit`.
    pub fn refused(&self, identity: &str, limit: &str) {
        let label = RefusalLabel {
            identity: self.label(identity),
            limit: limit.to_owned(),
        };
        self.refused.get_or_create(&label).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_past_the_cap_share_one_label() {
        let mut registry = Registry::default();
        let metrics = IdentityMetrics::register(&mut registry);
        for n in 0..MAX_IDENTITY_LABELS + 5 {
            metrics.handles(&format!("user{n}")).sessions_open.inc();
        }
        metrics.refused("user0", "max_sessions");
        metrics.refused("late-comer", "max_connect_rate");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("proxy_identity_sessions_open{"))
            .count();
        assert_eq!(series, MAX_IDENTITY_LABELS + 1, "{series} series");
        assert!(text.contains(r#"proxy_identity_sessions_open{identity="(other)"} 5"#));
        assert!(text.contains(r#"proxy_identity_sessions_open{identity="user0"} 1"#));
        assert!(text.contains(
            r#"proxy_identity_sessions_refused_total{identity="(other)",limit="max_connect_rate"} 1"#
        ));
        let names: Vec<_> = IdentityMetrics::metadata()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains(&"proxy_shared_state_fallbacks_total".to_owned()));
    }
}
