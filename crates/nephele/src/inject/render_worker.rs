//! Render worker processes: where the daemon renders injection requests so
//! that a template whose values grow without bound (string concatenation,
//! list repetition, recursive macros: MiniJinja checks no size there, and
//! fuel counts instructions, not bytes) exhausts only a worker's memory.
//!
//! A worker is the `nephele` binary run as `nephele render-worker LIMITS`
//! (a hidden subcommand; `LIMITS` is the daemon's injection limits as
//! JSON). It caps its own address space at `max_render_memory`
//! (`RLIMIT_AS`), disables core dumps, then serves requests one at a time
//! over its stdin and stdout:
//!
//! - daemon to worker: the time left of the request's `render_timeout` in
//!   milliseconds (u64, little endian), the body's length (u32) and the raw
//!   body, which the worker parses with the same [`request::parse`];
//! - worker to daemon: one frame per recipient (message bytes, or the text
//!   of that recipient's error) in request order, then a frame that ends
//!   the request (done, or why it was refused). A frame is a tag byte, a
//!   length (u32, little endian) and the payload.
//!
//! A worker that dies while rendering (an allocation past its limit aborts
//! it) or stops answering past the deadline is killed and replaced; its
//! request is refused whole, and nothing of it was spooled.

use super::limits::{InjectionLimits, LimitExceeded, RequestBudget};
use super::render_pool::{render_each, PoolError, Rendered};
use super::request::{self, RequestError};
use anyhow::Context;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{info, warn};

/// The hidden subcommand of the `nephele` binary that runs a worker.
pub const SUBCOMMAND: &str = "render-worker";

/// The program the daemon runs as its workers: its own binary, as the
/// kernel still has it (an upgrade that replaces the file on disk does not
/// mix versions).
pub const SELF_EXE: &str = "/proc/self/exe";

/// How long a worker may take to start and set its limits.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Past the request's deadline, the time a worker gets to report the
/// deadline itself (it checks it at every write) before it is killed.
const DEADLINE_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for a dead worker's exit status (for the log).
const REAP_TIMEOUT: Duration = Duration::from_secs(1);

/// Sent by a worker once its limits are in force.
const READY: u8 = b'R';
// Frame tags, worker to daemon.
const MESSAGE: u8 = 0;
const RECIPIENT_ERROR: u8 = 1;
const DONE: u8 = 2;
const REFUSED: u8 = 3;

/// A [`PoolError`] as it crosses the pipe.
#[derive(Debug, Serialize, Deserialize)]
enum WireRefusal {
    Recipients {
        key: String,
        count: usize,
        limit: usize,
    },
    Size {
        limit: String,
        what: String,
        bytes: usize,
    },
    Deadline(Duration),
    Memory(usize),
    Syntax(String),
    Shape(String),
    Field {
        field: String,
        message: String,
    },
    Failed(String),
}

impl From<PoolError> for WireRefusal {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Limit(LimitExceeded::Recipients { key, count, limit }) => {
                WireRefusal::Recipients {
                    key: key.to_owned(),
                    count,
                    limit,
                }
            }
            PoolError::Limit(LimitExceeded::Size { limit, what, bytes }) => WireRefusal::Size {
                limit: limit.to_owned(),
                what,
                bytes,
            },
            PoolError::Limit(LimitExceeded::Deadline(after)) => WireRefusal::Deadline(after),
            PoolError::Limit(LimitExceeded::Memory(bytes)) => WireRefusal::Memory(bytes),
            PoolError::Request(RequestError::Syntax(text)) => WireRefusal::Syntax(text),
            PoolError::Request(RequestError::Shape(text)) => WireRefusal::Shape(text),
            PoolError::Request(RequestError::Field { field, message }) => {
                WireRefusal::Field { field, message }
            }
            PoolError::Failed(text) => WireRefusal::Failed(text),
        }
    }
}

