//! Per-identity limits from the policy: the event
//! `proxy_server_get_identity_limits(auth_info)`, what it may return
//! (`max_sessions`, `max_connect_rate`, `max_bandwidth`), and the
//! per-identity cache of its answers that an epoch bump empties.

use aaa::AuthInfo;
use mlua::{FromLua, Lua, Value};
use policy::{EpochCache, EventDecl, PolicyError, PolicyPool, SerdeArg};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// `proxy_server_get_identity_limits(auth_info)`: the limits of the
/// AuthInfo's first identity; `nil` (or no handler) means none.
pub const PROXY_SERVER_GET_IDENTITY_LIMITS: EventDecl<SerdeArg<AuthInfo>, LuaIdentityLimits> =
    EventDecl::new("proxy_server_get_identity_limits");

/// The slowest `max_bandwidth` accepted, in bytes per second: a shaped
/// relay moves up to 16 KiB at a time, so slower rates would sleep long
/// enough between chunks to look idle.
pub const MIN_BANDWIDTH: u64 = 1024;

/// How long an identity's limits are reused before the handler is asked
/// again (an epoch bump forgets them at once).
pub const LIMITS_TTL: Duration = Duration::from_secs(60);

/// Identities whose limits are cached at most; past it the least used are
/// evicted (and asked for again on their next login).
pub const LIMITS_CACHE_CAPACITY: u64 = 65_536;

/// At most `count` CONNECTs in each window of `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRate {
    /// CONNECTs allowed per window.
    pub count: u32,
    /// The window's length.
    pub period: Duration,
}

impl ConnectRate {
    /// Parse `"N/period"`: `period` is a unit (`s`, `sec`, `second`, `m`,
    /// `min`, `minute`, `h`, `hour`, `d`, `day`) or a duration
    /// (`"100/5 minutes"`, `"10/30s"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (count, period) =
            policy::parse_rate(text).map_err(|why| format!("max_connect_rate {text:?}: {why}"))?;
        Ok(ConnectRate { count, period })
    }
}

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
                .map(ConnectRate::parse)
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

/// Each identity's limits as the policy last gave them, so the event runs
/// once per identity (per [`LIMITS_TTL`]), not once per tunnel. Concurrent
/// first logins of one identity share one call.
#[derive(Clone)]
pub struct LimitsCache {
    cache: Arc<EpochCache<String, Option<Arc<IdentityLimits>>>>,
}

impl LimitsCache {
    /// A cache emptied whenever `policy`'s epoch is bumped (a reload).
    pub fn for_policy(policy: &PolicyPool) -> Self {
        LimitsCache {
            cache: EpochCache::for_policy(policy, LIMITS_CACHE_CAPACITY, LIMITS_TTL),
        }
    }

    /// The limits of `auth`'s first identity (`None`: no limits). An
    /// error (the handler failed) is not cached.
    pub async fn get(
        &self,
        policy: &PolicyPool,
        auth: &AuthInfo,
    ) -> Result<Option<Arc<IdentityLimits>>, Arc<PolicyError>> {
        let Some(identity) = auth.first_identity() else {
            return Ok(None);
        };
        let ask = async {
            let answer = policy
                .call(&PROXY_SERVER_GET_IDENTITY_LIMITS, SerdeArg(auth.clone()))
                .await?;
            Ok(answer
                .and_then(|limits| limits.0)
                .filter(|limits| !limits.is_empty())
                .map(Arc::new))
        };
        self.cache
            .get_or_try_insert(identity.identity.clone(), policy.epoch(), ask)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_rates_parse_units_and_durations() {
        let rate = |text| ConnectRate::parse(text).unwrap();
        assert_eq!(rate("10/minute").period, Duration::from_secs(60));
        assert_eq!(rate("10/m").count, 10);
        assert_eq!(rate("5/s").period, Duration::from_secs(1));
        assert_eq!(rate("1,000/h").count, 1000);
        assert_eq!(rate("100/5 minutes").period, Duration::from_secs(300));
        assert_eq!(rate(" 3 / 30s ").period, Duration::from_secs(30));
        for bad in ["10", "x/minute", "10/fortnights", "-1/s", "10/0s"] {
            let err = ConnectRate::parse(bad).unwrap_err();
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
