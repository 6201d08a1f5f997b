//! Egress configuration from the policy: `kumo.make_egress_pool`,
//! `kumo.make_egress_source`, `kumo.make_egress_path` and the events that
//! return them (`get_egress_pool`, `get_egress_source`,
//! `get_egress_path_config`).

use super::health::SuspendRule;
use super::proxy::{ProxyAddress, ProxyTls};
use ipnet::IpNet;
use mlua::{FromLua, Lua, UserData, Value};
use policy::{deserialize_duration, EventDecl, KeySource};
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// `get_egress_pool(name)`.
pub const GET_EGRESS_POOL: EventDecl<String, Option<LuaEgress<EgressPool>>> =
    EventDecl::new("get_egress_pool");
/// `get_egress_source(name)`.
pub const GET_EGRESS_SOURCE: EventDecl<String, Option<LuaEgress<EgressSource>>> =
    EventDecl::new("get_egress_source");
/// `get_egress_path_config(domain, source, site)`.
pub const GET_EGRESS_PATH_CONFIG: EventDecl<
    (String, String, String),
    Option<LuaEgress<EgressPath>>,
> = EventDecl::new("get_egress_path_config");

/// A policy value made by one of the `kumo.make_egress_*` functions (or a
/// plain table, parsed the same way).
#[derive(Debug, Clone)]
pub struct LuaEgress<T>(pub T);

impl<T: Clone + Send + 'static> UserData for LuaEgress<T> {}

/// How a parameter table is validated after serde.
pub trait EgressParams: for<'de> Deserialize<'de> + Clone + Send + 'static {
    /// The `kumo.` function's name, for messages.
    const FUNCTION: &'static str;
    /// Checks serde cannot express, and values derived from the settings
    /// (a loaded CA).
    fn validate(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Parse and validate a Lua parameter table.
pub fn parse<T: EgressParams>(lua: &Lua, value: Value) -> mlua::Result<T> {
    let name = T::FUNCTION;
    let mut params: T = policy::from_lua_params(lua, value)
        .map_err(|err| mlua::Error::RuntimeError(format!("{name}: {err}")))?;
    params
        .validate()
        .map_err(|err| mlua::Error::RuntimeError(format!("{name}: {err}")))?;
    Ok(params)
}

impl<T: EgressParams> FromLua for LuaEgress<T> {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        match value {
            Value::UserData(data) => Ok(data.borrow::<LuaEgress<T>>()?.clone()),
            Value::Table(_) => parse(lua, value).map(LuaEgress),
            other => Err(mlua::Error::RuntimeError(format!(
                "expected the value of kumo.{} {{...}}, got {}",
                T::FUNCTION,
                other.type_name()
            ))),
        }
    }
}

/// Register the three `kumo.make_egress_*` functions on `kumo`.
pub fn register(lua: &Lua, kumo: &mlua::Table) -> mlua::Result<()> {
    kumo.set(
        "make_egress_pool",
        lua.create_function(|lua, v: Value| parse::<EgressPool>(lua, v).map(LuaEgress))?,
    )?;
    kumo.set(
        "make_egress_source",
        lua.create_function(|lua, v: Value| parse::<EgressSource>(lua, v).map(LuaEgress))?,
    )?;
    kumo.set(
        "make_egress_path",
        lua.create_function(|lua, v: Value| parse::<EgressPath>(lua, v).map(LuaEgress))?,
    )?;
    Ok(())
}

/// `kumo.make_egress_pool { name, entries = { { name, weight } } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPool {
    /// The pool's name.
    pub name: String,
    /// The sources, chosen at random in proportion to their weights.
    #[serde(default)]
    pub entries: Vec<EgressPoolEntry>,
}

/// One source of a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPoolEntry {
    /// The source's name (passed to `get_egress_source`).
    pub name: String,
    /// Relative share of connections.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl EgressParams for EgressPool {
    const FUNCTION: &'static str = "make_egress_pool";
    fn validate(&mut self) -> Result<(), String> {
        if self.entries.iter().all(|e| e.weight == 0) {
            return Err(format!(
                "pool {:?} has no entry with a weight above zero",
                self.name
            ));
        }
        Ok(())
    }
}

