//! The SOCKS5 proxy as a library: what `proxy-server` runs, and what tests
//! drive in process. [`ProxyConfig`] says what to serve (from a policy's
//! `proxy_init`, or the legacy command line), [`ProxyServer::bind`] binds
//! every listener (port 0 picks a free port; the bound addresses are read
//! back) and [`ProxyServer::run`] serves until a shutdown token is
//! cancelled, then drains. The binary only parses flags and signals.

pub mod admin_api;
pub mod admission;
pub mod auth;
pub mod config;
pub mod destination;
pub mod fleet;
mod fleet_scripts;
pub mod http_api;
pub mod identity_limits;
pub mod identity_metrics;
pub mod listener;
pub mod lua_api;
pub mod metrics;
pub mod outbound;
pub mod relay;
pub mod session;
pub mod sessions;
pub mod shaping;
pub mod tunnel;

use admission::IdentityControl;
use config::ProxyListenerParams;
use destination::OwnListeners;
use http_listener::{HttpListener, HttpListenerParams, LogFilterSetter};
use ipnet::IpNet;
use listener::{ProxyListener, ProxyShared};
use lua_api::PROXY_INIT;
use metrics::ProxyMetrics;
use policy::{AaaContext, PolicyPool};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long live sessions may drain after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Bound on one call into the policy (auth events).
pub const POLICY_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy serves.
pub struct ProxyConfig {
    /// SOCKS listeners.
    pub listeners: Vec<ProxyListenerParams>,
    /// HTTP listeners (metrics, admin).
    pub http_listeners: Vec<HttpListenerParams>,
    /// The loaded policy; `None` in legacy mode (no auth, no ACLs).
    pub policy: Option<PolicyPool>,
    /// Ranges exempted from the default prohibited destinations.
    pub allow_destinations: Vec<IpNet>,
    /// Fleet state in Redis (`proxy.configure_shared_state`).
    pub shared_state: Option<fleet::Fleet>,
}

impl ProxyConfig {
    /// Load the policy at `path` and run `proxy_init`, which defines the
    /// listeners. A policy that defines none is an error.
    pub fn from_policy(path: &Path) -> anyhow::Result<Self> {
        Self::from_policy_with(path, policy_lib::PolicyLibrary::new())
    }

    /// [`ProxyConfig::from_policy`] with the process's policy library (the
    /// binary's holds its log filter setter).
    pub fn from_policy_with(
        path: &Path,
        library: Arc<policy_lib::PolicyLibrary>,
    ) -> anyhow::Result<Self> {
        let (pool, requested) = policy_lib::load_policy(
            path,
            &PROXY_INIT,
            lua_api::registrar,
            library,
            POLICY_CALL_TIMEOUT,
        )?;
        if requested.proxy.is_empty() {
            anyhow::bail!(
                "{}: proxy_init defined no listener (call proxy.start_proxy_listener)",
                path.display()
            );
        }
        Ok(ProxyConfig {
            listeners: requested.proxy,
            http_listeners: requested.http,
            policy: Some(pool),
            allow_destinations: Vec::new(),
            shared_state: requested.shared_state,
        })
    }

    /// Legacy mode (`--listen`): no policy, no auth.
    pub fn legacy(
        listen: &[SocketAddr],
        use_splice: bool,
        timeout: Duration,
        allow_destinations: Vec<IpNet>,
    ) -> Self {
        ProxyConfig {
            listeners: listen
                .iter()
                .map(|addr| ProxyListenerParams::legacy(*addr, use_splice, timeout))
                .collect(),
            http_listeners: Vec::new(),
            policy: None,
            allow_destinations,
            shared_state: None,
        }
    }

    /// Build every TLS acceptor once, so certificate problems show before
    /// serving (`--validate`).
    pub fn check_tls(&self) -> anyhow::Result<()> {
        for params in &self.listeners {
            params.tls_acceptor()?;
        }
        for params in &self.http_listeners {
            params.tls_acceptor()?;
        }
        Ok(())
    }
}

