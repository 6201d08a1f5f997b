//! A bound SOCKS5 listener and its accept loop.

use crate::admission::IdentityControl;
use crate::config::ProxyListenerParams;
use crate::destination::{DestinationGuard, OwnListeners};
use crate::metrics::{ListenerMetrics, ProxyMetrics};
use crate::relay::{BufferPool, PipePool};
use crate::session::serve_client;
use aaa::{FailureLimiter, ListenerFailureLimit};
use anyhow::Context;
use ipnet::IpNet;
use policy::{AaaContext, LoginPipeline, PolicyPool};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

/// What every session of one listener shares.
pub struct ListenerContext {
    pub params: ProxyListenerParams,
    /// `None` in legacy mode: no policy, so no RFC 1929.
    pub policy: Option<PolicyPool>,
    pub metrics: ListenerMetrics,
    pub pipes: Arc<PipePool>,
    /// Copy buffers for plain-TCP relays without splice.
    pub buffers: BufferPool,
    /// Per-client login failure limit (the process's table, this
    /// listener's thresholds); `None` when disabled.
    pub failure_limiter: Option<ListenerFailureLimit>,
    /// Which resolved addresses CONNECT may reach.
    pub destinations: DestinationGuard,
    /// Set when clients must speak TLS first.
    pub tls: Option<tls::TlsAcceptor>,
    /// `kumo.aaa`'s state: CONNECT/BIND authorization and accounting;
    /// `None` in legacy mode (no policy, nothing checked).
    pub aaa: Option<Arc<AaaContext>>,
    /// RFC 1929 logins with their verdict cache (`auth_cache_ttl`);
    /// `None` in legacy mode.
    pub logins: Option<LoginPipeline>,
    /// The bound `ip:port`, as metrics and records name the listener.
    pub listener: Arc<str>,
    /// Per-identity limits, counts, metrics and the live-session registry.
    pub control: Arc<IdentityControl>,
}

/// What every SOCKS listener of the process shares.
pub struct ProxyShared {
    /// `None` in legacy mode.
    pub policy: Option<PolicyPool>,
    pub metrics: ProxyMetrics,
    pub pipes: Arc<PipePool>,
    /// One login failure table for all SOCKS listeners.
    pub failure_limiter: Arc<FailureLimiter>,
    /// The process's listening addresses, refused as destinations.
    pub own_listeners: Arc<OwnListeners>,
    /// Ranges exempted from the default prohibited destinations
    /// (legacy mode's `--allow-destination`).
    pub allow_destinations: Vec<IpNet>,
    /// Per-identity limits and the live sessions, process-wide.
    pub control: Arc<IdentityControl>,
}

/// A bound listener, ready to run.
pub struct ProxyListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    ctx: Arc<ListenerContext>,
    slots: Arc<Semaphore>,
    refusal_log: daemon::LogThrottle,
}

impl ProxyListener {
    /// Bind the listener and log its real address.
    pub async fn bind(params: ProxyListenerParams, shared: &ProxyShared) -> anyhow::Result<Self> {
        let tls = params.tls_acceptor()?;
        let listener = crate::outbound::tuned_listener(params.listen, &params.tcp_keepalive)
            .with_context(|| format!("binding proxy listener {}", params.listen))?;
        let local_addr = listener.local_addr()?;
        info!(tls = tls.is_some(), "proxy listener on {local_addr}");
        let slots = Arc::new(Semaphore::new(params.max_connections));
        let failure_limiter = params.auth_failure_limit.limiter(&shared.failure_limiter);
        let destinations = DestinationGuard::new(
            params.prohibited_destinations.as_deref(),
            shared.allow_destinations.clone(),
            shared.own_listeners.clone(),
        );
        let policy = shared.policy.clone();
        let aaa = policy.as_ref().and_then(AaaContext::of);
        let ctx = Arc::new(ListenerContext {
            logins: policy
                .clone()
                .map(|policy| LoginPipeline::new(policy, params.auth_cache_ttl)),
            aaa,
            failure_limiter,
            destinations,
            tls,
            buffers: BufferPool::default(),
            params,
            policy,
            metrics: shared.metrics.for_listener(&local_addr.to_string()),
            pipes: shared.pipes.clone(),
            listener: local_addr.to_string().into(),
            control: shared.control.clone(),
        });
        Ok(ProxyListener {
            listener,
            local_addr,
            ctx,
            slots,
            refusal_log: daemon::LogThrottle::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accept clients until `shutdown` is cancelled; sessions are spawned on
    /// `sessions` so the caller can wait for them to drain.
    pub async fn run(self, shutdown: CancellationToken, sessions: TaskTracker) {
        let mut backoff = daemon::AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (client, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    backoff.after_error(self.local_addr, &err).await;
                    continue;
                }
            };
            self.ctx.metrics.connections_accepted.inc();
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.ctx.metrics.connections_rejected.inc();
                if let Some(held_back) = self.refusal_log.allow() {
                    warn!(peer = %peer, limit = self.ctx.params.max_connections, held_back, "max_connections reached; closing new client (held_back: refusals not logged in the last second)");
                }
                drop(client);
                continue;
            };
            let ctx = self.ctx.clone();
            let local = self.local_addr;
            // The session module's target: the span only labels session
            // lines, so a filter that shows none of them (the listener's
            // own lines aside) does not pay for one per client.
            let span =
                tracing::info_span!(target: "proxy_server::session", "session", peer = %peer);
            sessions.spawn(
                async move {
                    ctx.metrics.active_connections.inc();
                    serve_client(client, peer, local, &ctx).await;
                    ctx.metrics.active_connections.dec();
                    drop(slot);
                }
                .instrument(span),
            );
        }
        debug!(listener = %self.local_addr, "listener stopped accepting");
    }
}
