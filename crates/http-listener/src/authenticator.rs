//! Deciding credentials: the policy events, behind a per-credential cache.

use crate::credentials::Credential;
use aaa::{redact, AuthInfo, IdentityContext};
use parking_lot::Mutex;
use policy::{Bytes, EventDecl, LuaAuthResult, PolicyError, PolicyPool};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::warn;

/// `http_server_validate_auth_basic(user, password)`; `password` is `nil`
/// when the header had no colon.
pub const HTTP_SERVER_VALIDATE_AUTH_BASIC: EventDecl<(String, Option<Bytes>), LuaAuthResult> =
    EventDecl::new("http_server_validate_auth_basic");

/// `http_server_validate_auth_bearer(token)`.
pub const HTTP_SERVER_VALIDATE_AUTH_BEARER: EventDecl<Bytes, LuaAuthResult> =
    EventDecl::new("http_server_validate_auth_bearer");

/// How long a decided credential is remembered.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// Credentials remembered at once; past it, expired entries are dropped and,
/// if that is not enough, the whole cache is.
pub const AUTH_CACHE_MAX_ENTRIES: usize = 16_384;

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

struct CacheEntry {
    verdict: AuthVerdict,
    epoch: u64,
    expires: Instant,
}

/// Decides credentials with the policy, remembering verdicts for a TTL.
/// Keys are salted SHA-256 hashes (see [`Credential::cache_key`]); the salt
/// is random per process. A config epoch bump makes older verdicts misses.
pub struct Authenticator {
    policy: PolicyPool,
    ttl: Duration,
    salt: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
}

impl Authenticator {
    /// An authenticator calling `policy`, remembering verdicts for `ttl`.
    pub fn new(policy: PolicyPool, ttl: Duration) -> Self {
        let mut salt = [0u8; 32];
        if let Err(err) = getrandom::fill(&mut salt) {
            // The salt only hides cache keys in memory; a fixed one still
            // never stores the password in clear.
            warn!("no random salt for the auth cache: {err}");
        }
        Authenticator {
            policy,
            ttl,
            salt,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The verdict on `credential`, and whether it came from the cache.
    pub async fn authenticate(
        &self,
        credential: &Credential,
    ) -> Result<(AuthVerdict, bool), AuthError> {
        let key = credential.cache_key(&self.salt);
        let epoch = self.policy.epoch();
        let now = Instant::now();
        if let Some(entry) = self.cache.lock().get(&key) {
            if entry.epoch == epoch && entry.expires > now {
                return Ok((entry.verdict.clone(), true));
            }
        }
        let verdict = self.ask_policy(credential).await?;
        self.remember(key, verdict.clone(), epoch, now);
        Ok((verdict, false))
    }

    fn remember(&self, key: [u8; 32], verdict: AuthVerdict, epoch: u64, now: Instant) {
        let mut cache = self.cache.lock();
        if cache.len() >= AUTH_CACHE_MAX_ENTRIES && !cache.contains_key(&key) {
            cache.retain(|_, entry| entry.expires > now);
            if cache.len() >= AUTH_CACHE_MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            key,
            CacheEntry {
                verdict,
                epoch,
                expires: now + self.ttl,
            },
        );
    }

    /// Credentials remembered now.
    pub fn cached(&self) -> usize {
        self.cache.lock().len()
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