/// The process's per-identity state: limits from the policy (cached per
/// identity, forgotten on a reload), fleet state, metrics, live sessions.
fn identity_control(
    policy: Option<&PolicyPool>,
    fleet: Option<fleet::Fleet>,
    registry: &mut Registry,
) -> Arc<IdentityControl> {
    let metrics = identity_metrics::IdentityMetrics::register(registry);
    let fallbacks = metrics.shared_state_fallbacks.clone();
    let fleet = fleet.map(|fleet| Arc::new(fleet.count_fallbacks_in(fallbacks)));
    let limits = policy.map(identity_limits::LimitsCache::for_policy);
    Arc::new(IdentityControl::new(limits, fleet, metrics))
}

/// Every listener bound, ready to serve.
pub struct ProxyServer {
    proxy: Vec<ProxyListener>,
    http: Vec<HttpListener>,
    aaa: Option<Arc<AaaContext>>,
    control: Arc<IdentityControl>,
}

impl ProxyServer {
    /// Bind the listeners of `config`; each logs its address. The HTTP
    /// listeners' `set_diagnostic_log_filter` uses `set_log_filter`.
    pub async fn bind(
        mut config: ProxyConfig,
        set_log_filter: Option<LogFilterSetter>,
    ) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        let own_listeners = OwnListeners::new();
        let control = identity_control(
            config.policy.as_ref(),
            config.shared_state.take(),
            &mut registry,
        );
        let failure_limiter = aaa::FailureLimiter::new(aaa::DEFAULT_MAX_TRACKED_IPS);
        let shared = ProxyShared {
            policy: config.policy.clone(),
            metrics: ProxyMetrics::register(&mut registry),
            pipes: Arc::new(relay::PipePool::default()),
            failure_limiter: failure_limiter.clone(),
            own_listeners: own_listeners.clone(),
            allow_destinations: config.allow_destinations,
            control: control.clone(),
        };
        let mut proxy = Vec::new();
        for params in config.listeners {
            proxy.push(ProxyListener::bind(params, &shared).await?);
        }
        let http = http_api::bind_listeners(
            config.http_listeners,
            config.policy.clone(),
            Arc::new(registry),
            set_log_filter,
            admin_api::AdminState {
                control: control.clone(),
                failure_limiter,
            },
        )
        .await?;
        let server = ProxyServer {
            proxy,
            http,
            aaa: config.policy.as_ref().and_then(AaaContext::of),
            control,
        };
        own_listeners.set(
            server
                .proxy_addrs()
                .into_iter()
                .chain(server.http_addrs())
                .collect(),
        );
        Ok(server)
    }

    /// The bound SOCKS listener addresses, in configuration order.
    pub fn proxy_addrs(&self) -> Vec<SocketAddr> {
        self.proxy.iter().map(ProxyListener::local_addr).collect()
    }

    /// The bound HTTP listener addresses, in configuration order.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http.iter().map(HttpListener::local_addr).collect()
    }

    /// Serve until `shutdown` is cancelled, then stop accepting and let
    /// live sessions drain for up to [`SHUTDOWN_GRACE`].
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sessions = TaskTracker::new();
        let mut accept_loops = Vec::new();
        if let Some(fleet) = &self.control.fleet {
            tokio::spawn(fleet.clone().run_renewals(shutdown.clone()));
        }
        for listener in self.proxy {
            accept_loops.push(tokio::spawn(
                listener.run(shutdown.clone(), sessions.clone()),
            ));
        }
        for listener in self.http {
            accept_loops.push(tokio::spawn(
                listener.run(shutdown.clone(), sessions.clone()),
            ));
        }
        shutdown.cancelled().await;
        daemon::drain(accept_loops, &sessions, SHUTDOWN_GRACE, "sessions").await;
        if let Some(aaa) = self.aaa {
            // A segment is a complete zstd frame only once finished.
            daemon::close_blocking("the accounting log", SHUTDOWN_GRACE, move || {
                aaa.close_accounting()
            })
            .await;
        }
        Ok(())
    }
}
