//! `nephele`: the mail daemon. An HTTP injection API whose messages carry
//! the authorized identity (`http_auth`) into the policy
//! (`http_message_generated`), a durable redb spool, queues with retries,
//! Maildir and SMTP delivery and JSON-lines logs. The daemon itself is the
//! library ([`nephele::server`]); this file parses flags and signals.

use anyhow::Context;
use clap::Parser;
use daemon::DiagFormat;
use nephele::http_api;
use nephele::inject::render_worker;
use nephele::server::{Nephele, NepheleConfig, SHUTDOWN_GRACE};
use std::path::PathBuf;
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Mail daemon with a Lua-scripted HTTP injection API",
    subcommand_negates_reqs = true
)]
struct Cli {
    /// The Lua policy; its init event defines spools, logs and listeners.
    #[arg(
        long,
        value_name = "FILE.lua",
        required_unless_present_any = ["dump_openapi_spec", "dump_metric_metadata"]
    )]
    policy: Option<PathBuf>,

    /// Load and check the policy (running init), then exit 0 or 1.
    #[arg(long, requires = "policy")]
    validate: bool,

    /// Print the HTTP listener's OpenAPI document, then exit.
    #[arg(long)]
    dump_openapi_spec: bool,

    /// Print metric names, types and help as JSON, then exit.
    #[arg(long)]
    dump_metric_metadata: bool,

    /// Write diagnostics to files in this directory instead of stderr.
    #[arg(long, value_name = "DIR")]
    diag_log_dir: Option<PathBuf>,

    /// Diagnostic log format.
    #[arg(long, value_enum, default_value = "full")]
    diag_format: DiagFormat,

    /// A tool instead of the server (`hash-password`).
    #[command(subcommand)]
    tool: Option<daemon::Tool>,
}

fn main() -> std::process::ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == render_worker::SUBCOMMAND)
    {
        return render_worker::worker_main();
    }
    let mut cli = Cli::parse();
    if let Some(tool) = cli.tool.take() {
        return daemon::run_tool(tool);
    }
    if cli.dump_metric_metadata {
        let metadata = nephele::metrics::NepheleMetrics::metadata();
        println!(
            "{}",
            serde_json::to_string_pretty(&metadata).expect("metadata serializes")
        );
        return std::process::ExitCode::SUCCESS;
    }
    if cli.dump_openapi_spec {
        match http_api::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                return std::process::ExitCode::SUCCESS;
            }
            Err(err) => {
                eprintln!("nephele: {err}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let identity = daemon::Identity {
        name: "nephele",
        log_env_var: "NEPHELE_LOG",
        log_file_name: "nephele.log",
    };
    let (format, log_dir) = (cli.diag_format, cli.diag_log_dir.clone());
    daemon::run(&identity, format, log_dir.as_deref(), |set_filter| {
        run(cli, set_filter)
    })
}

async fn run(cli: Cli, set_log_filter: daemon::FilterSetter) -> anyhow::Result<()> {
    // Handlers exist before any listener logs that it is ready, so a signal
    // sent right after that line is a clean shutdown, not a kill.
    let signals = daemon::ShutdownSignals::install().context("installing signal handlers")?;
    daemon::raise_fd_limit();
    let path = cli.policy.context("--policy FILE.lua is required")?;
    let mut config = NepheleConfig::from_policy(&path, Some(set_log_filter))?;
    config.render_worker = Some(render_worker::SELF_EXE.into());
    if cli.validate {
        println!("{}", config.check()?);
        return Ok(());
    }
    let server = Nephele::start(config).await?;
    let shutdown = daemon::cancel_on_signal(
        signals,
        format!(
            "shutting down: no new connections, finishing requests for up to {SHUTDOWN_GRACE:?}"
        ),
    );
    server.run(shutdown).await?;
    info!("stopped");
    Ok(())
}
