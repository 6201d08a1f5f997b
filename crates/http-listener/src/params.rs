//! The parameters of `start_http_listener { ... }`.

use aaa::{IpOrCidr, IpSet};
use policy::{deserialize_duration, KeySource};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One HTTP listener, as the policy describes it. Unknown keys are an error
/// that names the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerParams {
    /// `ip:port` to bind; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,

    /// CN/SAN of the generated self-signed certificate (TLS only).
    #[serde(default = "default_hostname")]
    pub hostname: String,

    /// Serve HTTPS.
    #[serde(default)]
    pub use_tls: bool,

    /// PEM certificate chain (path or `{ key_data = ... }`); generated when
    /// absent.
    #[serde(default)]
    pub tls_certificate: Option<KeySource>,

    /// PEM private key (path or `{ key_data = ... }`); generated when absent.
    #[serde(default)]
    pub tls_private_key: Option<KeySource>,

    /// Peers in these IP/CIDR blocks get the group
    /// `kumomta:http-listener-trusted-ip` and are exempt from
    /// `auth_failure_limit`.
    #[serde(default = "default_trusted_hosts")]
    pub trusted_hosts: IpSet,

    /// Largest request body accepted, in bytes, after decompression; larger
    /// bodies get `413`.
    #[serde(default = "default_request_body_limit")]
    pub request_body_limit: usize,

    /// Per-client-IP limit on failed logins (`false` disables).
    #[serde(default)]
    pub auth_failure_limit: AuthFailureLimitSetting,

    /// Connections open at once; past it new connections are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,

    /// Bound on the TLS handshake and on receiving a request's headers
    /// (counted from the connection's start, or from the end of the previous
    /// response on a kept-alive connection): a client that stalls there is
    /// disconnected.
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub header_timeout: Duration,

    /// Bound on handling one request, body included: a client that stalls
    /// mid-body gets `408` and is disconnected.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub request_timeout: Duration,
}

/// `auth_failure_limit`: a table, or `false` to disable (`true` means the
/// defaults).
#[derive(Debug, Clone)]
pub enum AuthFailureLimitSetting {
    /// `false` (disabled) or `true` (the defaults).
    Enabled(bool),
    /// Explicit limits.
    Limit(AuthFailureLimit),
}

// By hand rather than `untagged`, so an unknown key inside the table is
// reported by name instead of as "did not match any variant".
impl<'de> Deserialize<'de> for AuthFailureLimitSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SettingVisitor;
        impl<'de> serde::de::Visitor<'de> for SettingVisitor {
            type Value = AuthFailureLimitSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("false, true or a table { max_failures, period, block_for }")
            }
            fn visit_bool<E: serde::de::Error>(self, enabled: bool) -> Result<Self::Value, E> {
                Ok(AuthFailureLimitSetting::Enabled(enabled))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<Self::Value, M::Error> {
                AuthFailureLimit::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(AuthFailureLimitSetting::Limit)
            }
        }
        deserializer.deserialize_any(SettingVisitor)
    }
}

impl Default for AuthFailureLimitSetting {
    fn default() -> Self {
        AuthFailureLimitSetting::Enabled(true)
    }
}

impl AuthFailureLimitSetting {
    /// Checks serde cannot express; `listener` names the listener in the error.
    pub fn validate(&self, listener: &str) -> anyhow::Result<()> {
        if let Some(limit) = self.limit() {
            if limit.period.is_zero() || limit.block_for.is_zero() {
                anyhow::bail!(
                    "{listener}: auth_failure_limit period and block_for must be greater than zero"
                );
            }
        }
        Ok(())
    }

    /// This setting applied to the process's `limiter`, or `None` when
    /// disabled.
    pub fn limiter(
        &self,
        limiter: &std::sync::Arc<aaa::FailureLimiter>,
    ) -> Option<aaa::ListenerFailureLimit> {
        self.limit().map(|limit| aaa::ListenerFailureLimit {
            limiter: limiter.clone(),
            thresholds: aaa::FailureThresholds {
                max_failures: limit.max_failures,
                period: limit.period,
                block_for: limit.block_for,
            },
        })
    }

    /// The limit in force, or `None` when disabled.
    pub fn limit(&self) -> Option<AuthFailureLimit> {
        match self {
            AuthFailureLimitSetting::Enabled(false) => None,
            AuthFailureLimitSetting::Enabled(true) => Some(AuthFailureLimit::default()),
            AuthFailureLimitSetting::Limit(limit) => Some(limit.clone()),
        }
    }
}

/// More than `max_failures` failed logins from one client IP within
/// `period` block that IP's credentialed requests for `block_for`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFailureLimit {
    /// Failures tolerated within `period`.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// The sliding window failures are counted in.
    #[serde(
        default = "default_failure_period",
        deserialize_with = "deserialize_duration"
    )]
    pub period: Duration,
    /// How long an IP stays blocked.
    #[serde(
        default = "default_block_for",
        deserialize_with = "deserialize_duration"
    )]
    pub block_for: Duration,
}

