//! Prometheus metrics of the proxy, named as KumoMTA's `proxy-server` names
//! them, each labelled by listener address.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// The label every proxy metric carries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// The listener's bound `ip:port`.
    pub listener: String,
}

type CounterFamily = Family<ListenerLabel, Counter>;
type HistogramFamily = Family<ListenerLabel, Histogram, fn() -> Histogram>;

/// Name, type and help of one metric, for `--dump-metric-metadata`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricMetadata {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub help: &'static str,
}

macro_rules! proxy_metrics {
    ($( $field:ident : $ty:ty = $kind:literal, $name:literal, $help:literal; )*) => {
        /// Every metric family of the proxy, registered in one registry.
        #[derive(Clone)]
        pub struct ProxyMetrics {
            $( $field: $ty, )*
        }

        /// Cloned handles of one listener's metrics, so the hot path never
        /// looks a label up.
        #[derive(Clone)]
        pub struct ListenerMetrics {
            $( pub $field: <$ty as FamilyMember>::Metric, )*
        }

        impl ProxyMetrics {
            /// Create the families and register them in `registry`.
            pub fn register(registry: &mut Registry) -> Self {
                let metrics = ProxyMetrics { $( $field: <$ty as FamilyMember>::new_family(), )* };
                $( registry.register($name, $help, metrics.$field.clone()); )*
                metrics
            }

            /// The handles for `listener`.
            pub fn for_listener(&self, listener: &str) -> ListenerMetrics {
                let label = ListenerLabel { listener: listener.to_owned() };
                ListenerMetrics { $( $field: self.$field.get_or_create(&label).clone(), )* }
            }

            /// What `--dump-metric-metadata` prints.
            pub fn metadata() -> Vec<MetricMetadata> {
                vec![ $( MetricMetadata {
                    name: <$ty as FamilyMember>::exposed_name($name),
                    kind: $kind,
                    help: $help,
                }, )* ]
            }
        }
    };
}

/// How a family type is built and what its members are.
pub trait FamilyMember {
    type Metric: Clone;
    fn new_family() -> Self;
    /// The name as exposed (counters get `_total` appended on exposition).
    fn exposed_name(name: &str) -> String;
}

impl FamilyMember for CounterFamily {
    type Metric = Counter;
    fn new_family() -> Self {
        Family::default()
    }
    fn exposed_name(name: &str) -> String {
        format!("{name}_total")
    }
}

impl FamilyMember for Family<ListenerLabel, Gauge> {
    type Metric = Gauge;
    fn new_family() -> Self {
        Family::default()
    }
    fn exposed_name(name: &str) -> String {
        name.to_owned()
    }
}

impl FamilyMember for HistogramFamily {
    type Metric = Histogram;
    fn new_family() -> Self {
        Family::new_with_constructor(auth_latency_histogram)
    }
    fn exposed_name(name: &str) -> String {
        name.to_owned()
    }
}

fn auth_latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

proxy_metrics! {
    connections_accepted: CounterFamily = "counter", "proxy_connections_accepted",
        "connections accepted by a proxy listener";
    connections_failed: CounterFamily = "counter", "proxy_connections_failed",
        "sessions that ended before relaying because of an error, refusal or failed login";
    connections_completed: CounterFamily = "counter", "proxy_connections_completed",
        "sessions that relayed and ended normally";
    connections_rejected: CounterFamily = "counter", "proxy_connections_rejected",
        "connections closed at once because the listener was at max_connections";
    active_connections: Family<ListenerLabel, Gauge> = "gauge", "proxy_active_connections",
        "sessions open now";
    bytes_client_to_dest: CounterFamily = "counter", "proxy_bytes_client_to_dest",
        "bytes relayed from clients to destinations";
    bytes_dest_to_client: CounterFamily = "counter", "proxy_bytes_dest_to_client",
        "bytes relayed from destinations to clients";
    outbound_connections: CounterFamily = "counter", "proxy_outbound_connections",
        "outbound connections established to destinations";
    tls_handshake_failures: CounterFamily = "counter", "proxy_tls_handshake_failures",
        "TLS handshakes with clients that failed or timed out";
    auth_success: CounterFamily = "counter", "proxy_auth_success",
        "RFC 1929 logins accepted";
    auth_failure: CounterFamily = "counter", "proxy_auth_failure",
        "RFC 1929 logins refused (wrong credentials, policy errors, blocked clients)";
    auth_blocked: CounterFamily = "counter", "proxy_auth_blocked",
        "RFC 1929 logins refused without calling the policy because the client IP is blocked";
    idle_timeouts: CounterFamily = "counter", "proxy_idle_timeouts",
        "relayed sessions closed after idle_timeout";
    destinations_refused: CounterFamily = "counter", "proxy_destinations_refused",
        "resolved CONNECT destination addresses refused (prohibited_destinations or the ACL)";
    auth_callback_seconds: HistogramFamily = "histogram", "proxy_auth_callback_latency_seconds",
        "time spent in proxy_server_auth_rfc1929";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_total_suffix() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let listener = metrics.for_listener("127.0.0.1:1080");
        listener.connections_accepted.inc();
        listener.active_connections.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"proxy_connections_accepted_total{listener="127.0.0.1:1080"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"proxy_active_connections{listener="127.0.0.1:1080"} 1"#));
        let names: Vec<_> = ProxyMetrics::metadata()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(names
            .iter()
            .any(|n| n == "proxy_bytes_client_to_dest_total"));
        assert!(names.iter().any(|n| n == "proxy_active_connections"));
    }
}
