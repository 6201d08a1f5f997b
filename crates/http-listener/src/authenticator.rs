//! Deciding credentials with the policy events; the login pipeline
//! ([`policy::LoginPipeline`]) around it caches, throttles and accounts.

use crate::credentials::Credential;
use aaa::{redact, AuthInfo, IdentityContext};
use policy::{Bytes, EventDecl, LoginVerdict, LuaAuthResult, PolicyError, PolicyPool};
use std::time::Duration;

/// `http_server_validate_auth_basic(user, password)`; `password` is `nil`
/// when the header had no colon.
pub const HTTP_SERVER_VALIDATE_AUTH_BASIC: EventDecl<(String, Option<Bytes>), LuaAuthResult> =
    EventDecl::new("http_server_validate_auth_basic");

/// `http_server_validate_auth_bearer(token)`.
pub const HTTP_SERVER_VALIDATE_AUTH_BEARER: EventDecl<Bytes, LuaAuthResult> =
    EventDecl::new("http_server_validate_auth_bearer");

/// How long an accepted credential is remembered (refusals: at most
/// [`policy::REFUSED_VERDICT_TTL`]).
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// The identity a bearer handler's `true` grants. The token itself is a
/// secret and never becomes an identity; a handler that wants a named
/// identity returns an AuthInfo.
pub const BEARER_IDENTITY: &str = "bearer-token";

/// One call of the credential's event: the policy's verdict, or `Err`
/// (never cached) when it could not decide: no handler, an error, a
/// timeout. The error text never holds the credential's secret.
pub async fn ask_policy(
    policy: &PolicyPool,
    credential: &Credential,
) -> Result<LoginVerdict, String> {
    let (event, result) = match credential {
        Credential::Basic { user, password } => {
            let password = password.as_ref().map(|p| Bytes(p.expose().to_vec()));
            let event = &HTTP_SERVER_VALIDATE_AUTH_BASIC;
            (
                event.name,
                policy.call(event, (user.clone(), password)).await,
            )
        }
        Credential::Bearer { token } => {
            let event = &HTTP_SERVER_VALIDATE_AUTH_BEARER;
            let token = Bytes(token.expose().to_vec());
            (event.name, policy.call(event, token).await)
        }
    };
    let result = match result {
        Ok(Some(result)) => result,
        Ok(None) => return Err(format!("the policy has no {event} handler")),
        Err(err) => return Err(redact_policy_error(&err, credential)),
    };
    Ok(match result {
        LuaAuthResult::Bool(false) => LoginVerdict::Refused(format!("{event} returned false")),
        LuaAuthResult::Bool(true) => LoginVerdict::Accepted(match credential {
            Credential::Basic { user, .. } => {
                AuthInfo::from_identity(user.clone(), IdentityContext::HttpBasicAuth)
            }
            Credential::Bearer { .. } => {
                AuthInfo::from_identity(BEARER_IDENTITY, IdentityContext::BearerToken)
            }
        }),
        LuaAuthResult::AuthInfo(info) if info.is_authenticated() => LoginVerdict::Accepted(info),
        // Fail closed: groups without an identity prove nothing.
        LuaAuthResult::AuthInfo(_) => {
            LoginVerdict::Refused(format!("{event} returned an AuthInfo with no identity"))
        }
    })
}

/// The policy error's text with the secret removed (a handler may put the
/// password into its own error message).
fn redact_policy_error(err: &PolicyError, credential: &Credential) -> String {
    let text = err.to_string();
    match credential.secret() {
        Some(secret) => redact(&text, secret),
        None => text,
    }
}
