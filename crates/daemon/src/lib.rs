//! Process plumbing a server binary needs before and after its real work.
//!
//! It owns diagnostic logging (a filter read from an environment variable
//! the binary names, changeable at run time, four formats, stderr or files),
//! waiting for SIGINT/SIGTERM, raising the open-files limit, and the
//! subcommands both binaries share ([`Tool`]: `hash-password`). It knows
//! nothing of policies, protocols or what the binary serves.

mod hash_password;

pub use hash_password::{run_tool, HashPasswordArgs, Tool};

use clap::ValueEnum;
use std::path::Path;
use std::sync::Arc;
use tracing::{info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// `--diag-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DiagFormat {
    /// tracing's default single-line format.
    Full,
    /// Shorter single lines.
    Compact,
    /// Multi-line, for people.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Changes the log filter of the running process (`EnvFilter` syntax).
pub type FilterSetter = Arc<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// What [`init_logging`] returns: keep `guard` alive until exit (it flushes
/// file output); `set_filter` backs the admin endpoint that changes the
/// filter.
pub struct Logging {
    /// Flushes file output when dropped.
    pub guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    /// Replaces the filter.
    pub set_filter: FilterSetter,
}

/// Install the global subscriber: filter from `env_var` (default `info`),
/// to stderr, or to daily files `file_name.DATE` in `log_dir`.
pub fn init_logging(
    env_var: &str,
    file_name: &str,
    format: DiagFormat,
    log_dir: Option<&Path>,
) -> anyhow::Result<Logging> {
    let filter = EnvFilter::try_from_env(env_var).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = log_dir.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let appender = tracing_appender::rolling::daily(dir, file_name);
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(writer),
                Some(guard),
            )
        }
        None => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            None,
        ),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt: Box<dyn Layer<_> + Send + Sync> = match format {
        DiagFormat::Full => fmt.boxed(),
        DiagFormat::Compact => fmt.compact().boxed(),
        DiagFormat::Pretty => fmt.pretty().boxed(),
        DiagFormat::Json => fmt.json().boxed(),
    };
    Registry::default()
        .with(filter)
        .with(fmt)
        .try_init()
        .map_err(|err| anyhow::anyhow!("installing the log subscriber: {err}"))?;
    let set_filter: FilterSetter = Arc::new(move |text: &str| {
        let filter = EnvFilter::try_new(text)?;
        handle.reload(filter)?;
        Ok(())
    });
    Ok(Logging { guard, set_filter })
}

/// How a server binary names itself for [`run`].
pub struct Identity {
    /// Prefix of the messages printed to stderr, e.g. `nephele`.
    pub name: &'static str,
    /// The environment variable holding the log filter.
    pub log_env_var: &'static str,
    /// Base name of the daily log files under `--diag-log-dir`.
    pub log_file_name: &'static str,
}

/// The common life of a server binary: install logging, start a
/// multi-threaded tokio runtime, run `serve` on it, and turn the outcome
/// into the exit code. A failure is logged and also printed to stderr
/// (prefixed with the binary's name), since logs may go to files.
pub fn run<F, Fut>(
    identity: &Identity,
    format: DiagFormat,
    log_dir: Option<&Path>,
    serve: F,
) -> std::process::ExitCode
where
    F: FnOnce(FilterSetter) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let name = identity.name;
    let logging = match init_logging(
        identity.log_env_var,
        identity.log_file_name,
        format,
        log_dir,
    ) {
        Ok(logging) => logging,
        Err(err) => {
            eprintln!("{name}: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{name}: starting the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(logging.set_filter.clone())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("{name}: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT handlers. Install them before announcing readiness:
/// a signal that arrives earlier would otherwise kill the process with the
/// default action instead of starting a clean shutdown.
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Install the handlers (inside a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Wait for SIGTERM or SIGINT.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => info!("received SIGTERM"),
            _ = self.int.recv() => info!("received SIGINT"),
        }
    }
}

/// Raise the soft open-files limit to the hard limit (servers hold many
/// sockets and files).
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                warn!(
                    "could not raise RLIMIT_NOFILE: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// What an accept loop does after an accept error such as EMFILE: pause
/// briefly so it neither spins nor exits while descriptors are short, and
/// log at most one line per interval so a long shortage does not flood the
/// log.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    last_log: Option<std::time::Instant>,
}

impl AcceptBackoff {
    /// Pause after an accept error.
    pub const PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
    /// At most one log line per this interval.
    pub const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

    /// Log (rate-limited) and wait before the next accept.
    pub async fn after_error(&mut self, listener: std::net::SocketAddr, err: &std::io::Error) {
        if self
            .last_log
            .is_none_or(|at| at.elapsed() >= Self::LOG_INTERVAL)
        {
            tracing::error!(listener = %listener, error = %err, "accept failed; backing off");
            self.last_log = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Self::PAUSE).await;
    }
}

/// The shutdown sequence both servers share, once their shutdown token is
/// cancelled: wait for the accept loops to stop, then give the connection
/// `tasks` up to `grace` to finish. `what` names the tasks in the log.
pub async fn drain(
    accept_loops: Vec<tokio::task::JoinHandle<()>>,
    tasks: &tokio_util::task::TaskTracker,
    grace: std::time::Duration,
    what: &str,
) {
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        warn!(
            remaining = tasks.len(),
            "{what} still open after the grace period of {grace:?}"
        );
    }
}

/// Run `close` (a blocking flush of a spool or log) off the runtime and
/// wait for it at most `grace`; `what` names it in the warning when it
/// does not finish in time.
pub async fn close_blocking<F, R>(what: &str, grace: std::time::Duration, close: F)
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let closing = tokio::task::spawn_blocking(close);
    match tokio::time::timeout(grace, closing).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => warn!("closing {what} failed: {err}"),
        Err(_) => warn!("{what} did not close within {grace:?}"),
    }
}

/// A token cancelled when SIGINT or SIGTERM arrives; `message` is logged
/// then (it says what the shutdown waits for).
pub fn cancel_on_signal(
    signals: ShutdownSignals,
    message: String,
) -> tokio_util::sync::CancellationToken {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        info!("{message}");
        stop.cancel();
    });
    shutdown
}

/// Lets a repeated warning through at most once per interval and counts
/// what it held back, so a flood (every client refused at
/// `max_connections`) costs a line per second, not a line per client.
pub struct LogThrottle {
    interval: std::time::Duration,
    state: std::sync::Mutex<ThrottleState>,
}

struct ThrottleState {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle letting one line through per `interval`.
    pub fn new(interval: std::time::Duration) -> Self {
        LogThrottle {
            interval,
            state: std::sync::Mutex::new(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// held back since the last one; `None` to stay quiet.
    pub fn allow(&self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            state.suppressed += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::new(std::time::Duration::from_secs(1))
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::LogThrottle;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_count_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(1));
        assert_eq!(throttle.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(throttle.allow(), None);
        }
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(throttle.allow(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(throttle.allow(), Some(1001));
        assert_eq!(throttle.allow(), None);
    }
}
