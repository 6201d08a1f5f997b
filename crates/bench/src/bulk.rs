//! `bulk` mode: K streams open their tunnels, wait for each other, then
//! each pushes data for a duration (or a byte count), half-closes, and
//! waits for the discard server's EOF — so the clock stops only when the
//! far end has read everything, not when the local send buffer took it.

use crate::cli::BulkArgs;
use crate::net::Dialer;
use crate::rss::CpuWindow;
use crate::servers::{self, ServerKind};
use crate::stats::ErrorTally;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

/// How long a stream waits for the far end's EOF after its last write.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The result of one `bulk` run.
#[derive(Debug, serde::Serialize)]
pub struct BulkReport {
    /// Always `bulk`.
    pub mode: &'static str,
    /// Configuration name.
    pub label: String,
    /// `direct` or the proxy address.
    pub route: String,
    /// Parallel streams.
    pub streams: u32,
    /// Bytes written by all streams that finished cleanly.
    pub bytes: u64,
    /// `bytes` as gigabits per second of wall time.
    pub gbit_per_sec: f64,
    /// Streams that failed.
    pub errors: u64,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// From the common start to the last stream's EOF, in seconds.
    pub elapsed_s: f64,
    /// The proxy's CPU time per GiB relayed, in milliseconds (with `--pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_cpu_ms_per_gib: Option<f64>,
}

impl std::fmt::Display for BulkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bulk  {:<24} k={:<4} {:>8.3} Gbit/s  {:>8.1} MiB in {:.2} s  errors {}",
            self.label,
            self.streams,
            self.gbit_per_sec,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.elapsed_s,
            self.errors,
        )?;
        if let Some(cpu) = self.proxy_cpu_ms_per_gib {
            write!(f, "  proxy CPU {cpu:.0} ms/GiB")?;
        }
        if let Some(first) = &self.first_error {
            write!(f, " (first: {first})")?;
        }
        Ok(())
    }
}

/// How much each stream sends.
#[derive(Debug, Clone, Copy)]
enum Amount {
    For(Duration),
    Bytes(u64),
}

/// Run `bulk` mode.
pub async fn run(args: BulkArgs) -> Result<BulkReport> {
    if args.chunk == 0 {
        bail!("--chunk must be at least 1 byte");
    }
    let target = match args.client.target {
        Some(target) => target,
        None => servers::spawn("127.0.0.1:0".parse()?, ServerKind::Discard)?.0,
    };
    let dialer = args.client.dialer(target)?;
    let amount = match args.bytes {
        Some(bytes) => Amount::Bytes(bytes),
        None => Amount::For(args.duration),
    };
    // All streams plus this task meet here, so the clock starts once every
    // tunnel is open.
    let barrier = Arc::new(Barrier::new(args.streams as usize + 1));
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..args.streams {
        let (dialer, barrier) = (dialer.clone(), barrier.clone());
        streams.spawn(one_stream(dialer, barrier, amount, args.chunk));
    }
    barrier.wait().await;
    let start = Instant::now();
    let cpu = args.pid.map(CpuWindow::start).transpose()?;

    let mut bytes = 0;
    let mut errors = ErrorTally::default();
    while let Some(result) = streams.join_next().await {
        match result.context("stream task panicked")? {
            Ok(sent) => bytes += sent,
            Err((kind, message)) => errors.record(kind, || message),
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let proxy_cpu_ms_per_gib = cpu
        .map(|window| window.used_us())
        .transpose()?
        .map(|used_us| used_us as f64 / 1000.0 / gib.max(1e-9));
    Ok(BulkReport {
        mode: "bulk",
        label: args.client.label(),
        route: dialer.route.to_string(),
        streams: args.streams,
        bytes,
        gbit_per_sec: bytes as f64 * 8.0 / elapsed / 1e9,
        errors: errors.total(),
        error_kinds: errors.by_kind(),
        first_error: errors.first().map(str::to_string),
        elapsed_s: elapsed,
        proxy_cpu_ms_per_gib,
    })
}

/// Open one tunnel, wait at the barrier, push, half-close, await EOF.
/// Returns the bytes sent. Always reaches the barrier, even on failure, so
/// the other streams are not left waiting.
async fn one_stream(
    dialer: Dialer,
    barrier: Arc<Barrier>,
    amount: Amount,
    chunk: usize,
) -> Result<u64, (&'static str, String)> {
    let dialed = dialer.dial().await;
    barrier.wait().await;
    let (mut stream, _pending) = dialed.map_err(|err| (err.kind, err.message))?;

    let buf = vec![0x5au8; chunk];
    let mut sent: u64 = 0;
    let started = Instant::now();
    let io = |err: std::io::Error| ("io", format!("bulk via {}: {err}", dialer.route));
    let stalled = || {
        (
            "stalled",
            format!("a write made no progress within {:?}", dialer.timeout),
        )
    };
    loop {
        let n = match amount {
            Amount::For(duration) if started.elapsed() < duration => chunk,
            Amount::Bytes(total) if sent < total => chunk.min((total - sent) as usize),
            _ => break,
        };
        // Bounded so a wedged proxy cannot hold the run forever.
        tokio::time::timeout(dialer.timeout, stream.write_all(&buf[..n]))
            .await
            .map_err(|_| stalled())?
            .map_err(io)?;
        sent += n as u64;
    }
    stream.shutdown().await.map_err(io)?;

    // The discard server closes after reading our EOF; anything it sends
    // before that would be a bug in the far end, so it is only drained.
    let mut sink = [0u8; 1024];
    let drain = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                // Some proxies reset instead of closing once both sides are done.
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, drain).await {
        Ok(Ok(())) => Ok(sent),
        Ok(Err(err)) => Err(io(err)),
        Err(_) => Err((
            "drain_timeout",
            format!("no EOF within {DRAIN_TIMEOUT:?} after the last write"),
        )),
    }
}
