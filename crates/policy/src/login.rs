//! The login pipeline both daemons share, from credentials to an identity:
//! the failure limiter (a blocked client is refused without calling the
//! policy), the verdict cache or one policy call, the merge of the
//! policy's AuthInfo with what the connection says, the failure count, the
//! accounting record and the log line. The SOCKS listener (RFC 1929) and
//! the HTTP listener (Basic, Bearer) differ only in the event they call
//! and in how they answer the outcome.

use crate::{AaaContext, LoginGeneration, PolicyPool, Verdict, VerdictCache};
use crate::{REFUSED_VERDICT_TTL, VERDICT_CACHE_CAPACITY};
use aaa::{AuthInfo, Identity, ListenerFailureLimit};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
// tokio's clock, so tests can pause and advance it.
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// What the policy decided about one set of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginVerdict {
    /// Valid: the policy's identities and groups.
    Accepted(AuthInfo),
    /// Invalid; the reason is for the log and never holds a secret.
    Refused(String),
}

impl Verdict for LoginVerdict {
    fn is_accepted(&self) -> bool {
        matches!(self, LoginVerdict::Accepted(_))
    }
}

/// The end of one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Accepted: the connection's AuthInfo merged with the policy's.
    Accepted(AuthInfo),
    /// The policy refused the credentials.
    Refused,
    /// The client IP is blocked by the failure limiter for this long; the
    /// policy was not called.
    Blocked(Duration),
    /// The policy could not decide (no handler, error, timeout); the text
    /// never holds a secret. Counted as a failure: fail closed.
    PolicyFailed(String),
}

/// One login attempt as the listener sees it.
pub struct LoginAttempt<'a> {
    /// The identity the client claimed, for the accounting record (a fixed
    /// name for a bearer token: the token is never an identity).
    pub attempted: Identity,
    /// What the connection alone says: the peer address (always the
    /// connection's, whatever the policy returns) and groups such as
    /// `trusted_ip`.
    pub connection: AuthInfo,
    /// Everything the verdict depends on (credentials and anything else the
    /// event receives); only salted hashes of them are kept.
    pub cache_fields: &'a [&'a [u8]],
}

/// Where a listener counts failures beyond this process (the fleet's
/// shared blocks); this process's [`ListenerFailureLimit`] always counts.
pub trait SharedFailures: Send + Sync {
    /// How much longer `ip` is blocked fleet-wide.
    fn blocked_for(&self, ip: IpAddr) -> impl Future<Output = Option<Duration>> + Send;
    /// Count a failure of `ip`; `true` when that blocks it fleet-wide.
    fn record_failure(
        &self,
        ip: IpAddr,
        limit: &ListenerFailureLimit,
    ) -> impl Future<Output = bool> + Send;
}

/// No shared state: only this process counts.
pub struct LocalOnly;

impl SharedFailures for LocalOnly {
    async fn blocked_for(&self, _ip: IpAddr) -> Option<Duration> {
        None
    }

    async fn record_failure(&self, _ip: IpAddr, _limit: &ListenerFailureLimit) -> bool {
        false
    }
}

/// The failure limiter a login goes through; `None` parts are disabled
/// (no limit configured, or a trusted host).
pub struct LoginThrottle<'a, S: SharedFailures> {
    /// This process's table with the listener's thresholds.
    pub local: Option<&'a ListenerFailureLimit>,
    /// The fleet's, when shared state is configured.
    pub shared: &'a S,
}

impl<S: SharedFailures> LoginThrottle<'_, S> {
    async fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let local = self.local?;
        match local.blocked_for(ip, Instant::now().into_std()) {
            Some(left) => Some(left),
            None => self.shared.blocked_for(ip).await,
        }
    }

    async fn record_failure(&self, ip: IpAddr) -> bool {
        let Some(local) = self.local else {
            return false;
        };
        let blocked_here = local.record_failure(ip, Instant::now().into_std());
        let blocked_fleet = self.shared.record_failure(ip, local).await;
        blocked_here || blocked_fleet
    }
}

/// Counters a listener keeps about logins (the proxy's metrics); every
/// method defaults to nothing.
pub trait LoginObserver: Send + Sync {
    /// Refused without calling the policy: the client IP is blocked.
    fn blocked(&self) {}
    /// A verdict (or a failure to reach one) after `elapsed`.
    fn decided(&self, _accepted: bool, _elapsed: Duration) {}
}

/// Observes nothing.
pub struct Unobserved;

