//! `nephele`: the mail daemon. An HTTP injection API whose messages carry
//! the authorized identity (`http_auth`) into the policy
//! (`http_message_generated`), a durable redb spool, queues with retries,
//! Maildir delivery and JSON-lines logs.

use anyhow::Context;
use clap::Parser;
use daemon::DiagFormat;
use nephele::http_api;
use nephele::inject::render_pool::RenderPool;
use nephele::inject::InjectService;
use nephele::logs::LocalLogger;
use nephele::lua_api::{self, InitRequested, InitRequests, INIT};
use nephele::metrics::NepheleMetrics;
use nephele::queues::QueueManager;
use policy::{AaaContext, PolicyLoader, PolicyPool};
use prometheus_client::registry::Registry;
use spool::{GroupCommitter, RedbSpool, Spool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long in-flight requests and delivery attempts may finish after
/// SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Bound on one call into the policy.
const POLICY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on loading the spool at start and on closing it at exit.
const SPOOL_IO_TIMEOUT: Duration = Duration::from_secs(120);

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

/// Load the policy and run `pre_init`, then `init`; `set_log_filter` backs
/// the policy's `kumo.set_diagnostic_log_filter`.
fn load(
    path: &std::path::Path,
    set_log_filter: daemon::FilterSetter,
) -> anyhow::Result<(PolicyPool, InitRequested)> {
    let requests = Arc::new(InitRequests::default());
    let library = policy_lib::PolicyLibrary::with_log_filter(set_log_filter);
    let registrars = vec![
        lua_api::registrar(requests.clone()),
        policy::aaa_registrar(policy::AaaContext::new()),
        policy_lib::registrar(library.clone()),
    ];
    let loader = PolicyLoader::new(path, registrars);
    let pool = PolicyPool::new(loader, POLICY_CALL_TIMEOUT)?;
    pool.on_epoch_bump(Arc::new(move |_| library.bump_epoch()));
    requests.open();
    let init = pool.with_state(|lua| {
        policy::run_pre_init(lua)?;
        match policy::call_sync(lua, &INIT, ()) {
            Ok(Some(())) => Ok(()),
            Ok(None) => anyhow::bail!("the policy has no init handler"),
            Err(err) => Err(anyhow::anyhow!("init failed: {err}")),
        }
    });
    let requested = requests.close();
    init?;
    Ok((pool, requested))
}

/// Open the spool `init` defined: data and meta in one database, or two.
fn open_spool(requested: &InitRequested) -> anyhow::Result<Option<Arc<RedbSpool>>> {
    let path = |name: &str| {
        requested
            .spools
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.path.clone())
    };
    for params in &requested.spools {
        if let Some(kind) = params
            .kind
            .as_deref()
            .filter(|k| !k.eq_ignore_ascii_case("redb"))
        {
            info!(spool = %params.name, "spool kind {kind:?} requested; nephele always uses redb");
        }
    }
    let (data, meta) = (path("data"), path("meta"));
    let Some(data_dir) = data.clone().or_else(|| meta.clone()) else {
        return Ok(None);
    };
    let spool = RedbSpool::open(&data_dir, meta.as_deref())?;
    info!(path = %spool.data_path().display(), "spool opened");
    Ok(Some(Arc::new(spool)))
}

