//! The parameters of `proxy.start_proxy_listener { ... }`.

use crate::destination::deserialize_ip_ranges;
pub use http_listener::AuthFailureLimitSetting;
use policy::{deserialize_duration, KeySource};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One SOCKS5 listener, as the policy describes it. Unknown keys are an
/// error that names the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyListenerParams {
    /// `ip:port` to bind; port 0 picks a free port.
    pub listen: SocketAddr,

    /// CN/SAN of the generated self-signed certificate (TLS only).
    #[serde(default = "default_hostname")]
    pub hostname: String,

    /// Bound on each handshake and request step, and on outbound connects.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,

    /// Relay plain TCP with splice(2) instead of user-space copies.
    #[serde(default = "default_true")]
    pub use_splice: bool,

    /// Clients must speak TLS to this listener.
    #[serde(default)]
    pub use_tls: bool,

    /// PEM certificate chain (path or `{ key_data = ... }`).
    #[serde(default)]
    pub tls_certificate: Option<KeySource>,

    /// PEM private key (path or `{ key_data = ... }`).
    #[serde(default)]
    pub tls_private_key: Option<KeySource>,

    /// Only clients that authenticate with RFC 1929 are accepted.
    #[serde(default)]
    pub require_auth: bool,

    /// Keepalive on inbound and outbound sockets.
    #[serde(default)]
    pub tcp_keepalive: TcpKeepaliveParams,

    /// A relayed session idle in both directions this long is closed; 0 disables.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub idle_timeout: Duration,

    /// Sessions open at once on this listener; past it new clients are closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,

    /// Per-IP login failure limit (`false` disables).
    #[serde(default)]
    pub auth_failure_limit: AuthFailureLimitSetting,

    /// How long an accepted RFC 1929 login is remembered (refusals for at
    /// most `policy::REFUSED_VERDICT_TTL`), so a strong password hash is
    /// checked once per credential and TTL; `0` disables the cache.
    #[serde(
        default = "default_auth_cache_ttl",
        deserialize_with = "deserialize_duration"
    )]
    pub auth_cache_ttl: Duration,

    /// Destination addresses CONNECT may not reach (IPs or CIDRs). Unset:
    /// loopback, unspecified, link-local, multicast, broadcast and this
    /// process's own listeners; a list (even `{}`) replaces all of that.
    #[serde(default, deserialize_with = "deserialize_ip_ranges")]
    pub prohibited_destinations: Option<Vec<ipnet::IpNet>>,
}

/// `tcp_keepalive = { enabled, time, interval, retries }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpKeepaliveParams {
    /// Whether keepalive probes are sent at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Idle time before the first probe.
    #[serde(
        default = "default_keepalive_time",
        deserialize_with = "deserialize_duration"
    )]
    pub time: Duration,
    /// Time between probes.
    #[serde(
        default = "default_keepalive_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    #[serde(default = "default_keepalive_retries")]
    pub retries: u32,
}

impl Default for TcpKeepaliveParams {
    fn default() -> Self {
        TcpKeepaliveParams {
            enabled: true,
            time: default_keepalive_time(),
            interval: default_keepalive_interval(),
            retries: default_keepalive_retries(),
        }
    }
}

impl ProxyListenerParams {
    /// Parameters for the legacy command line (`--listen`): no policy, no auth.
    pub fn legacy(listen: SocketAddr, use_splice: bool, timeout: Duration) -> Self {
        ProxyListenerParams {
            listen,
            hostname: default_hostname(),
            timeout,
            use_splice,
            use_tls: false,
            tls_certificate: None,
            tls_private_key: None,
            require_auth: false,
            tcp_keepalive: TcpKeepaliveParams::default(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            auth_failure_limit: AuthFailureLimitSetting::default(),
            auth_cache_ttl: default_auth_cache_ttl(),
            prohibited_destinations: None,
        }
    }

    /// The TLS acceptor when `use_tls`: the given certificate and key, or a
    /// self-signed certificate for `hostname`. Errors name the files.
    pub fn tls_acceptor(&self) -> anyhow::Result<Option<tls::TlsAcceptor>> {
        tls::ListenerTlsKeys {
            use_tls: self.use_tls,
            hostname: &self.hostname,
            certificate: self.tls_certificate.as_ref(),
            private_key: self.tls_private_key.as_ref(),
        }
        .acceptor(&format!("listener {}", self.listen))
    }

    /// Checks that serde cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_connections == 0 {
            anyhow::bail!(
                "listener {}: max_connections must be at least 1",
                self.listen
            );
        }
        if self.timeout.is_zero() {
            anyhow::bail!(
                "listener {}: timeout must be greater than zero",
                self.listen
            );
        }
        if self.auth_cache_ttl > MAX_AUTH_CACHE_TTL {
            anyhow::bail!(
                "listener {}: auth_cache_ttl must be at most {MAX_AUTH_CACHE_TTL:?}",
                self.listen
            );
        }
        self.auth_failure_limit
            .validate(&format!("listener {}", self.listen))
    }
}

/// The longest `auth_cache_ttl` accepted: a day. A removed user or a
/// changed password takes effect at once anyway (a credential file reload
/// or a config epoch bump empties the cache), but a policy that decides
/// otherwise (a database) is only asked again after the TTL.
pub const MAX_AUTH_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

fn default_auth_cache_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_hostname() -> String {
    http_listener::default_hostname()
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_connections() -> usize {
    32768
}
fn default_keepalive_time() -> Duration {
    Duration::from_secs(300)
}
fn default_keepalive_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_keepalive_retries() -> u32 {
    3
}