impl From<WireRefusal> for PoolError {
    fn from(wire: WireRefusal) -> Self {
        match wire {
            WireRefusal::Recipients { key, count, limit } => LimitExceeded::Recipients {
                key: limit_name(&key),
                count,
                limit,
            }
            .into(),
            WireRefusal::Size { limit, what, bytes } => LimitExceeded::Size {
                limit: limit_name(&limit),
                what,
                bytes,
            }
            .into(),
            WireRefusal::Deadline(after) => LimitExceeded::Deadline(after).into(),
            WireRefusal::Memory(bytes) => LimitExceeded::Memory(bytes).into(),
            WireRefusal::Syntax(text) => RequestError::Syntax(text).into(),
            WireRefusal::Shape(text) => RequestError::Shape(text).into(),
            WireRefusal::Field { field, message } => RequestError::Field { field, message }.into(),
            WireRefusal::Failed(text) => PoolError::Failed(text),
        }
    }
}

/// The key a limit names, back as the `&'static str` it was.
fn limit_name(name: &str) -> &'static str {
    [
        "max_rendered_size",
        "max_message_size",
        "max_request_bytes",
        "max_recipients",
        "max_recipients_per_request",
    ]
    .into_iter()
    .find(|known| *known == name)
    .unwrap_or("an injection limit")
}

/// One running worker, between requests or serving one; killed (and reaped
/// by the runtime) when dropped.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::BufReader<ChildStdout>,
}

impl Worker {
    /// Start `program render-worker LIMITS` and wait until its limits are
    /// in force.
    async fn spawn(program: &Path, limits_json: &str) -> anyhow::Result<Worker> {
        let mut child = Command::new(program)
            .arg0("nephele")
            .arg(SUBCOMMAND)
            .arg(limits_json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // An allocation past the limit is how a worker is expected to
            // die: its message is enough, without a backtrace per death.
            .env("RUST_BACKTRACE", "0")
            // Not in the daemon's process group: a terminal's Ctrl-C stops
            // the daemon, which then closes the workers' pipes.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting a render worker ({})", program.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("a render worker has no pipes");
        };
        let mut worker = Worker {
            child,
            stdin,
            stdout: tokio::io::BufReader::new(stdout),
        };
        match tokio::time::timeout(START_TIMEOUT, worker.stdout.read_u8()).await {
            Ok(Ok(READY)) => Ok(worker),
            Ok(Ok(byte)) => anyhow::bail!("a render worker started with byte {byte}"),
            Ok(Err(_)) => anyhow::bail!(
                "a render worker exited at start ({})",
                worker.exit_status().await
            ),
            Err(_) => anyhow::bail!("a render worker did not start within {START_TIMEOUT:?}"),
        }
    }

    /// The worker's exit status, for the log.
    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(REAP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(err)) => format!("status unknown: {err}"),
            Err(_) => "still running; killed".to_owned(),
        }
    }

    /// Send one request and read its results. An I/O error means the
    /// worker died (or spoke out of turn).
    async fn exchange(
        &mut self,
        body: &[u8],
        remaining: Duration,
        max_frame: usize,
    ) -> std::io::Result<Result<Rendered, PoolError>> {
        let length = u32::try_from(body.len()).map_err(std::io::Error::other)?;
        let millis = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
        let mut header = [0u8; 12];
        header[..8].copy_from_slice(&millis.to_le_bytes());
        header[8..].copy_from_slice(&length.to_le_bytes());
        self.stdin.write_all(&header).await?;
        self.stdin.write_all(body).await?;
        self.stdin.flush().await?;
        let mut rendered = Vec::new();
        loop {
            let tag = self.stdout.read_u8().await?;
            let length = self.stdout.read_u32_le().await? as usize;
            if length > max_frame {
                return Err(std::io::Error::other(format!("a frame of {length} bytes")));
            }
            let mut payload = vec![0; length];
            self.stdout.read_exact(&mut payload).await?;
            match tag {
                MESSAGE => rendered.push(Ok(payload)),
                RECIPIENT_ERROR => {
                    rendered.push(Err(String::from_utf8_lossy(&payload).into_owned()))
                }
                DONE => return Ok(Ok(rendered)),
                REFUSED => {
                    let wire: WireRefusal =
                        serde_json::from_slice(&payload).map_err(std::io::Error::other)?;
                    return Ok(Err(wire.into()));
                }
                other => return Err(std::io::Error::other(format!("frame tag {other}"))),
            }
        }
    }
}

