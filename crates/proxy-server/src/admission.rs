//! Admitting a CONNECT under its identity's limits: the policy's limits
//! (cached), the connect rate and session count (fleet-wide through
//! [`Fleet`] when configured, else, or while Redis is unreachable, this
//! proxy's own counts), and the identity's bandwidth buckets. The
//! [`Admission`] a tunnel holds gives its slot back when dropped.

use crate::fleet::{Fleet, Lease};
use crate::identity_limits::{ConnectRate, IdentityLimits, LimitsCache};
use crate::identity_metrics::IdentityMetrics;
use crate::sessions::SessionRegistry;
use crate::shaping::TokenBucket;
use aaa::AuthInfo;
use parking_lot::Mutex;
use policy::{FixedWindow, PolicyPool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// Identities with local state kept at most before idle ones (no live
/// tunnel) are swept.
pub const MAX_LOCAL_IDENTITIES: usize = 65_536;

/// What the proxy knows per identity, process-wide: limits, local counts,
/// fleet state, metrics and the live-session registry. One per process,
/// shared by the listeners and the HTTP admin API.
pub struct IdentityControl {
    /// The policy's limits per identity; `None` in legacy mode.
    pub limits: Option<LimitsCache>,
    /// Shared state in Redis, when `configure_shared_state` was called.
    pub fleet: Option<Arc<Fleet>>,
    /// Per-identity metrics.
    pub metrics: IdentityMetrics,
    /// Every live tunnel.
    pub sessions: Arc<SessionRegistry>,
    local: Mutex<HashMap<String, Arc<LocalIdentity>>>,
    /// Where fixed rate windows are counted from (tokio's clock).
    anchor: Instant,
}

/// This proxy's own counts for one identity.
#[derive(Default)]
struct LocalIdentity {
    sessions: AtomicU32,
    /// CONNECTs in the current rate window.
    window: FixedWindow,
    /// client→destination and destination→client buckets.
    buckets: Mutex<Option<(Arc<TokenBucket>, Arc<TokenBucket>)>>,
}

/// Why a CONNECT was refused before connecting.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("identity {identity:?} is at max_sessions ({max})")]
    MaxSessions { identity: String, max: u32 },
    #[error("identity {identity:?} is past max_connect_rate ({count} per {period:?})")]
    ConnectRate {
        identity: String,
        count: u32,
        period: std::time::Duration,
    },
    #[error("proxy_server_get_identity_limits failed for {identity:?}: {message}")]
    Policy { identity: String, message: String },
}

impl Refusal {
    /// The limit's name (metric label), or `None` for a policy error.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Refusal::MaxSessions { .. } => Some("max_sessions"),
            Refusal::ConnectRate { .. } => Some("max_connect_rate"),
            Refusal::Policy { .. } => None,
        }
    }
}

/// A tunnel's place under its identity's limits; dropping it frees the
/// session slot (locally at once, in Redis off the caller's path).
#[derive(Default)]
pub struct Admission {
    /// The identity counted, if the tunnel has a login.
    pub identity: Option<String>,
    /// Its bandwidth buckets (client→destination, destination→client).
    pub buckets: Option<(Arc<TokenBucket>, Arc<TokenBucket>)>,
    local: Option<Arc<LocalIdentity>>,
    lease: Option<(Arc<Fleet>, Lease)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(local) = self.local.take() {
            local.sessions.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some((fleet, lease)) = self.lease.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { fleet.release(lease).await });
            }
        }
    }
}

impl IdentityControl {
    /// Fresh state; `limits` is `None` in legacy mode.
    pub fn new(
        limits: Option<LimitsCache>,
        fleet: Option<Arc<Fleet>>,
        metrics: IdentityMetrics,
    ) -> Self {
        IdentityControl {
            limits,
            fleet,
            metrics,
            sessions: Arc::new(SessionRegistry::default()),
            local: Mutex::new(HashMap::new()),
            anchor: Instant::now(),
        }
    }

