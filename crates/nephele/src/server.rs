//! The mail daemon as a library: what `nephele` runs, and what tests drive
//! in process. [`NepheleConfig::from_policy`] loads the policy and runs its
//! `init` (which defines spools, logs and listeners), [`Nephele::start`]
//! opens the spool, re-queues what it holds and binds every HTTP listener
//! (port 0 picks a free port; the bound addresses are read back), and
//! [`Nephele::run`] serves until a shutdown token is cancelled, then drains
//! requests and deliveries and closes the spool and logs.

use crate::http_api;
use crate::inject::idempotency::IdempotencyStore;
use crate::inject::identity_limits::InjectionIdentityControl;
use crate::inject::render_pool::RenderPool;
use crate::inject::InjectService;
use crate::logs::LocalLogger;
use crate::lua_api::{self, InitRequested, INIT};
use crate::metrics::NepheleMetrics;
use crate::queues::QueueManager;
use http_listener::{HttpListener, LogFilterSetter};
use policy::{AaaContext, PolicyPool};
use prometheus_client::registry::Registry;
use spool::{GroupCommitter, RedbSpool, Spool};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long in-flight requests and delivery attempts may finish after
/// shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Bound on one call into the policy.
pub const POLICY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on loading the spool at start and on closing it at exit.
const SPOOL_IO_TIMEOUT: Duration = Duration::from_secs(120);

/// What the daemon serves: the loaded policy and what its `init` asked for.
pub struct NepheleConfig {
    /// The loaded policy.
    pub policy: PolicyPool,
    /// Spools, logs, listeners and limits defined by `init`.
    pub requested: InitRequested,
    /// Backs the HTTP listeners' `set_diagnostic_log_filter`.
    pub set_log_filter: Option<LogFilterSetter>,
    /// The program to run as render workers (the `nephele` binary, which
    /// sets it), so that `max_render_memory` holds; `None` renders on
    /// threads in this process (see [`RenderPool`]).
    pub render_worker: Option<PathBuf>,
}

impl NepheleConfig {
    /// Load the policy at `path`, run `pre_init` then `init`. A policy that
    /// defines no HTTP listener is an error. `set_log_filter` backs the
    /// policy's `kumo.set_diagnostic_log_filter`.
    pub fn from_policy(
        path: &Path,
        set_log_filter: Option<LogFilterSetter>,
    ) -> anyhow::Result<Self> {
        let library = match &set_log_filter {
            Some(setter) => policy_lib::PolicyLibrary::with_log_filter(setter.clone()),
            None => policy_lib::PolicyLibrary::new(),
        };
        let (policy, requested) = policy_lib::load_policy(
            path,
            &INIT,
            lua_api::registrar,
            library,
            POLICY_CALL_TIMEOUT,
        )?;
        if requested.http.is_empty() {
            anyhow::bail!(
                "{}: init defined no HTTP listener (call kumo.start_http_listener)",
                path.display()
            );
        }
        Ok(NepheleConfig {
            policy,
            requested,
            set_log_filter,
            render_worker: None,
        })
    }

