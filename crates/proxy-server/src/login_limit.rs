//! The login failure limiter as a listener sees it: this process's table
//! ([`aaa::FailureLimiter`]) and, with shared state, the fleet's blocks in
//! Redis. A client blocked by either is refused; a failure is counted in
//! both, so the local table still protects while Redis is unreachable.

use crate::listener::ListenerContext;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// How much longer `ip` is blocked, locally or fleet-wide.
pub async fn blocked_for(ctx: &ListenerContext, ip: IpAddr) -> Option<Duration> {
    let limiter = ctx.failure_limiter.as_ref()?;
    if let Some(local) = limiter.blocked_for(ip, Instant::now().into_std()) {
        return Some(local);
    }
    match &ctx.control.fleet {
        Some(fleet) => fleet.login_blocked(ip).await.flatten(),
        None => None,
    }
}

/// Count a failed login of `ip`; `true` when it blocks the client here or
/// fleet-wide.
pub async fn record_failure(ctx: &ListenerContext, ip: IpAddr) -> bool {
    let Some(limiter) = &ctx.failure_limiter else {
        return false;
    };
    let local = limiter.record_failure(ip, Instant::now().into_std());
    let fleet = match &ctx.control.fleet {
        Some(fleet) => fleet
            .record_failure(ip, &limiter.thresholds)
            .await
            .unwrap_or(false),
        None => false,
    };
    local || fleet
}
