//! `proxy-server`: a SOCKS5 proxy whose RFC 1929 logins are decided by the
//! Lua event `proxy_server_auth_rfc1929`. Drop-in for KumoMTA's proxy-server.

mod auth;
mod config;
mod http_api;
mod listener;
mod lua_api;
mod metrics;
mod outbound;
mod relay;
mod session;

use anyhow::Context;
use clap::Parser;
use config::ProxyListenerParams;
use listener::ProxyListener;
use lua_api::{ListenerRequests, PROXY_INIT};
use metrics::ProxyMetrics;
use policy::{AaaContext, PolicyLoader, PolicyPool};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long live sessions may drain after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Bound on one call into the policy (auth events).
const POLICY_CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(version, about = "SOCKS5 proxy with Lua-decided RFC 1929 logins")]
struct Cli {
    /// The Lua policy; its proxy_init event defines the listeners.
    #[arg(long, value_name = "FILE.lua", conflicts_with_all = ["listen", "no_splice", "timeout_seconds"])]
    proxy_config: Option<PathBuf>,

    /// Legacy mode: listen here without a policy (no auth). Repeatable.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// Legacy mode: relay with user-space copies instead of splice(2).
    #[arg(long)]
    no_splice: bool,

    /// Legacy mode: handshake and connect timeout in seconds.
    #[arg(long, value_name = "N")]
    timeout_seconds: Option<u64>,

    /// Load and check the policy (running proxy_init), then exit 0 or 1.
    #[arg(long, requires = "proxy_config")]
    validate: bool,

    /// Print metric names, types and help as JSON, then exit.
    #[arg(long)]
    dump_metric_metadata: bool,

    /// Print the OpenAPI document of the HTTP listener, then exit.
    #[arg(long)]
    dump_openapi_spec: bool,

    /// Write diagnostics to files in this directory instead of stderr.
    #[arg(long, value_name = "DIR")]
    diag_log_dir: Option<PathBuf>,

    /// Diagnostic log format.
    #[arg(long, value_enum, default_value = "full")]
    diag_format: daemon::DiagFormat,

    /// A tool instead of the server (`hash-password`).
    #[command(subcommand)]
    tool: Option<daemon::Tool>,
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if let Some(tool) = cli.tool.take() {
        return daemon::run_tool(tool);
    }
    if cli.dump_metric_metadata {
        println!(
            "{}",
            serde_json::to_string_pretty(&ProxyMetrics::metadata()).expect("metadata serializes")
        );
        return std::process::ExitCode::SUCCESS;
    }
    if cli.dump_openapi_spec {
        println!(
            "{}",
            http_api::openapi()
                .to_pretty_json()
                .expect("OpenAPI document serializes")
        );
        return std::process::ExitCode::SUCCESS;
    }
    let identity = daemon::Identity {
        name: "proxy-server",
        log_env_var: "KUMO_PROXY_LOG",
        log_file_name: "proxy-server.log",
    };
    let (format, log_dir) = (cli.diag_format, cli.diag_log_dir.clone());
    daemon::run(&identity, format, log_dir.as_deref(), |set_filter| {
        run(cli, set_filter)
    })
}

/// What the command line asks the proxy to serve.
struct Plan {
    listeners: Vec<ProxyListenerParams>,
    http_listeners: Vec<http_listener::HttpListenerParams>,
    policy: Option<PolicyPool>,
}

fn plan(cli: &Cli) -> anyhow::Result<Plan> {
    if let Some(path) = &cli.proxy_config {
        let requests = Arc::new(ListenerRequests::default());
        let loader = PolicyLoader::new(
            path,
            vec![
                lua_api::registrar(requests.clone()),
                policy::aaa_registrar(AaaContext::new()),
                policy_lib::registrar(policy_lib::PolicyLibrary::new()),
            ],
        );
        let pool = PolicyPool::new(loader, PolicyPool::default_max_idle(), POLICY_CALL_TIMEOUT)?;
        requests.open();
        let init = pool.with_state(call_proxy_init);
        let requested = requests.close();
        init?;
        let listeners = requested.proxy;
        if listeners.is_empty() {
            anyhow::bail!(
                "{}: proxy_init defined no listener (call proxy.start_proxy_listener)",
                path.display()
            );
        }
        return Ok(Plan {
            listeners,
            http_listeners: requested.http,
            policy: Some(pool),
        });
    }
    if cli.listen.is_empty() {
        anyhow::bail!("either --proxy-config FILE.lua or at least one --listen ADDR is required");
    }
    let timeout = Duration::from_secs(cli.timeout_seconds.unwrap_or(60).max(1));
    Ok(Plan {
        listeners: cli
            .listen
            .iter()
            .map(|addr| ProxyListenerParams::legacy(*addr, !cli.no_splice, timeout))
            .collect(),
        http_listeners: Vec::new(),
        policy: None,
    })
}

/// Run the policy's `proxy_init` handler, if any.
fn call_proxy_init(lua: &mlua::Lua) -> anyhow::Result<()> {
    match policy::call_sync(lua, &PROXY_INIT, ()) {
        Ok(Some(())) => Ok(()),
        Ok(None) => anyhow::bail!("the policy has no proxy_init handler"),
        Err(err) => Err(anyhow::anyhow!("proxy_init failed: {err}")),
    }
}

async fn run(cli: Cli, set_log_filter: http_listener::LogFilterSetter) -> anyhow::Result<()> {
    // Handlers exist before any listener logs that it is ready, so a signal
    // sent right after that line is a clean shutdown, not a kill.
    let signals = daemon::ShutdownSignals::install().context("installing signal handlers")?;
    daemon::raise_fd_limit();
    let plan = plan(&cli)?;
    if cli.validate {
        for params in &plan.listeners {
            params.tls_acceptor()?;
        }
        for params in &plan.http_listeners {
            params.tls_acceptor()?;
        }
        println!("policy OK: {} listener(s) defined", plan.listeners.len());
        return Ok(());
    }
    let aaa = plan.policy.as_ref().and_then(AaaContext::of);
    let mut registry = Registry::default();
    let metrics = ProxyMetrics::register(&mut registry);
    let pipes = Arc::new(relay::PipePool::default());
    let mut bound = Vec::new();
    for params in plan.listeners {
        bound
            .push(ProxyListener::bind(params, plan.policy.clone(), &metrics, pipes.clone()).await?);
    }
    let http_listeners = http_api::bind_listeners(
        plan.http_listeners,
        plan.policy.clone(),
        Arc::new(registry),
        set_log_filter,
    )
    .await?;
    let shutdown = CancellationToken::new();
    let sessions = TaskTracker::new();
    let mut accept_loops = Vec::new();
    for listener in bound {
        accept_loops.push(tokio::spawn(
            listener.run(shutdown.clone(), sessions.clone()),
        ));
    }
    for listener in http_listeners {
        accept_loops.push(tokio::spawn(
            listener.run(shutdown.clone(), sessions.clone()),
        ));
    }
    signals.wait().await;
    info!("shutting down: no new connections, draining sessions for up to {SHUTDOWN_GRACE:?}");
    shutdown.cancel();
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = sessions.len(),
            "sessions still open after the grace period; exiting"
        );
    }
    if let Some(aaa) = aaa {
        aaa.close_accounting();
    }
    info!("stopped");
    Ok(())
}