impl EgressPool {
    /// Pick an entry in proportion to the weights, given a random `roll`,
    /// among those `usable` says yes to (suspended sources are not).
    pub fn pick(&self, roll: u64, usable: impl Fn(&str) -> bool) -> Option<&EgressPoolEntry> {
        let entries: Vec<&EgressPoolEntry> = self
            .entries
            .iter()
            .filter(|e| e.weight > 0 && usable(&e.name))
            .collect();
        let total: u64 = entries.iter().map(|e| u64::from(e.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut point = roll % total;
        for entry in entries {
            let weight = u64::from(entry.weight);
            if point < weight {
                return Some(entry);
            }
            point -= weight;
        }
        None
    }
}

/// `kumo.make_egress_source { ... }`: where connections come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSource {
    /// The source's name (logged as `egress_source`).
    pub name: String,
    /// Local address to bind for direct connections.
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// Reach destinations through this SOCKS5 proxy (`ip:port` or
    /// `host:port`, resolved at connect time).
    #[serde(default)]
    pub socks5_proxy_server: Option<ProxyAddress>,
    /// Speak SOCKS5 inside TLS to the proxy, verifying its certificate.
    #[serde(default)]
    pub socks5_proxy_tls: Option<ProxyTls>,
    /// Skip this source in pool selection for a while when its proxy is
    /// unreachable or refuses BIND.
    #[serde(default)]
    pub suspend_when_proxy_unhealthy: Option<SuspendRule>,
    /// The address the proxy should send from (requested with BIND).
    #[serde(default)]
    pub socks5_proxy_source_address: Option<IpAddr>,
    /// RFC 1929 username; with it the login is offered and required.
    #[serde(default)]
    pub socks5_proxy_username: Option<String>,
    /// RFC 1929 password (a keysource; never logged).
    #[serde(default)]
    pub socks5_proxy_password: Option<KeySource>,
    /// The EHLO name; defaults to the host name.
    #[serde(default)]
    pub ehlo_domain: Option<String>,
}

impl EgressParams for EgressSource {
    const FUNCTION: &'static str = "make_egress_source";
    fn validate(&mut self) -> Result<(), String> {
        let Some(proxy) = &self.socks5_proxy_server else {
            if self.socks5_proxy_username.is_some()
                || self.socks5_proxy_password.is_some()
                || self.socks5_proxy_source_address.is_some()
                || self.socks5_proxy_tls.is_some()
                || self.suspend_when_proxy_unhealthy.is_some()
            {
                return Err("socks5_proxy_* and suspend_when_proxy_unhealthy settings need socks5_proxy_server".into());
            }
            return Ok(());
        };
        if self.socks5_proxy_password.is_some() && self.socks5_proxy_username.is_none() {
            return Err("socks5_proxy_password needs socks5_proxy_username".into());
        }
        if let Some(rule) = &self.suspend_when_proxy_unhealthy {
            rule.check()?;
        }
        if let Some(tls) = &mut self.socks5_proxy_tls {
            tls.prepare(proxy)?;
        }
        Ok(())
    }
}

impl EgressSource {
    /// The source used when a queue names no egress pool.
    pub fn unspecified() -> Self {
        EgressSource {
            name: "unspecified".into(),
            source_address: None,
            socks5_proxy_server: None,
            socks5_proxy_tls: None,
            suspend_when_proxy_unhealthy: None,
            socks5_proxy_source_address: None,
            socks5_proxy_username: None,
            socks5_proxy_password: None,
            ehlo_domain: None,
        }
    }
}

/// `enable_tls`: whether STARTTLS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum EnableTls {
    /// When offered; certificate not verified; failure falls back to
    /// plain text only if the handshake never started.
    #[default]
    Opportunistic,
    /// Always; a server without STARTTLS fails the attempt transiently.
    Required,
    /// Never.
    Disabled,
}

