//! Deciding RFC 1929 logins with the policy, failing closed, behind the
//! listener's verdict cache.

use crate::lua_api::{ConnMeta, PROXY_SERVER_AUTH_RFC1929};
use aaa::{redact, AuthInfo, IdentityContext, Secret};
use policy::{
    AaaContext, Bytes, LoginGeneration, LuaAuthResult, PolicyPool, SerdeArg, Verdict, VerdictCache,
    REFUSED_VERDICT_TTL, VERDICT_CACHE_CAPACITY,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// One listener's remembered login verdicts. Keys are salted hashes of
/// the client IP, the username and the password (the policy sees the
/// peer address in `conn_meta`, so a verdict is not reused for another
/// client); the clear password is never kept.
pub struct LoginCache {
    cache: VerdictCache<AuthDecision>,
    /// Tells when credential files reload; `None` in legacy mode.
    aaa: Option<Arc<AaaContext>>,
}

impl LoginCache {
    /// A cache keeping acceptances for `ttl` (`0` disables it) and
    /// refusals for at most [`REFUSED_VERDICT_TTL`].
    pub fn new(ttl: Duration, aaa: Option<Arc<AaaContext>>) -> Self {
        LoginCache {
            cache: VerdictCache::new(ttl, REFUSED_VERDICT_TTL, VERDICT_CACHE_CAPACITY),
            aaa,
        }
    }
}

/// The outcome of one login attempt.
#[derive(Debug, Clone)]
pub enum AuthDecision {
    /// Accepted with this identity.
    Accepted(AuthInfo),
    /// Refused; the reason is for the log and never holds the password.
    Refused(String),
}

impl Verdict for AuthDecision {
    fn is_accepted(&self) -> bool {
        matches!(self, AuthDecision::Accepted(_))
    }
}

/// The verdict on a login: from `cache`, else from
/// `proxy_server_auth_rfc1929`. Anything but `true` or an AuthInfo with at
/// least one identity is a refusal; a failed call (error, timeout, no
/// handler) refuses and is not remembered.
pub async fn authenticate(
    policy: &PolicyPool,
    cache: &LoginCache,
    username: &[u8],
    password: &Secret,
    peer: SocketAddr,
    local: SocketAddr,
) -> AuthDecision {
    let generation = LoginGeneration::current(policy, cache.aaa.as_deref());
    let ip = match peer.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let fields = [&ip[..], username, password.expose()];
    let decide = ask_policy(policy, username, password, peer, local);
    let (decision, cached) = match cache.cache.get_or_decide(generation, &fields, decide).await {
        Ok(outcome) => outcome,
        Err(reason) => (AuthDecision::Refused((*reason).clone()), false),
    };
    let user = String::from_utf8_lossy(username);
    // Escaped: a username is client bytes and must not forge log lines.
    let user = user.escape_debug();
    match &decision {
        AuthDecision::Accepted(_) => {
            debug!(peer = %peer, user = %user, cached, "RFC 1929 login accepted")
        }
        AuthDecision::Refused(reason) => {
            warn!(peer = %peer, user = %user, reason = %reason, cached, "RFC 1929 login refused")
        }
    }
    match decision {
        AuthDecision::Accepted(mut info) => {
            info.peer_address = Some(peer.ip());
            AuthDecision::Accepted(info)
        }
        refused => refused,
    }
}

/// One call of the policy; `Err` for outcomes that must not be cached.
async fn ask_policy(
    policy: &PolicyPool,
    username: &[u8],
    password: &Secret,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<AuthDecision, String> {
    let meta = ConnMeta {
        peer_address: peer.to_string(),
        local_address: local.to_string(),
    };
    let args = (
        Bytes(username.to_vec()),
        Bytes(password.expose().to_vec()),
        SerdeArg(meta),
    );
    match policy.call(&PROXY_SERVER_AUTH_RFC1929, args).await {
        Ok(Some(LuaAuthResult::Bool(true))) => Ok(AuthDecision::Accepted(AuthInfo::from_identity(
            String::from_utf8_lossy(username),
            IdentityContext::ProxyAuthRfc1929,
        ))),
        Ok(Some(LuaAuthResult::Bool(false))) => {
            Ok(AuthDecision::Refused("policy returned false".into()))
        }
        Ok(Some(LuaAuthResult::AuthInfo(info))) if info.is_authenticated() => {
            Ok(AuthDecision::Accepted(info))
        }
        Ok(Some(LuaAuthResult::AuthInfo(_))) => Ok(AuthDecision::Refused(
            "policy returned an AuthInfo with no identities".into(),
        )),
        Ok(None) => Err("no proxy_server_auth_rfc1929 handler is registered".into()),
        Err(err) => Err(redact(&err.to_string(), password)),
    }
}
