//! Binding a listener, its accept loop (bounded by `max_connections`) and
//! the router every connection is served by.

use crate::access::check_access;
use crate::authenticator::AUTH_CACHE_TTL;
use crate::endpoints;
use crate::params::HttpListenerParams;
use aaa::{AclMap, FailureLimiter, ListenerFailureLimit};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use policy::{AaaContext, LoginPipeline, PolicyPool};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, info, warn, Instrument};

/// Sets the diagnostic log filter (`EnvFilter` syntax); an error for a
/// filter that does not parse.
pub type LogFilterSetter = Arc<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// What every HTTP listener of a process shares, provided by the binary.
pub struct HttpServices {
    /// The loaded policy: auth events, and the reload endpoint.
    pub policy: PolicyPool,
    /// The process's metrics, exposed on `/metrics` and `/metrics.json`.
    pub registry: Arc<Registry>,
    /// Backs `set_diagnostic_log_filter`; `None` answers `501`.
    pub log_filter: Option<LogFilterSetter>,
    /// The ACLs requests are checked against.
    pub acl: Arc<AclMap>,
    /// The OpenAPI document served on `/api-docs/openapi.json`.
    pub openapi: utoipa::openapi::OpenApi,
    /// The login failure limiter every HTTP listener of the process shares.
    pub failure_limiter: Arc<FailureLimiter>,
}

impl HttpServices {
    /// Services checked against the built-in default ACL map.
    pub fn with_default_acl(
        policy: PolicyPool,
        registry: Arc<Registry>,
        log_filter: Option<LogFilterSetter>,
        openapi: utoipa::openapi::OpenApi,
    ) -> Self {
        HttpServices {
            policy,
            registry,
            log_filter,
            acl: Arc::new(AclMap::default_map().clone()),
            openapi,
            failure_limiter: FailureLimiter::new(aaa::DEFAULT_MAX_TRACKED_IPS),
        }
    }
}

/// One listener's state, handed to its middleware and handlers.
pub struct ListenerState {
    /// The shared services.
    pub services: Arc<HttpServices>,
    /// The listener's parameters.
    pub params: HttpListenerParams,
    /// The bound address (the `L` of its resource names).
    pub local_addr: SocketAddr,
    /// Decides credentials: limiter, verdict cache, policy, accounting.
    pub logins: LoginPipeline,
    /// Per-IP failed-login limit; `None` when disabled.
    pub failure_limiter: Option<ListenerFailureLimit>,
    /// `kumo.aaa`'s state when the binary installed it: ACLs come from
    /// `get_acl_definition` (falling back to `services.acl`), decisions are
    /// cached and accounted. `None`: `services.acl` alone decides.
    pub aaa: Option<Arc<AaaContext>>,
}

/// The TCP facts of a request's connection, put into every request's
/// extensions. The peer address comes from here, never from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's bound address.
    pub local: SocketAddr,
}

/// A bound HTTP listener, ready to run.
pub struct HttpListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    slots: Arc<Semaphore>,
    max_connections: usize,
    header_timeout: Duration,
    tls: Option<tls::TlsAcceptor>,
    refusal_log: daemon::LogThrottle,
}

impl HttpListener {
    /// Bind `params.listen` and log `http listener on ADDR`. `extra_routes`
    /// are the binary's own endpoints; they get the same access control as
    /// the common ones.
    pub async fn bind(
        params: HttpListenerParams,
        services: Arc<HttpServices>,
        extra_routes: Router,
    ) -> anyhow::Result<Self> {
        params.validate()?;
        let tls = params.tls_acceptor()?;
        let listener = TcpListener::bind(params.listen)
            .await
            .with_context(|| format!("binding http listener {}", params.listen))?;
        let local_addr = listener.local_addr()?;
        info!(tls = tls.is_some(), "http listener on {local_addr}");
        let max_connections = params.max_connections;
        let header_timeout = params.header_timeout;
        let state = Arc::new(ListenerState::new(params, services, local_addr));
        Ok(HttpListener {
            listener,
            local_addr,
            router: build_router(state, extra_routes),
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            header_timeout,
            tls,
            refusal_log: daemon::LogThrottle::default(),
        })
    }

    /// Bind one listener per entry of `requested`, all sharing `services`;
    /// `extra_routes` builds each one's copy of the binary's endpoints.
    pub async fn bind_all(
        requested: Vec<HttpListenerParams>,
        services: HttpServices,
        extra_routes: impl Fn() -> Router,
    ) -> anyhow::Result<Vec<Self>> {
        let services = Arc::new(services);
        let mut bound = Vec::with_capacity(requested.len());
        for params in requested {
            bound.push(HttpListener::bind(params, services.clone(), extra_routes()).await?);
        }
        Ok(bound)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` is cancelled; open connections then finish
    /// their current request and close. Connection tasks run on
    /// `connections` so the caller can wait for them.
    pub async fn run(self, shutdown: CancellationToken, connections: TaskTracker) {
        let mut backoff = daemon::AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    backoff.after_error(self.local_addr, &err).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                if let Some(held_back) = self.refusal_log.allow() {
                    warn!(peer = %peer, limit = self.max_connections, held_back, "http max_connections reached; closing new connection (held_back: refusals not logged in the last second)");
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let info = ConnectionInfo {
                peer,
                local: self.local_addr,
            };
            let router = self.router.clone();
            let shutdown = shutdown.clone();
            let tls = self.tls.clone();
            let header_timeout = self.header_timeout;
            connections.spawn(
                async move {
                    match tls {
                        None => {
                            serve_connection(stream, info, router, header_timeout, shutdown).await
                        }
                        Some(acceptor) => {
                            // Bounded like the headers: a client that opens
                            // and stalls must not hold a connection slot.
                            match tokio::time::timeout(header_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => {
                                    serve_connection(stream, info, router, header_timeout, shutdown)
                                        .await
                                }
                                Ok(Err(err)) => debug!(error = %err, "TLS handshake failed"),
                                Err(_) => debug!("TLS handshake timed out"),
                            }
                        }
                    }
                    drop(slot);
                }
                .instrument(tracing::info_span!("http", peer = %peer)),
            );
        }
        debug!(listener = %self.local_addr, "http listener stopped accepting");
    }
}

async fn serve_connection<S>(
    stream: S,
    info: ConnectionInfo,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(info);
        router.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        debug!(error = %err, "http connection ended with an error");
    }
}

impl ListenerState {
    /// The state of a listener bound on `local_addr`.
    pub fn new(
        params: HttpListenerParams,
        services: Arc<HttpServices>,
        local_addr: SocketAddr,
    ) -> Self {
        let failure_limiter = params.auth_failure_limit.limiter(&services.failure_limiter);
        let aaa = AaaContext::of(&services.policy);
        ListenerState {
            logins: LoginPipeline::new(services.policy.clone(), AUTH_CACHE_TTL),
            aaa,
            services,
            params,
            local_addr,
            failure_limiter,
        }
    }
}

/// The common endpoints merged with `extra_routes`, behind the access
/// middleware; body limit (after decompression) and request timeout around
/// everything. Paths that match no route answer `404` without access checks.
pub fn build_router(state: Arc<ListenerState>, extra_routes: Router) -> Router {
    let limit = state.params.request_body_limit;
    let request_timeout = state.params.request_timeout;
    endpoints::common_routes(state.clone())
        .merge(extra_routes)
        .route_layer(axum::middleware::from_fn_with_state(state, check_access))
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(RequestDecompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
}