    fn local(&self, identity: &str) -> Arc<LocalIdentity> {
        let mut local = self.local.lock();
        if let Some(entry) = local.get(identity) {
            return entry.clone();
        }
        if local.len() >= MAX_LOCAL_IDENTITIES {
            // Keep identities with a live tunnel (its admission holds the
            // entry); idle ones lose only their local rate window.
            local.retain(|_, entry| Arc::strong_count(entry) > 1);
        }
        local.entry(identity.to_owned()).or_default().clone()
    }

    /// Admit a CONNECT of `auth` (a tunnel without a login is not limited).
    pub async fn admit(&self, policy: &PolicyPool, auth: &AuthInfo) -> Result<Admission, Refusal> {
        let (Some(cache), Some(first)) = (&self.limits, auth.first_identity()) else {
            return Ok(Admission::default());
        };
        let identity = first.identity.clone();
        let limits = match cache
            .get(
                policy,
                &crate::identity_limits::PROXY_SERVER_GET_IDENTITY_LIMITS,
                auth,
            )
            .await
        {
            Ok(limits) => limits,
            Err(err) => {
                return Err(Refusal::Policy {
                    identity,
                    message: err.to_string(),
                })
            }
        };
        let local = self.local(&identity);
        let Some(limits) = limits else {
            local.sessions.fetch_add(1, Ordering::AcqRel);
            return Ok(Admission {
                identity: Some(identity),
                buckets: None,
                local: Some(local),
                lease: None,
            });
        };
        if let Some(rate) = &limits.max_connect_rate {
            self.check_rate(&identity, &local, rate).await?;
        }
        let lease = self.take_session(&identity, &local, &limits).await?;
        Ok(Admission {
            buckets: limits.max_bandwidth.map(|rate| buckets(&local, rate)),
            identity: Some(identity),
            local: Some(local),
            lease,
        })
    }

    async fn check_rate(
        &self,
        identity: &str,
        local: &LocalIdentity,
        rate: &ConnectRate,
    ) -> Result<(), Refusal> {
        let fleet = match &self.fleet {
            // Boxed: Redis state would otherwise enlarge every handshake.
            Some(fleet) => Box::pin(fleet.connect_allowed(identity, rate)).await,
            None => None,
        };
        let allowed = fleet.unwrap_or_else(|| {
            local
                .window
                .take(rate.count, rate.period, self.anchor.elapsed(), 1)
                .is_ok()
        });
        if allowed {
            return Ok(());
        }
        Err(Refusal::ConnectRate {
            identity: identity.to_owned(),
            count: rate.count,
            period: rate.period,
        })
    }

    /// Count the session locally (always: the fallback needs every local
    /// tunnel) and take a lease fleet-wide when shared state is on.
    async fn take_session(
        &self,
        identity: &str,
        local: &LocalIdentity,
        limits: &IdentityLimits,
    ) -> Result<Option<(Arc<Fleet>, Lease)>, Refusal> {
        let refused = |max| Refusal::MaxSessions {
            identity: identity.to_owned(),
            max,
        };
        let Some(max) = limits.max_sessions else {
            local.sessions.fetch_add(1, Ordering::AcqRel);
            return Ok(None);
        };
        if let Some(fleet) = &self.fleet {
            match Box::pin(fleet.acquire_session(identity, max)).await {
                Some(Some(lease)) => {
                    local.sessions.fetch_add(1, Ordering::AcqRel);
                    return Ok(Some((fleet.clone(), lease)));
                }
                Some(None) => return Err(refused(max)),
                None => {}
            }
        }
        local
            .sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| None)
            .map_err(|_| refused(max))
    }
}

/// The identity's buckets at `rate`, made on first use and shared by its
/// tunnels; a changed limit applies to the existing buckets.
fn buckets(local: &LocalIdentity, rate: u64) -> (Arc<TokenBucket>, Arc<TokenBucket>) {
    let mut buckets = local.buckets.lock();
    let pair = buckets.get_or_insert_with(|| {
        (
            Arc::new(TokenBucket::new(rate)),
            Arc::new(TokenBucket::new(rate)),
        )
    });
    if pair.0.rate() != rate {
        pair.0.set_rate(rate);
        pair.1.set_rate(rate);
    }
    pair.clone()
}
