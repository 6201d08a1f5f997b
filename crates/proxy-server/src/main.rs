//! `proxy-server`: a SOCKS5 proxy whose RFC 1929 logins are decided by the
//! Lua event `proxy_server_auth_rfc1929`. Drop-in for KumoMTA's proxy-server.
//! The proxy itself is the library; this file parses flags and signals.

use anyhow::Context;
use clap::Parser;
use http_listener::LogFilterSetter;
use ipnet::IpNet;
use proxy_server::{http_api, metrics::ProxyMetrics, ProxyConfig, ProxyServer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing::info;

#[derive(Debug, Parser)]
#[command(version, about = "SOCKS5 proxy with Lua-decided RFC 1929 logins")]
struct Cli {
    /// The Lua policy; its proxy_init event defines the listeners.
    #[arg(long, value_name = "FILE.lua", conflicts_with_all = ["listen", "no_splice", "timeout_seconds", "allow_destination"])]
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

    /// Legacy mode: exempt this range (IP or CIDR) from the prohibited
    /// destinations (loopback, link-local, ...). Repeatable.
    #[arg(long, value_name = "CIDR", value_parser = parse_range)]
    allow_destination: Vec<IpNet>,

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

fn parse_range(text: &str) -> Result<IpNet, String> {
    proxy_server::destination::parse_ip_range(text)
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if let Some(tool) = cli.tool.take() {
        return daemon::run_tool(tool);
    }
    if cli.dump_metric_metadata {
        let mut metadata = ProxyMetrics::metadata();
        metadata.extend(proxy_server::identity_metrics::IdentityMetrics::metadata());
        println!(
            "{}",
            serde_json::to_string_pretty(&metadata).expect("metadata serializes")
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

/// `set_log_filter` backs the policy's `kumo.set_diagnostic_log_filter`.
fn config(cli: &Cli, set_log_filter: LogFilterSetter) -> anyhow::Result<ProxyConfig> {
    if let Some(path) = &cli.proxy_config {
        let library = policy_lib::PolicyLibrary::with_log_filter(set_log_filter);
        return ProxyConfig::from_policy_with(path, library);
    }
    if cli.listen.is_empty() {
        anyhow::bail!("either --proxy-config FILE.lua or at least one --listen ADDR is required");
    }
    let timeout = Duration::from_secs(cli.timeout_seconds.unwrap_or(60).max(1));
    Ok(ProxyConfig::legacy(
        &cli.listen,
        !cli.no_splice,
        timeout,
        cli.allow_destination.clone(),
    ))
}

async fn run(cli: Cli, set_log_filter: LogFilterSetter) -> anyhow::Result<()> {
    // Handlers exist before any listener logs that it is ready, so a signal
    // sent right after that line is a clean shutdown, not a kill.
    let signals = daemon::ShutdownSignals::install().context("installing signal handlers")?;
    daemon::raise_fd_limit();
    let config = config(&cli, set_log_filter.clone())?;
    if cli.validate {
        config.check_tls()?;
        println!("policy OK: {} listener(s) defined", config.listeners.len());
        return Ok(());
    }
    let server = ProxyServer::bind(config, Some(set_log_filter)).await?;
    let shutdown = daemon::cancel_on_signal(
        signals,
        format!(
            "shutting down: no new connections, draining sessions for up to {:?}",
            proxy_server::SHUTDOWN_GRACE
        ),
    );
    server.run(shutdown).await?;
    info!("stopped");
    Ok(())
}