impl LoginObserver for Unobserved {}

/// One listener's logins: its policy, verdict cache and accounting.
pub struct LoginPipeline {
    policy: PolicyPool,
    aaa: Option<Arc<AaaContext>>,
    cache: VerdictCache<LoginVerdict>,
}

impl LoginPipeline {
    /// Logins decided by `policy`, acceptances remembered for `ttl` (`0`
    /// disables the cache), refusals for at most [`REFUSED_VERDICT_TTL`].
    pub fn new(policy: PolicyPool, ttl: Duration) -> Self {
        let aaa = AaaContext::of(&policy);
        LoginPipeline {
            policy,
            aaa,
            cache: VerdictCache::new(ttl, REFUSED_VERDICT_TTL, VERDICT_CACHE_CAPACITY),
        }
    }

    /// The policy logins are decided by.
    pub fn policy(&self) -> &PolicyPool {
        &self.policy
    }

    /// The verdict cache, for inspection.
    pub fn cache(&self) -> &VerdictCache<LoginVerdict> {
        &self.cache
    }

    /// Run one login: `ask` makes the policy call, made only when the
    /// cache has no verdict (`Err` is a failure to decide, never cached).
    /// Every attempt, blocked or decided, goes to the accounting log.
    pub async fn login<S, F>(
        &self,
        attempt: LoginAttempt<'_>,
        throttle: &LoginThrottle<'_, S>,
        observer: &dyn LoginObserver,
        ask: impl FnOnce() -> F,
    ) -> LoginOutcome
    where
        S: SharedFailures,
        F: Future<Output = Result<LoginVerdict, String>>,
    {
        let outcome = self.decide(&attempt, throttle, observer, ask).await;
        if let Some(aaa) = &self.aaa {
            let (accepted, record) = match &outcome {
                LoginOutcome::Accepted(info) => (true, info),
                _ => (false, &attempt.connection),
            };
            aaa.log_authentication(&attempt.attempted, accepted, record);
        }
        outcome
    }

    async fn decide<S, F>(
        &self,
        attempt: &LoginAttempt<'_>,
        throttle: &LoginThrottle<'_, S>,
        observer: &dyn LoginObserver,
        ask: impl FnOnce() -> F,
    ) -> LoginOutcome
    where
        S: SharedFailures,
        F: Future<Output = Result<LoginVerdict, String>>,
    {
        let ip = attempt.connection.peer_address;
        // The log fields are spelled out only for lines the filter keeps.
        let peer = || ip.map_or_else(String::new, |ip| ip.to_string());
        // Escaped: a user name is client bytes and must not forge log lines.
        let user = || attempt.attempted.identity.escape_debug().to_string();
        if let Some(left) = match ip {
            Some(ip) => throttle.blocked_for(ip).await,
            None => None,
        } {
            observer.blocked();
            info!(peer = %peer(), user = user(), remaining = ?left, "login refused without calling the policy: client IP is blocked");
            return LoginOutcome::Blocked(left);
        }
        let started = Instant::now();
        let generation = LoginGeneration::current(&self.policy, self.aaa.as_deref());
        let decided = self
            .cache
            .get_or_decide(generation, attempt.cache_fields, ask)
            .await;
        let outcome = match decided {
            Ok((LoginVerdict::Accepted(info), cached)) => {
                debug!(peer = %peer(), user = user(), cached, "login accepted");
                let mut merged = attempt.connection.clone();
                // Only the connection says where a peer is.
                merged.merge(AuthInfo {
                    peer_address: None,
                    ..info
                });
                return finish(observer, started, LoginOutcome::Accepted(merged));
            }
            Ok((LoginVerdict::Refused(reason), cached)) => {
                info!(peer = %peer(), user = user(), reason, cached, "login refused");
                LoginOutcome::Refused
            }
            Err(reason) => {
                warn!(peer = %peer(), user = user(), error = %reason, "authentication handler failed; login refused");
                LoginOutcome::PolicyFailed((*reason).clone())
            }
        };
        if let Some(ip) = ip {
            if throttle.record_failure(ip).await {
                warn!(client = %ip, "client IP blocked after repeated login failures");
            }
        }
        finish(observer, started, outcome)
    }
}

fn finish(observer: &dyn LoginObserver, started: Instant, outcome: LoginOutcome) -> LoginOutcome {
    observer.decided(
        matches!(outcome, LoginOutcome::Accepted(_)),
        started.elapsed(),
    );
    outcome
}