    /// Build every TLS acceptor once, so certificate problems show before
    /// serving (`--validate`); returns a one-line summary.
    pub fn check(&self) -> anyhow::Result<String> {
        for params in &self.requested.http {
            params.tls_acceptor()?;
        }
        let logs = if self.requested.logs.is_some() {
            "on"
        } else {
            "off"
        };
        Ok(format!(
            "policy OK: {} http listener(s), {} spool(s), local logs {logs}",
            self.requested.http.len(),
            self.requested.spools.len(),
        ))
    }
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

/// The spool's commit stage and the queues over it, with every message the
/// spool holds re-queued (from meta records; bodies stay on disk).
struct Storage {
    committer: Arc<GroupCommitter>,
    queues: Arc<QueueManager>,
    /// `Idempotency-Key` records, kept in the spool.
    idempotency: Arc<IdempotencyStore>,
}

impl Storage {
    async fn open(
        config: &NepheleConfig,
        logs: &Arc<LocalLogger>,
        metrics: &Arc<NepheleMetrics>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(spool) = open_spool(&config.requested)? else {
            warn!("no spool is defined (kumo.define_spool); injection is refused");
            return Ok(None);
        };
        let spool = spool as Arc<dyn Spool>;
        let committer = Arc::new(GroupCommitter::start(spool.clone())?);
        let queues = Arc::new(QueueManager::new(
            config.policy.clone(),
            committer.clone(),
            spool.clone(),
            logs.clone(),
            metrics.clone(),
            config.requested.dns.as_ref(),
        )?);
        let limits = config.requested.injection.as_ref();
        let idempotency = Arc::new(IdempotencyStore::for_spool(Some(&*spool), limits)?);
        let messages = queues.requeue_all(spool, SPOOL_IO_TIMEOUT).await?;
        info!(messages, "spool loaded; undelivered messages re-queued");
        queues.start();
        Ok(Some(Storage {
            committer,
            queues,
            idempotency,
        }))
    }
}

/// The daemon with its spool open and every listener bound, ready to serve.
pub struct Nephele {
    listeners: Vec<HttpListener>,
    storage: Option<Storage>,
    logs: Arc<LocalLogger>,
    aaa: Option<Arc<AaaContext>>,
}

impl Nephele {
    /// Open logs and spool, re-queue the spool's messages, bind the HTTP
    /// listeners (each logs its address).
    pub async fn start(config: NepheleConfig) -> anyhow::Result<Self> {
        let logs = Arc::new(match config.requested.logs.clone() {
            Some(params) => LocalLogger::start(params)?,
            None => LocalLogger::disabled(),
        });
        let mut registry = Registry::default();
        let metrics = Arc::new(NepheleMetrics::register(&mut registry));
        let storage = Storage::open(&config, &logs, &metrics).await?;
        let committer = storage.as_ref().map(|s| s.committer.clone());
        let aaa = AaaContext::of(&config.policy);
        NepheleMetrics::register_sampled(
            &mut registry,
            committer.clone(),
            logs.dropped_counter(),
            aaa.as_ref()
                .and_then(|aaa| aaa.accounting())
                .map(|log| log.dropped_counter()),
        );
        let service = Arc::new(InjectService {
            policy: config.policy.clone(),
            spool: committer,
            queues: storage.as_ref().map(|s| s.queues.clone()),
            logs: logs.clone(),
            render: RenderPool::start(
                config.requested.injection.clone().unwrap_or_default(),
                config.render_worker.clone(),
            )
            .await?,
            metrics,
            identity_limits: InjectionIdentityControl::for_policy(&config.policy),
            idempotency: match &storage {
                Some(storage) => storage.idempotency.clone(),
                None => Arc::new(IdempotencyStore::for_spool(None, None)?),
            },
        });
        let listeners = http_api::bind_listeners(
            config.requested.http,
            config.policy,
            Arc::new(registry),
            config.set_log_filter,
            service,
        )
        .await?;
        Ok(Nephele {
            listeners,
            storage,
            logs,
            aaa,
        })
    }

    /// The bound HTTP listener addresses, in configuration order.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .map(HttpListener::local_addr)
            .collect()
    }

    /// Serve until `shutdown` is cancelled; then stop accepting, let
    /// requests and delivery attempts finish for up to [`SHUTDOWN_GRACE`],
    /// and close the spool, the local logs and the accounting log.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let connections = TaskTracker::new();
        let accept_loops: Vec<_> = self
            .listeners
            .into_iter()
            .map(|listener| tokio::spawn(listener.run(shutdown.clone(), connections.clone())))
            .collect();
        shutdown.cancelled().await;
        daemon::drain(accept_loops, &connections, SHUTDOWN_GRACE, "requests").await;
        if let Some(Storage {
            committer, queues, ..
        }) = self.storage
        {
            queues.shutdown(SHUTDOWN_GRACE).await;
            log_commit_stats(committer.stats());
            daemon::close_blocking("the spool", SPOOL_IO_TIMEOUT, move || committer.close()).await;
        }
        let logs = self.logs;
        daemon::close_blocking("the local logs", SHUTDOWN_GRACE, move || logs.close()).await;
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