/// `kumo.make_egress_path { ... }`: how one source talks to one site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPath {
    /// STARTTLS use.
    #[serde(default)]
    pub enable_tls: EnableTls,
    /// Bound on TCP connect (and the SOCKS5 handshake).
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub connect_timeout: Duration,
    /// Bound on the banner and EHLO.
    #[serde(
        default = "default_step_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub ehlo_timeout: Duration,
    /// Bound on STARTTLS and the TLS handshake.
    #[serde(
        default = "default_step_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub starttls_timeout: Duration,
    /// Bound on MAIL FROM.
    #[serde(
        default = "default_step_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub mail_from_timeout: Duration,
    /// Bound on RCPT TO.
    #[serde(
        default = "default_step_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub rcpt_to_timeout: Duration,
    /// Bound on DATA (the 354).
    #[serde(
        default = "default_step_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub data_timeout: Duration,
    /// Bound on sending the content and its final reply.
    #[serde(
        default = "default_data_dot_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub data_dot_timeout: Duration,
    /// How long an idle connection is kept for the next message from the
    /// same source to the same site.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub idle_timeout: Duration,
    /// The port of hosts named without one (MX records, bare `mx_list`
    /// entries).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Messages sent over one connection before it is closed.
    #[serde(default = "default_max_deliveries_per_connection")]
    pub max_deliveries_per_connection: u32,
    /// Destinations never connected to (a message whose every MX is in it
    /// bounces). KumoMTA's default covers loopback and unspecified.
    #[serde(default = "default_prohibited_hosts")]
    pub prohibited_hosts: Vec<IpNet>,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_step_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_smtp_port() -> u16 {
    25
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_deliveries_per_connection() -> u32 {
    1024
}
fn default_data_dot_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_prohibited_hosts() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"]
        .iter()
        .map(|net| net.parse().expect("valid default CIDR"))
        .collect()
}

impl EgressParams for EgressPath {
    const FUNCTION: &'static str = "make_egress_path";
}

impl Default for EgressPath {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults parse")
    }
}

impl EgressPath {
    /// Whether `ip` is in `prohibited_hosts`.
    pub fn is_prohibited(&self, ip: IpAddr) -> bool {
        self.prohibited_hosts.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_prohibited_hosts() {
        let path = EgressPath::default();
        assert_eq!(path.enable_tls, EnableTls::Opportunistic);
        assert!(path.is_prohibited("127.0.0.2".parse().unwrap()));
        assert!(path.is_prohibited("::1".parse().unwrap()));
        assert!(!path.is_prohibited("192.0.2.1".parse().unwrap()));
        let open: EgressPath = serde_json::from_str(
            r#"{"prohibited_hosts":[],"enable_tls":"Disabled","connect_timeout":"5s"}"#,
        )
        .unwrap();
        assert!(!open.is_prohibited("127.0.0.1".parse().unwrap()));
        assert_eq!(open.connect_timeout, Duration::from_secs(5));
        let err = serde_json::from_str::<EgressPath>(r#"{"enable_tsl":"Disabled"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("enable_tsl"), "{err}");
    }

    #[test]
    fn weighted_pick_and_source_checks() {
        let pool: EgressPool = serde_json::from_str(
            r#"{"name":"p","entries":[{"name":"a","weight":1},{"name":"b","weight":3}]}"#,
        )
        .unwrap();
        let picks: Vec<_> = (0..4)
            .map(|r| pool.pick(r, |_| true).unwrap().name.as_str())
            .collect();
        assert_eq!(picks, ["a", "b", "b", "b"]);
        let picks: Vec<_> = (0..4)
            .map(|r| pool.pick(r, |name| name != "b").unwrap().name.as_str())
            .collect();
        assert_eq!(picks, ["a", "a", "a", "a"]);
        assert!(pool.pick(0, |_| false).is_none());
        let mut source: EgressSource = serde_json::from_str(
            r#"{"name":"s","socks5_proxy_username":"u","socks5_proxy_password":{"key_data":"pw"}}"#,
        )
        .unwrap();
        assert!(source
            .validate()
            .unwrap_err()
            .contains("socks5_proxy_server"));
        assert!(!format!("{source:?}").contains("pw"));
    }
}