impl Default for AuthFailureLimit {
    fn default() -> Self {
        AuthFailureLimit {
            max_failures: default_max_failures(),
            period: default_failure_period(),
            block_for: default_block_for(),
        }
    }
}

impl Default for HttpListenerParams {
    fn default() -> Self {
        HttpListenerParams {
            listen: default_listen(),
            hostname: default_hostname(),
            use_tls: false,
            tls_certificate: None,
            tls_private_key: None,
            trusted_hosts: default_trusted_hosts(),
            request_body_limit: default_request_body_limit(),
            auth_failure_limit: AuthFailureLimitSetting::default(),
            max_connections: default_max_connections(),
            header_timeout: default_header_timeout(),
            request_timeout: default_request_timeout(),
        }
    }
}

impl HttpListenerParams {
    /// Checks that serde cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_connections == 0 {
            anyhow::bail!(
                "http listener {}: max_connections must be at least 1",
                self.listen
            );
        }
        if self.header_timeout.is_zero() || self.request_timeout.is_zero() {
            anyhow::bail!(
                "http listener {}: header_timeout and request_timeout must be greater than zero",
                self.listen
            );
        }
        if self.request_body_limit == 0 {
            anyhow::bail!(
                "http listener {}: request_body_limit must be at least 1",
                self.listen
            );
        }
        self.auth_failure_limit
            .validate(&format!("http listener {}", self.listen))
    }

    /// The TLS acceptor when `use_tls`: the given certificate and key, or
    /// a self-signed certificate for `hostname`. Errors name the files.
    pub fn tls_acceptor(&self) -> anyhow::Result<Option<tls::TlsAcceptor>> {
        tls::ListenerTlsKeys {
            use_tls: self.use_tls,
            hostname: &self.hostname,
            certificate: self.tls_certificate.as_ref(),
            private_key: self.tls_private_key.as_ref(),
        }
        .acceptor(&format!("http listener {}", self.listen))
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

/// The system hostname, or `localhost` when it cannot be read.
pub fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn default_trusted_hosts() -> IpSet {
    let loopback = |text: &str| text.parse::<IpOrCidr>().expect("loopback parses");
    IpSet(vec![loopback("127.0.0.1"), loopback("::1")])
}

fn default_request_body_limit() -> usize {
    2 * 1024 * 1024
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_failures() -> u32 {
    10
}
fn default_failure_period() -> Duration {
    Duration::from_secs(60)
}
fn default_block_for() -> Duration {
    Duration::from_secs(300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<HttpListenerParams, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_are_the_spec_table() {
        let params = parse("{}").unwrap();
        assert_eq!(params.listen.to_string(), "127.0.0.1:8000");
        assert!(!params.use_tls);
        assert!(params.trusted_hosts.contains("127.0.0.1".parse().unwrap()));
        assert!(params.trusted_hosts.contains("::1".parse().unwrap()));
        assert!(!params.trusted_hosts.contains("127.0.0.2".parse().unwrap()));
        assert_eq!(params.request_body_limit, 2 * 1024 * 1024);
        assert_eq!(params.max_connections, 4096);
        let limit = params.auth_failure_limit.limit().unwrap();
        assert_eq!(limit.max_failures, 10);
        assert_eq!(limit.period, Duration::from_secs(60));
        assert_eq!(limit.block_for, Duration::from_secs(300));
        assert!(!params.hostname.is_empty());
        params.validate().unwrap();
    }

    #[test]
    fn explicit_values() {
        let params = parse(
            r#"{"listen":"127.0.0.1:0","trusted_hosts":["10.0.0.0/8"],
                "request_body_limit":1024,"max_connections":2,
                "auth_failure_limit":{"max_failures":3,"period":"10 seconds","block_for":"1 minute"},
                "use_tls":true,"tls_certificate":"/tmp/c.pem","tls_private_key":{"key_data":"k"}}"#,
        )
        .unwrap();
        assert!(params.trusted_hosts.contains("10.9.9.9".parse().unwrap()));
        assert!(!params.trusted_hosts.contains("127.0.0.1".parse().unwrap()));
        assert_eq!(params.auth_failure_limit.limit().unwrap().max_failures, 3);
        assert!(params.use_tls);
        let disabled = parse(r#"{"auth_failure_limit":false}"#).unwrap();
        assert!(disabled.auth_failure_limit.limit().is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = parse(r#"{"listen_on":"127.0.0.1:0"}"#).unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
        let err = parse(r#"{"trusted_hosts":["localhost"]}"#).unwrap_err();
        assert!(err.to_string().contains("localhost"), "{err}");
        let err = parse(r#"{"auth_failure_limit":{"max_fails":3}}"#).unwrap_err();
        assert!(err.to_string().contains("max_fails"), "{err}");
        let zero = parse(r#"{"max_connections":0}"#).unwrap();
        assert!(zero.validate().is_err());
    }
}
