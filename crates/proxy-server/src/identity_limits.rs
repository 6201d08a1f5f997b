//! Per-identity limits from the policy: the event
//! `proxy_server_get_identity_limits(auth_info)`, what it may return
//! (`max_sessions`, `max_connect_rate`, `max_bandwidth`); its answers are
//! cached per identity by [`policy::IdentityLimitsCache`].

use aaa::AuthInfo;
use mlua::{FromLua, Lua, Value};
use policy::{EventDecl, SerdeArg};
use serde::Deserialize;

/// `proxy_server_get_identity_limits(auth_info)`: the limits of the
/// AuthInfo's first identity; `nil` (or no handler) means none.
pub const PROXY_SERVER_GET_IDENTITY_LIMITS: EventDecl<SerdeArg<AuthInfo>, LuaIdentityLimits> =
    EventDecl::new("proxy_server_get_identity_limits");

/// The slowest `max_bandwidth` accepted, in bytes per second: a shaped
/// relay moves up to 16 KiB at a time, so slower rates would sleep long
/// enough between chunks to look idle.
pub const MIN_BANDWIDTH: u64 = 1024;

/// At most `count` CONNECTs in each window of `period`.
pub type ConnectRate = policy::Rate;

/// Each identity's limits as the policy last gave them
/// ([`policy::IdentityLimitsCache`]), so the event runs once per identity
/// and TTL, not once per tunnel.
pub type LimitsCache = policy::IdentityLimitsCache<IdentityLimits>;

/// What the policy returned for one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityLimits {
    /// Tunnels open at once (fleet-wide with shared state).
    pub max_sessions: Option<u32>,
    /// CONNECTs per window (fleet-wide with shared state).
    pub max_connect_rate: Option<ConnectRate>,
    /// Bytes per second in each direction, shared by the identity's tunnels
    /// on this proxy.
    pub max_bandwidth: Option<u64>,
}

impl IdentityLimits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        *self == IdentityLimits::default()
    }
}

/// The table the handler returns.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsTable {
    max_sessions: Option<u32>,
    max_connect_rate: Option<String>,
    max_bandwidth: Option<u64>,
}

impl LimitsTable {
    fn into_limits(self) -> Result<IdentityLimits, String> {
        if let Some(rate) = self.max_bandwidth.filter(|rate| *rate < MIN_BANDWIDTH) {
            return Err(format!(
                "max_bandwidth {rate} is below the minimum of {MIN_BANDWIDTH} bytes/s"
            ));
        }
        Ok(IdentityLimits {
            max_sessions: self.max_sessions,
            max_connect_rate: self
                .max_connect_rate
                .as_deref()
                .map(|text| ConnectRate::parse("max_connect_rate", text))
                .transpose()?,
            max_bandwidth: self.max_bandwidth,
        })
    }
}

/// The handler's answer: `None` for `nil`.
pub struct LuaIdentityLimits(pub Option<IdentityLimits>);

impl FromLua for LuaIdentityLimits {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        let err = |message: String| {
            mlua::Error::RuntimeError(format!("proxy_server_get_identity_limits: {message}"))
        };
        match value {
            Value::Nil => Ok(LuaIdentityLimits(None)),
            Value::Table(_) => {
                let table: LimitsTable =
                    policy::from_lua_params(lua, value).map_err(|e| err(e.to_string()))?;
                table
                    .into_limits()
                    .map(|l| LuaIdentityLimits(Some(l)))
                    .map_err(err)
            }
            other => Err(err(format!(
                "expected a table or nil, got {}",
                other.type_name()
            ))),
        }
    }
}

impl From<LuaIdentityLimits> for Option<IdentityLimits> {
    fn from(answer: LuaIdentityLimits) -> Self {
        answer.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connect_rates_parse_units_and_durations() {
        let rate = |text| ConnectRate::parse("max_connect_rate", text).unwrap();
        assert_eq!(rate("10/minute").period, Duration::from_secs(60));
        assert_eq!(rate("10/m").count, 10);
        assert_eq!(rate("5/s").period, Duration::from_secs(1));
        assert_eq!(rate("1,000/h").count, 1000);
        assert_eq!(rate("100/5 minutes").period, Duration::from_secs(300));
        assert_eq!(rate(" 3 / 30s ").period, Duration::from_secs(30));
        for bad in ["10", "x/minute", "10/fortnights", "-1/s", "10/0s"] {
            let err = ConnectRate::parse("max_connect_rate", bad).unwrap_err();
            assert!(err.contains("max_connect_rate"), "{bad}: {err}");
        }
    }

    fn from_lua(code: &str) -> mlua::Result<Option<IdentityLimits>> {
        let lua = Lua::new();
        let value: Value = lua.load(code).eval()?;
        LuaIdentityLimits::from_lua(value, &lua).map(|l| l.0)
    }

    #[test]
    fn handler_results_parse_or_fail_naming_the_event() {
        let limits = from_lua(
            "return { max_sessions = 2, max_connect_rate = '5/s', max_bandwidth = 1048576 }",
        )
        .unwrap()
        .unwrap();
        assert_eq!(limits.max_sessions, Some(2));
        assert_eq!(limits.max_connect_rate.unwrap().count, 5);
        assert_eq!(limits.max_bandwidth, Some(1 << 20));
        assert_eq!(from_lua("return nil").unwrap(), None);
        assert!(from_lua("return {}").unwrap().unwrap().is_empty());
        for bad in [
            "return { max_session = 2 }",
            "return { max_bandwidth = 10 }",
            "return { max_connect_rate = 'often' }",
            "return 'unlimited'",
            "return { max_sessions = -1 }",
        ] {
            let err = from_lua(bad).unwrap_err().to_string();
            assert!(
                err.contains("proxy_server_get_identity_limits"),
                "{bad}: {err}"
            );
        }
    }
}
