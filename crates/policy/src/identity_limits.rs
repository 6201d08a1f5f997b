//! Per-identity limits asked of the policy (`proxy_server_get_identity_limits`,
//! `http_server_get_injection_limits`): the `"N/period"` rate both events
//! return, and one cache of their answers per identity, so an event runs
//! once per identity and TTL, not once per tunnel or request.

use crate::{EpochCache, EventDecl, PolicyError, PolicyPool, SerdeArg};
use aaa::AuthInfo;
use mlua::FromLuaMulti;
use std::sync::Arc;
use std::time::Duration;

/// How long an identity's limits are reused before the handler is asked
/// again (an epoch bump forgets them at once).
pub const IDENTITY_LIMITS_TTL: Duration = Duration::from_secs(60);

/// Identities whose limits are cached at most; past it the least used are
/// evicted (and asked for again on their next use).
pub const IDENTITY_LIMITS_CAPACITY: u64 = 65_536;

/// At most `count` events (CONNECTs, messages) in each window of `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per window.
    pub count: u32,
    /// The window's length.
    pub period: Duration,
}

impl Rate {
    /// Parse the `"N/period"` value of `key` ([`crate::parse_rate`]); the
    /// error names the key.
    pub fn parse(key: &str, text: &str) -> Result<Self, String> {
        let (count, period) =
            crate::parse_rate(text).map_err(|why| format!("{key} {text:?}: {why}"))?;
        Ok(Rate { count, period })
    }
}

/// Each identity's limits `L` as the policy last gave them; concurrent
/// first asks for one identity share one call, and an error is not kept.
pub struct IdentityLimitsCache<L> {
    cache: Arc<EpochCache<String, Option<Arc<L>>>>,
}

impl<L> Clone for IdentityLimitsCache<L> {
    fn clone(&self) -> Self {
        IdentityLimitsCache {
            cache: self.cache.clone(),
        }
    }
}

impl<L> IdentityLimitsCache<L>
where
    L: Default + PartialEq + Send + Sync + 'static,
{
    /// A cache emptied whenever `policy`'s epoch is bumped (a reload).
    pub fn for_policy(policy: &PolicyPool) -> Self {
        IdentityLimitsCache {
            cache: EpochCache::for_policy(policy, IDENTITY_LIMITS_CAPACITY, IDENTITY_LIMITS_TTL),
        }
    }

    /// The limits `event` gives `auth`'s first identity: `None` without an
    /// identity, for `nil` or no handler, and for limits that set nothing.
    pub async fn get<R>(
        &self,
        policy: &PolicyPool,
        event: &EventDecl<SerdeArg<AuthInfo>, R>,
        auth: &AuthInfo,
    ) -> Result<Option<Arc<L>>, Arc<PolicyError>>
    where
        R: FromLuaMulti + Into<Option<L>> + Send + 'static,
    {
        let Some(identity) = auth.first_identity() else {
            return Ok(None);
        };
        let ask = || async {
            let answer = policy.call(event, SerdeArg(auth.clone())).await?;
            Ok(answer
                .and_then(Into::into)
                .filter(|limits| *limits != L::default())
                .map(Arc::new))
        };
        self.cache
            .get_or_try_insert(identity.identity.clone(), policy.epoch(), ask)
            .await
    }
}
