//! `conn` mode: connection rate and latency. Each of N loops repeats
//! connect, (RFC 1929 auth), CONNECT, write one byte, read it back, close,
//! until the deadline; a connection started before the deadline finishes
//! (bounded by the timeout) and counts.

use crate::cli::ConnArgs;
use crate::net::Dialer;
use crate::rss::CpuWindow;
use crate::servers::{self, ServerKind};
use crate::stats::{ErrorTally, LatencySummary};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The result of one `conn` run.
#[derive(Debug, serde::Serialize)]
pub struct ConnReport {
    /// Always `conn`.
    pub mode: &'static str,
    /// Configuration name.
    pub label: String,
    /// `direct` or the proxy address.
    pub route: String,
    /// Concurrent loops.
    pub concurrency: u32,
    /// Successful connections in the measured window.
    pub connections: u64,
    /// Successful connections per second of measured time.
    pub conn_per_sec: f64,
    /// Latency of one whole connection, connect to echo.
    #[serde(flatten)]
    pub latency: LatencySummary,
    /// Failed connections in the measured window.
    pub errors: u64,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Measured seconds (the deadline plus the last connections' tail).
    pub elapsed_s: f64,
    /// The proxy's CPU time per successful connection (with `--pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_cpu_us_per_conn: Option<f64>,
}

impl std::fmt::Display for ConnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "conn  {:<24} c={:<4} {:>10.1} conn/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}",
            self.label,
            self.concurrency,
            self.conn_per_sec,
            self.latency.p50_us as f64 / 1000.0,
            self.latency.p99_us as f64 / 1000.0,
            self.errors,
        )?;
        if let Some(first) = &self.first_error {
            write!(f, " (first: {first})")?;
        }
        Ok(())
    }
}

/// What one loop measured.
#[derive(Default)]
struct LoopResult {
    latencies_us: Vec<u64>,
    errors: ErrorTally,
}

/// Run `conn` mode.
pub async fn run(args: ConnArgs) -> Result<ConnReport> {
    let target = match args.client.target {
        Some(target) => target,
        None => servers::spawn("127.0.0.1:0".parse()?, ServerKind::Echo)?.0,
    };
    let dialer = args.client.dialer(target)?;
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let deadline = measure_from + args.duration;

    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let dialer = dialer.clone();
        loops.spawn(client_loop(dialer, measure_from, deadline, args.count));
    }
    // The proxy's CPU clock is read at the start and end of the measured
    // window, so warm-up work is not charged to measured connections.
    let cpu = match args.pid {
        Some(pid) => {
            tokio::time::sleep_until(measure_from.into()).await;
            Some(CpuWindow::start(pid)?)
        }
        None => None,
    };
    let mut latencies = Vec::new();
    let mut errors = ErrorTally::default();
    while let Some(result) = loops.join_next().await {
        let result = result.context("client loop panicked")?;
        latencies.extend(result.latencies_us);
        errors.merge(result.errors);
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    let cpu_used_us = cpu.map(|window| window.used_us()).transpose()?;
    let latency = LatencySummary::from_samples(&mut latencies);
    let proxy_cpu_us_per_conn = cpu_used_us.map(|us| us as f64 / latency.count.max(1) as f64);
    Ok(ConnReport {
        mode: "conn",
        label: args.client.label(),
        route: dialer.route.to_string(),
        concurrency: args.concurrency,
        connections: latency.count,
        conn_per_sec: latency.count as f64 / elapsed.as_secs_f64().max(1e-9),
        latency,
        errors: errors.total(),
        error_kinds: errors.by_kind(),
        first_error: errors.first().map(str::to_string),
        elapsed_s: elapsed.as_secs_f64(),
        proxy_cpu_us_per_conn,
    })
}

/// One client: connections back to back until `deadline` (or `count`
/// connections). Only connections started at or after `measure_from` are
/// recorded.
async fn client_loop(
    dialer: Dialer,
    measure_from: Instant,
    deadline: Instant,
    count: Option<u64>,
) -> LoopResult {
    let mut result = LoopResult::default();
    let mut made = 0u64;
    loop {
        let started = Instant::now();
        if started >= deadline || count.is_some_and(|count| made >= count) {
            return result;
        }
        made += 1;
        let outcome = one_connection(&dialer).await;
        if started < measure_from {
            continue;
        }
        match outcome {
            Ok(()) => result
                .latencies_us
                .push(started.elapsed().as_micros() as u64),
            Err((kind, message)) => {
                result.errors.record(kind, || message);
                // A refusing or dead proxy would otherwise spin this loop.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// Open a tunnel, echo one byte through it, drop it (RST, see `net::tune`).
async fn one_connection(dialer: &Dialer) -> Result<(), (&'static str, String)> {
    let (mut stream, pending) = dialer.dial().await.map_err(|err| (err.kind, err.message))?;
    if !pending.is_empty() {
        return Err(("unexpected_data", "target sent data before the echo".into()));
    }
    let echo = async {
        stream.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(byte[0])
    };
    match tokio::time::timeout(dialer.timeout, echo).await {
        Ok(Ok(b'x')) => Ok(()),
        Ok(Ok(other)) => Err(("echo_mismatch", format!("echo returned {other:#04x}"))),
        Ok(Err(err)) => Err(("echo_io", format!("echo through {}: {err}", dialer.route))),
        Err(_) => Err((
            "echo_timeout",
            format!("no echo within {:?}", dialer.timeout),
        )),
    }
}