/// The daemon's side: idle workers, started ahead and replaced when one
/// dies. The render pool's slots bound how many are busy at once.
pub struct WorkerPool {
    program: PathBuf,
    limits_json: String,
    size: usize,
    idle: Mutex<Vec<Worker>>,
}

impl WorkerPool {
    /// Start `limits.render_threads` workers running `program`.
    pub async fn start(program: PathBuf, limits: &InjectionLimits) -> anyhow::Result<Self> {
        let limits_json = serde_json::to_string(limits)?;
        let mut idle = Vec::with_capacity(limits.render_threads);
        for _ in 0..limits.render_threads {
            idle.push(Worker::spawn(&program, &limits_json).await?);
        }
        info!(
            workers = limits.render_threads,
            max_render_memory = limits.max_render_memory,
            "render workers started"
        );
        Ok(WorkerPool {
            program,
            limits_json,
            size: limits.render_threads,
            idle: Mutex::new(idle),
        })
    }

    /// Render `body` (already parsed and checked by the caller) on an idle
    /// worker (a new one if none is idle), within `deadline`.
    pub async fn render(
        &self,
        body: &[u8],
        deadline: Instant,
        limits: &InjectionLimits,
    ) -> Result<Rendered, PoolError> {
        let mut worker = self.checkout().await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        // No frame is larger than all the request may generate.
        let max_frame = limits.max_request_bytes.saturating_add(1024 * 1024);
        // Dropping the future (the request was abandoned) drops the worker:
        // it is killed, and replaced by a later request.
        let exchange = worker.exchange(body, remaining, max_frame);
        match tokio::time::timeout(remaining + DEADLINE_GRACE, exchange).await {
            Ok(Ok(result)) => {
                self.give_back(worker);
                result
            }
            Ok(Err(err)) => {
                let pid = worker.child.id();
                let status = worker.exit_status().await;
                warn!(
                    ?pid,
                    "render worker died while rendering ({status}; {err}): request refused, past max_render_memory"
                );
                Err(LimitExceeded::Memory(limits.max_render_memory).into())
            }
            Err(_) => {
                warn!(pid = ?worker.child.id(), "render worker killed: past render_timeout");
                Err(LimitExceeded::Deadline(limits.render_timeout).into())
            }
        }
    }

    /// An idle worker that still runs (one that died while idle, e.g. by
    /// a signal, must not cost a request), else a new one.
    async fn checkout(&self) -> Result<Worker, PoolError> {
        loop {
            let idle = self.idle.lock().pop();
            match idle {
                Some(mut worker) => match worker.child.try_wait() {
                    Ok(None) => return Ok(worker),
                    status => warn!(?status, "an idle render worker had exited; replacing it"),
                },
                None => {
                    return Worker::spawn(&self.program, &self.limits_json)
                        .await
                        .map_err(|err| PoolError::Failed(format!("{err:#}")));
                }
            }
        }
    }

    fn give_back(&self, worker: Worker) {
        let mut idle = self.idle.lock();
        if idle.len() < self.size {
            idle.push(worker);
        }
    }
}

