//! Deciding RFC 1929 logins: the login pipeline both daemons share
//! ([`policy::LoginPipeline`]: failure limiter, verdict cache, accounting)
//! with the `proxy_server_auth_rfc1929` event, the fleet's shared blocks
//! and the proxy's login metrics.

use crate::fleet::Fleet;
use crate::listener::ListenerContext;
use crate::lua_api::{ConnMeta, PROXY_SERVER_AUTH_RFC1929};
use crate::metrics::ListenerMetrics;
use aaa::{redact, AuthInfo, Identity, IdentityContext, ListenerFailureLimit, Secret};
use policy::{
    Bytes, LoginAttempt, LoginObserver, LoginOutcome, LoginThrottle, LoginVerdict, LuaAuthResult,
    PolicyPool, SerdeArg, SharedFailures,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Decide the login of `username` / `password` from `peer` on `local`:
/// the accepted AuthInfo, or `None` (refused, blocked, no policy, or the
/// policy could not decide: fail closed).
pub async fn login(
    ctx: &ListenerContext,
    username: &[u8],
    password: &Secret,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<AuthInfo> {
    let logins = ctx.logins.as_ref()?;
    let ip = match peer.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    // The policy sees the peer address in `conn_meta`, so a verdict is not
    // reused for another client.
    let fields = [&ip[..], username, password.expose()];
    let attempt = LoginAttempt {
        attempted: Identity {
            identity: String::from_utf8_lossy(username).into_owned(),
            context: IdentityContext::ProxyAuthRfc1929,
        },
        connection: AuthInfo {
            peer_address: Some(peer.ip()),
            ..AuthInfo::default()
        },
        cache_fields: &fields,
    };
    let throttle = LoginThrottle {
        local: ctx.failure_limiter.as_ref(),
        shared: &FleetFailures(ctx.control.fleet.as_deref()),
    };
    let ask = || ask_policy(logins.policy(), username, password, peer, local);
    match logins.login(attempt, &throttle, &ctx.metrics, ask).await {
        LoginOutcome::Accepted(info) => Some(info),
        _ => None,
    }
}

/// One call of the policy; `Err` for outcomes that must not be cached.
async fn ask_policy(
    policy: &PolicyPool,
    username: &[u8],
    password: &Secret,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<LoginVerdict, String> {
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
        Ok(Some(LuaAuthResult::Bool(true))) => Ok(LoginVerdict::Accepted(AuthInfo::from_identity(
            String::from_utf8_lossy(username),
            IdentityContext::ProxyAuthRfc1929,
        ))),
        Ok(Some(LuaAuthResult::Bool(false))) => {
            Ok(LoginVerdict::Refused("policy returned false".into()))
        }
        Ok(Some(LuaAuthResult::AuthInfo(info))) if info.is_authenticated() => {
            Ok(LoginVerdict::Accepted(info))
        }
        // Fail closed: groups without an identity prove nothing.
        Ok(Some(LuaAuthResult::AuthInfo(_))) => Ok(LoginVerdict::Refused(
            "policy returned an AuthInfo with no identities".into(),
        )),
        Ok(None) => Err("no proxy_server_auth_rfc1929 handler is registered".into()),
        Err(err) => Err(redact(&err.to_string(), password)),
    }
}

/// The fleet's login blocks in Redis, when shared state is configured. A
/// Redis failure blocks nobody: the local table still counts. The Redis
/// calls' state is boxed: kilobytes that every session's handshake would
/// otherwise carry, with or without a fleet.
struct FleetFailures<'a>(Option<&'a Fleet>);

impl SharedFailures for FleetFailures<'_> {
    async fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        Box::pin(self.0?.login_blocked(ip)).await.flatten()
    }

    async fn record_failure(&self, ip: IpAddr, limit: &ListenerFailureLimit) -> bool {
        match self.0 {
            Some(fleet) => Box::pin(fleet.record_failure(ip, &limit.thresholds))
                .await
                .unwrap_or(false),
            None => false,
        }
    }
}

impl LoginObserver for ListenerMetrics {
    fn blocked(&self) {
        self.auth_blocked.inc();
        self.auth_failure.inc();
    }

    fn decided(&self, accepted: bool, elapsed: Duration) {
        self.auth_callback_seconds.observe(elapsed.as_secs_f64());
        if accepted {
            self.auth_success.inc();
        } else {
            self.auth_failure.inc();
        }
    }
}
