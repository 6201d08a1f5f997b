//! Deciding RFC 1929 logins with the policy, failing closed.

use crate::lua_api::{ConnMeta, PROXY_SERVER_AUTH_RFC1929};
use aaa::{redact, AuthInfo, IdentityContext, Secret};
use policy::{Bytes, LuaAuthResult, PolicyPool, SerdeArg};
use std::net::SocketAddr;
use tracing::{debug, warn};

/// The outcome of one login attempt.
#[derive(Debug)]
pub enum AuthDecision {
    /// Accepted with this identity.
    Accepted(AuthInfo),
    /// Refused; the reason is for the log and never holds the password.
    Refused(String),
}

/// Ask `proxy_server_auth_rfc1929` about a login. Anything but `true` or an
/// AuthInfo with at least one identity is a refusal.
pub async fn authenticate(
    policy: &PolicyPool,
    username: &[u8],
    password: &Secret,
    peer: SocketAddr,
    local: SocketAddr,
) -> AuthDecision {
    let meta = ConnMeta {
        peer_address: peer.to_string(),
        local_address: local.to_string(),
    };
    let args = (
        Bytes(username.to_vec()),
        Bytes(password.expose().to_vec()),
        SerdeArg(meta),
    );
    let user = String::from_utf8_lossy(username);
    let decision = match policy.call(&PROXY_SERVER_AUTH_RFC1929, args).await {
        Ok(Some(LuaAuthResult::Bool(true))) => AuthDecision::Accepted(AuthInfo::from_identity(
            user.as_ref(),
            IdentityContext::ProxyAuthRfc1929,
        )),
        Ok(Some(LuaAuthResult::Bool(false))) => {
            AuthDecision::Refused("policy returned false".into())
        }
        Ok(Some(LuaAuthResult::AuthInfo(info))) if info.is_authenticated() => {
            AuthDecision::Accepted(info)
        }
        Ok(Some(LuaAuthResult::AuthInfo(_))) => {
            AuthDecision::Refused("policy returned an AuthInfo with no identities".into())
        }
        Ok(None) => {
            AuthDecision::Refused("no proxy_server_auth_rfc1929 handler is registered".into())
        }
        Err(err) => AuthDecision::Refused(redact(&err.to_string(), password)),
    };
    // Escaped: a username is client bytes and must not forge log lines.
    let user = user.escape_debug();
    match &decision {
        AuthDecision::Accepted(_) => debug!(peer = %peer, user = %user, "RFC 1929 login accepted"),
        AuthDecision::Refused(reason) => {
            warn!(peer = %peer, user = %user, reason = %reason, "RFC 1929 login refused")
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