/// The worker process (`nephele render-worker LIMITS`): serve requests
/// from stdin until it closes.
pub fn worker_main() -> ExitCode {
    let limits = std::env::args()
        .nth(2)
        .and_then(|json| serde_json::from_str::<InjectionLimits>(&json).ok());
    let Some(limits) = limits else {
        eprintln!("nephele {SUBCOMMAND}: the daemon starts render workers; not for use by hand");
        return ExitCode::FAILURE;
    };
    match serve(&limits) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nephele {SUBCOMMAND}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(limits: &InjectionLimits) -> anyhow::Result<()> {
    limit_memory(limits.max_render_memory)?;
    close_inherited_files();
    // Own descriptors for the pipes: stdout's line buffering would split
    // frames at every line of a message.
    let mut input = BufReader::new(std::fs::File::from(
        std::io::stdin().as_fd().try_clone_to_owned()?,
    ));
    let mut output = BufWriter::new(std::fs::File::from(
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ));
    output.write_all(&[READY])?;
    output.flush()?;
    loop {
        let mut header = [0u8; 12];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            // The daemon closed the pipe: it stopped, or retired us.
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err.into()),
        }
        let millis = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let length = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
        let deadline = Instant::now() + Duration::from_millis(millis);
        let mut body = vec![0; length as usize];
        input.read_exact(&mut body)?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            render_request(&body, deadline, limits, &mut output)
        }))
        .unwrap_or_else(|_| Err(PoolError::Failed("a render worker panicked".into())));
        match result {
            Ok(()) => write_frame(&mut output, DONE, &[])?,
            Err(err) => {
                let wire = serde_json::to_vec(&WireRefusal::from(err))?;
                write_frame(&mut output, REFUSED, &wire)?;
            }
        }
        output.flush()?;
    }
}

/// Parse `body` and render each recipient's message into `output`.
fn render_request(
    body: &[u8],
    deadline: Instant,
    limits: &InjectionLimits,
    output: &mut impl Write,
) -> Result<(), PoolError> {
    let valid = request::parse(body)?;
    let mut budget = RequestBudget::until(limits, deadline, Arc::new(AtomicBool::new(false)));
    render_each(&valid, &mut budget, |result| match result {
        Ok(data) => write_frame(output, MESSAGE, &data),
        Err(text) => write_frame(output, RECIPIENT_ERROR, text.as_bytes()),
    })
}

fn write_frame(output: &mut impl Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    output.write_all(&[tag])?;
    output.write_all(&length.to_le_bytes())?;
    output.write_all(payload)
}

/// Close every descriptor but stdin, stdout and stderr: Rust opens its
/// files close-on-exec, but the policy's Lua (`io.open`) does not, and a
/// worker has no use for the daemon's files.
fn close_inherited_files() {
    // SAFETY: nothing in this process uses a descriptor above 2 yet.
    let closed = unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    if closed != 0 {
        eprintln!(
            "nephele {SUBCOMMAND}: close_range: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Cap this process's address space at `bytes` (an allocation past it
/// aborts the process; the daemon sees it die) and make no core dumps of
/// such an abort.
fn limit_memory(bytes: usize) -> anyhow::Result<()> {
    let bytes = libc::rlim_t::try_from(bytes).unwrap_or(libc::RLIM_INFINITY);
    for (resource, name, value) in [
        (libc::RLIMIT_AS, "RLIMIT_AS", bytes),
        (libc::RLIMIT_CORE, "RLIMIT_CORE", 0),
    ] {
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit with a valid rlimit struct; it only lowers
        // this process's own limits.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context(format!("setting {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_cross_the_pipe_unchanged() {
        let errors: Vec<PoolError> = vec![
            LimitExceeded::Recipients {
                key: "max_recipients_per_request",
                count: 5,
                limit: 2,
            }
            .into(),
            LimitExceeded::Size {
                limit: "max_rendered_size",
                what: "recipients[0]: content".into(),
                bytes: 10,
            }
            .into(),
            LimitExceeded::Deadline(Duration::from_millis(1500)).into(),
            LimitExceeded::Memory(64).into(),
            RequestError::Syntax("x".into()).into(),
            RequestError::Shape("y".into()).into(),
            RequestError::field("content.subject", "bad").into(),
            PoolError::Failed("z".into()),
        ];
        for err in errors {
            let text = err.to_string();
            let json = serde_json::to_vec(&WireRefusal::from(err)).unwrap();
            let back: PoolError = serde_json::from_slice::<WireRefusal>(&json).unwrap().into();
            assert_eq!(back.to_string(), text);
        }
    }
}
