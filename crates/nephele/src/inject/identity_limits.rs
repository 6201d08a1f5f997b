//! Per-identity injection limits from the policy: the event
//! `http_server_get_injection_limits(auth_info)`, what it may return
//! (`max_message_rate`, `max_recipients_per_request`), its answers cached
//! per identity ([`policy::IdentityLimitsCache`], as proxy-server's
//! identity limits) and each identity's message-rate window
//! ([`policy::FixedWindow`], as proxy-server's `max_connect_rate`).

use aaa::AuthInfo;
use mlua::{FromLua, Lua, Value};
use parking_lot::Mutex;
use policy::{EventDecl, FixedWindow, IdentityLimitsCache, PolicyPool, SerdeArg};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `http_server_get_injection_limits(auth_info)`: the limits of the
/// AuthInfo's first identity; `nil` (or no handler) means none.
pub const HTTP_SERVER_GET_INJECTION_LIMITS: EventDecl<SerdeArg<AuthInfo>, LuaInjectionLimits> =
    EventDecl::new("http_server_get_injection_limits");

/// At most `count` messages in each window of `period`.
pub type MessageRate = policy::Rate;

/// Identities with a rate window kept at most before the others are
/// forgotten (they only lose their current window's count).
pub const MAX_RATE_WINDOWS: usize = 65_536;

/// What the policy returned for one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectionIdentityLimits {
    /// Messages (one per recipient) per window.
    pub max_message_rate: Option<MessageRate>,
    /// Recipients in one request.
    pub max_recipients_per_request: Option<usize>,
}

/// The table the handler returns: an unknown key is an error (fail closed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsTable {
    max_message_rate: Option<String>,
    max_recipients_per_request: Option<usize>,
}

/// The handler's answer: `None` for `nil`.
pub struct LuaInjectionLimits(pub Option<InjectionIdentityLimits>);

impl FromLua for LuaInjectionLimits {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        let err = |message: String| {
            mlua::Error::RuntimeError(format!("http_server_get_injection_limits: {message}"))
        };
        match value {
            Value::Nil => Ok(LuaInjectionLimits(None)),
            Value::Table(_) => {
                let table: LimitsTable =
                    policy::from_lua_params(lua, value).map_err(|e| err(e.to_string()))?;
                let max_message_rate = table
                    .max_message_rate
                    .as_deref()
                    .map(|text| MessageRate::parse("max_message_rate", text))
                    .transpose()
                    .map_err(err)?;
                Ok(LuaInjectionLimits(Some(InjectionIdentityLimits {
                    max_message_rate,
                    max_recipients_per_request: table.max_recipients_per_request,
                })))
            }
            other => Err(err(format!(
                "expected a table or nil, got {}",
                other.type_name()
            ))),
        }
    }
}

impl From<LuaInjectionLimits> for Option<InjectionIdentityLimits> {
    fn from(answer: LuaInjectionLimits) -> Self {
        answer.0
    }
}

/// Why a request was refused by its identity's limits (or could not be
/// checked).
#[derive(Debug, thiserror::Error)]
pub enum IdentityRefusal {
    /// Past `max_message_rate`: `429` with `Retry-After`.
    #[error("identity {identity:?} is past max_message_rate ({count} per {period:?}); retry in {retry_after:?}")]
    Rate {
        /// The identity.
        identity: String,
        /// Messages per window.
        count: u32,
        /// The window.
        period: Duration,
        /// Until the window ends.
        retry_after: Duration,
    },
    /// The handler failed or returned something invalid: `500` (fail
    /// closed). The text is for the log.
    #[error("http_server_get_injection_limits failed for {identity:?}: {message}")]
    Policy {
        /// The identity.
        identity: String,
        /// The policy's error.
        message: String,
    },
}

/// The identity limits of one process: the cached answers and each
/// identity's current rate window.
pub struct InjectionIdentityControl {
    cache: IdentityLimitsCache<InjectionIdentityLimits>,
    windows: Mutex<HashMap<String, Arc<FixedWindow>>>,
    anchor: Instant,
}

