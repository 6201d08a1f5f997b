//! Deciding credentials: the policy events, behind a per-credential cache.

use crate::credentials::Credential;
use aaa::{redact, AuthInfo, IdentityContext};
use policy::{
    AaaContext, Bytes, EventDecl, LoginGeneration, LuaAuthResult, PolicyError, PolicyPool, Verdict,
    VerdictCache, REFUSED_VERDICT_TTL, VERDICT_CACHE_CAPACITY,
};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// `http_server_validate_auth_basic(user, password)`; `password` is `nil`
/// when the header had no colon.
pub const HTTP_SERVER_VALIDATE_AUTH_BASIC: EventDecl<(String, Option<Bytes>), LuaAuthResult> =
    EventDecl::new("http_server_validate_auth_basic");

/// `http_server_validate_auth_bearer(token)`.
pub const HTTP_SERVER_VALIDATE_AUTH_BEARER: EventDecl<Bytes, LuaAuthResult> =
    EventDecl::new("http_server_validate_auth_bearer");

/// How long an accepted credential is remembered (refusals:
/// [`REFUSED_VERDICT_TTL`]).
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// The identity a bearer handler's `true` grants. The token itself is a
/// secret and never becomes an identity; a handler that wants a named
/// identity returns an AuthInfo.
pub const BEARER_IDENTITY: &str = "bearer-token";

/// What the policy decided about a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Valid: these identities and groups are added to the request.
    Accepted(AuthInfo),
    /// Invalid: `401`.
    Refused,
}

/// Why no verdict could be reached (`500`). The message never contains the
/// credential's secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The policy has no handler for the event.
    #[error("the policy has no {event} handler")]
    NoHandler {
        /// The missing event.
        event: &'static str,
    },
    /// The handler raised, timed out, returned a wrong type, or the policy
    /// could not be loaded.
    #[error("{0}")]
    Policy(String),
}

impl Verdict for AuthVerdict {
    fn is_accepted(&self) -> bool {
        matches!(self, AuthVerdict::Accepted(_))
    }
}

/// Decides credentials with the policy, remembering verdicts in a
/// [`VerdictCache`] (salted-hash keys, emptied on a config epoch bump or a
/// credential file reload).
pub struct Authenticator {
    policy: PolicyPool,
    aaa: Option<Arc<AaaContext>>,
    cache: VerdictCache<AuthVerdict>,
}

impl Authenticator {
    /// An authenticator calling `policy`, remembering acceptances for
    /// `ttl` (refusals for at most [`REFUSED_VERDICT_TTL`]); `aaa` tells
    /// it when credential files reload.
    pub fn new(policy: PolicyPool, aaa: Option<Arc<AaaContext>>, ttl: Duration) -> Self {
        Authenticator {
            policy,
            aaa,
            cache: VerdictCache::new(ttl, REFUSED_VERDICT_TTL, VERDICT_CACHE_CAPACITY),
        }
    }

    /// The verdict on `credential`, and whether it came from the cache.
    pub async fn authenticate(
        &self,
        credential: &Credential,
    ) -> Result<(AuthVerdict, bool), AuthError> {
        let generation = LoginGeneration::current(&self.policy, self.aaa.as_deref());
        self.cache
            .get_or_decide(
                generation,
                &credential.cache_fields(),
                self.ask_policy(credential),
            )
            .await
            .map_err(|err| (*err).clone())
    }

    /// The verdict cache, for inspection.
    pub fn cache(&self) -> &VerdictCache<AuthVerdict> {
        &self.cache
    }

    async fn ask_policy(&self, credential: &Credential) -> Result<AuthVerdict, AuthError> {
        let (event, result) = match credential {
            Credential::Basic { user, password } => {
                let password = password.as_ref().map(|p| Bytes(p.expose().to_vec()));
                let event = &HTTP_SERVER_VALIDATE_AUTH_BASIC;
                (
                    event.name,
                    self.policy.call(event, (user.clone(), password)).await,
                )
            }
            Credential::Bearer { token } => {
                let event = &HTTP_SERVER_VALIDATE_AUTH_BEARER;
                let token = Bytes(token.expose().to_vec());
                (event.name, self.policy.call(event, token).await)
            }
        };
        let result = match result {
            Ok(Some(result)) => result,
            Ok(None) => return Err(AuthError::NoHandler { event }),
            Err(err) => return Err(AuthError::Policy(redact_policy_error(&err, credential))),
        };
        Ok(match result {
            LuaAuthResult::Bool(false) => AuthVerdict::Refused,
            LuaAuthResult::Bool(true) => AuthVerdict::Accepted(match credential {
                Credential::Basic { user, .. } => {
                    AuthInfo::from_identity(user.clone(), IdentityContext::HttpBasicAuth)
                }
                Credential::Bearer { .. } => {
                    AuthInfo::from_identity(BEARER_IDENTITY, IdentityContext::BearerToken)
                }
            }),
            LuaAuthResult::AuthInfo(info) if info.is_authenticated() => {
                AuthVerdict::Accepted(AuthInfo {
                    // Only the TCP connection says where a peer is.
                    peer_address: None,
                    ..info
                })
            }
            LuaAuthResult::AuthInfo(_) => {
                // Fail closed: groups without an identity prove nothing.
                warn!(
                    event,
                    user = credential.user().unwrap_or("-"),
                    "handler returned an AuthInfo with no identity; treated as a refusal"
                );
                AuthVerdict::Refused
            }
        })
    }
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