async fn run(cli: Cli, set_log_filter: daemon::FilterSetter) -> anyhow::Result<()> {
    daemon::raise_fd_limit();
    let signals = daemon::ShutdownSignals::install().context("installing signal handlers")?;
    let path = cli
        .policy
        .clone()
        .context("--policy FILE.lua is required")?;
    let (policy, requested) = load(&path, set_log_filter.clone())?;
    if requested.http.is_empty() {
        anyhow::bail!(
            "{}: init defined no HTTP listener (call kumo.start_http_listener)",
            path.display()
        );
    }
    for params in &requested.http {
        params.tls_acceptor()?;
    }
    if cli.validate {
        println!(
            "policy OK: {} http listener(s), {} spool(s), local logs {}",
            requested.http.len(),
            requested.spools.len(),
            if requested.logs.is_some() {
                "on"
            } else {
                "off"
            }
        );
        return Ok(());
    }

    let logs = Arc::new(match requested.logs.clone() {
        Some(params) => LocalLogger::start(params)?,
        None => LocalLogger::disabled(),
    });
    let mut registry = Registry::default();
    let metrics = Arc::new(NepheleMetrics::register(&mut registry));
    let spool = open_spool(&requested)?;
    let (committer, queues) = match &spool {
        Some(spool) => {
            let spool = spool.clone() as Arc<dyn Spool>;
            let committer = Arc::new(GroupCommitter::start(spool.clone())?);
            let queues = Arc::new(QueueManager::new(
                policy.clone(),
                committer.clone(),
                spool.clone(),
                logs.clone(),
                metrics.clone(),
                requested.dns.as_ref(),
            )?);
            let messages = queues.requeue_all(spool, SPOOL_IO_TIMEOUT).await?;
            info!(messages, "spool loaded; undelivered messages re-queued");
            queues.start();
            (Some(committer), Some(queues))
        }
        None => {
            warn!("no spool is defined (kumo.define_spool); injection is refused");
            (None, None)
        }
    };

    // Kept to finish the open accounting segment at shutdown.
    let aaa = AaaContext::of(&policy);
    NepheleMetrics::register_sampled(
        &mut registry,
        committer.clone(),
        logs.dropped_counter(),
        aaa.as_ref()
            .and_then(|aaa| aaa.accounting())
            .map(|log| log.dropped_counter()),
    );
    let service = Arc::new(InjectService {
        policy: policy.clone(),
        spool: committer.clone(),
        queues: queues.clone(),
        logs: logs.clone(),
        render: RenderPool::new(requested.injection.clone().unwrap_or_default()),
        metrics,
    });
    let listeners = http_api::bind_listeners(
        requested.http,
        policy,
        Arc::new(registry),
        set_log_filter,
        service,
    )
    .await?;
    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(listener.run(shutdown.clone(), connections.clone())))
        .collect();

    signals.wait().await;
    info!("shutting down: no new connections, finishing requests for up to {SHUTDOWN_GRACE:?}");
    shutdown.cancel();
    daemon::drain(accept_loops, &connections, SHUTDOWN_GRACE, "requests").await;
    if let Some(queues) = &queues {
        queues.shutdown(SHUTDOWN_GRACE).await;
    }
    if let Some(committer) = committer {
        log_commit_stats(committer.stats());
        let closing = tokio::task::spawn_blocking(move || committer.close());
        if tokio::time::timeout(SPOOL_IO_TIMEOUT, closing)
            .await
            .is_err()
        {
            warn!("the spool did not close in time");
        }
    }
    let closing = tokio::task::spawn_blocking(move || logs.close());
    if tokio::time::timeout(SHUTDOWN_GRACE, closing).await.is_err() {
        warn!("the local logs did not close in time");
    }
    if let Some(aaa) = aaa {
        // A segment is a complete zstd frame only once finished.
        let closing = tokio::task::spawn_blocking(move || aaa.close_accounting());
        if tokio::time::timeout(SHUTDOWN_GRACE, closing).await.is_err() {
            warn!("the accounting log did not close in time");
        }
    }
    info!("stopped");
    Ok(())
}

/// How well group commit batched this run (also read by `bench/inject.sh`).
fn log_commit_stats(stats: &spool::CommitStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let commits = stats.commits.load(Relaxed);
    let requests = stats.requests.load(Relaxed);
    info!(
        commits,
        stored = stats.stored.load(Relaxed),
        removed = stats.removed.load(Relaxed),
        store_requests = requests,
        max_store_requests_per_commit = stats.max_requests_per_commit.load(Relaxed),
        "spool commit stats: {:.1} store requests per commit",
        requests as f64 / commits.max(1) as f64
    );
}