impl InjectionIdentityControl {
    /// Answers of `policy`, forgotten on its epoch bumps.
    pub fn for_policy(policy: &PolicyPool) -> Self {
        InjectionIdentityControl {
            cache: IdentityLimitsCache::for_policy(policy),
            windows: Mutex::new(HashMap::new()),
            anchor: Instant::now(),
        }
    }

    /// The limits of `auth`'s first identity (`None`: no identity, or no
    /// limits), with the identity.
    pub async fn limits(
        &self,
        policy: &PolicyPool,
        auth: &AuthInfo,
    ) -> Result<Option<(String, Arc<InjectionIdentityLimits>)>, IdentityRefusal> {
        let Some(first) = auth.first_identity() else {
            return Ok(None);
        };
        let identity = first.identity.clone();
        let cached = self
            .cache
            .get(policy, &HTTP_SERVER_GET_INJECTION_LIMITS, auth)
            .await;
        match cached {
            Ok(limits) => Ok(limits.map(|limits| (identity, limits))),
            Err(err) => Err(IdentityRefusal::Policy {
                identity,
                message: err.to_string(),
            }),
        }
    }

    /// Count `messages` against the identity's `max_message_rate`.
    pub fn take_messages(
        &self,
        identity: &str,
        rate: &MessageRate,
        messages: usize,
    ) -> Result<(), IdentityRefusal> {
        let window = {
            let mut windows = self.windows.lock();
            if !windows.contains_key(identity) && windows.len() >= MAX_RATE_WINDOWS {
                windows.clear();
            }
            windows.entry(identity.to_owned()).or_default().clone()
        };
        window
            .take(
                rate.count,
                rate.period,
                self.anchor.elapsed(),
                messages as u64,
            )
            .map_err(|retry_after| IdentityRefusal::Rate {
                identity: identity.to_owned(),
                count: rate.count,
                period: rate.period,
                retry_after,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_lua(code: &str) -> mlua::Result<Option<InjectionIdentityLimits>> {
        let lua = Lua::new();
        let value: Value = lua.load(code).eval()?;
        LuaInjectionLimits::from_lua(value, &lua).map(|l| l.0)
    }

    /// The rate windows are bounded: past `MAX_RATE_WINDOWS` identities
    /// they are forgotten, so a window's count starts again.
    #[test]
    fn rate_windows_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.lua");
        std::fs::write(&path, "-- no events: only the windows are used\n").unwrap();
        let loader = policy::PolicyLoader::new(&path, vec![]);
        let pool = PolicyPool::new(loader, Duration::from_secs(10)).unwrap();
        let control = InjectionIdentityControl::for_policy(&pool);
        let rate = MessageRate {
            count: 1,
            period: Duration::from_secs(3600),
        };
        assert!(control.take_messages("first", &rate, 1).is_ok());
        assert!(control.take_messages("first", &rate, 1).is_err());
        for n in 1..MAX_RATE_WINDOWS {
            assert!(control.take_messages(&format!("id{n}"), &rate, 1).is_ok());
        }
        assert_eq!(control.windows.lock().len(), MAX_RATE_WINDOWS);
        assert!(control.take_messages("one more", &rate, 1).is_ok());
        assert_eq!(control.windows.lock().len(), 1);
        assert!(
            control.take_messages("first", &rate, 1).is_ok(),
            "a forgotten window starts again"
        );
    }

    #[test]
    fn handler_results_parse_or_fail_naming_the_event() {
        let limits =
            from_lua("return { max_message_rate = '5/s', max_recipients_per_request = 3 }")
                .unwrap()
                .unwrap();
        assert_eq!(limits.max_message_rate.unwrap().count, 5);
        assert_eq!(limits.max_recipients_per_request, Some(3));
        assert_eq!(from_lua("return nil").unwrap(), None);
        for bad in [
            "return { max_message_rates = '5/s' }",
            "return { max_message_rate = 'often' }",
            "return { max_recipients_per_request = -1 }",
            "return 'unlimited'",
        ] {
            let err = from_lua(bad).unwrap_err().to_string();
            assert!(
                err.contains("http_server_get_injection_limits"),
                "{bad}: {err}"
            );
        }
    }
}
