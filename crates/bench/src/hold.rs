//! `hold` mode: the proxy's memory per open tunnel. Reads the proxy's
//! memory, opens N tunnels to the echo server (each proven live by a
//! one-byte echo), lets the proxy settle, reads its memory again, reports
//! the difference per tunnel, and closes everything.

use crate::cli::HoldArgs;
use crate::net::{Dialer, Tunnel};
use crate::rss::{tree_memory, TreeMemory};
use crate::servers::{self, ServerKind};
use crate::stats::ErrorTally;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The result of one `hold` run.
#[derive(Debug, serde::Serialize)]
pub struct HoldReport {
    /// Always `hold`.
    pub mode: &'static str,
    /// Configuration name.
    pub label: String,
    /// `direct` or the proxy address.
    pub route: String,
    /// Tunnels asked for.
    pub requested: u32,
    /// Tunnels open and proven by an echo when memory was read.
    pub open: u64,
    /// Seconds to open them all.
    pub open_s: f64,
    /// The proxy's pid, when given.
    pub pid: Option<u32>,
    /// Proxy memory before opening.
    pub before: Option<TreeMemory>,
    /// Proxy memory with all tunnels open.
    pub after: Option<TreeMemory>,
    /// `(after.rss - before.rss) / open`, in KiB.
    pub kib_per_tunnel: Option<f64>,
    /// The same from PSS (fairer for forking servers), in KiB.
    pub pss_kib_per_tunnel: Option<f64>,
    /// Tunnels that failed to open.
    pub errors: u64,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first failure's message.
    pub first_error: Option<String>,
}

impl std::fmt::Display for HoldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hold  {:<24} open {}/{} in {:.2} s",
            self.label, self.open, self.requested, self.open_s
        )?;
        if let (Some(before), Some(after), Some(per)) =
            (self.before, self.after, self.kib_per_tunnel)
        {
            write!(
                f,
                "  RSS {} -> {} KiB = {per:.2} KiB/tunnel (PSS {:.2})",
                before.rss_kib,
                after.rss_kib,
                self.pss_kib_per_tunnel.unwrap_or(0.0)
            )?;
            if after.processes > 1 {
                write!(f, " over {} processes", after.processes)?;
            }
        }
        write!(f, "  errors {}", self.errors)?;
        if let Some(first) = &self.first_error {
            write!(f, " (first: {first})")?;
        }
        Ok(())
    }
}

/// Run `hold` mode.
pub async fn run(args: HoldArgs) -> Result<HoldReport> {
    let target = match args.client.target {
        Some(target) => target,
        None => servers::spawn("127.0.0.1:0".parse()?, ServerKind::Echo)?.0,
    };
    let dialer = args.client.dialer(target)?;
    let before = args.pid.map(tree_memory).transpose()?;

    let start = Instant::now();
    let mut held: Vec<Tunnel> = Vec::with_capacity(args.count as usize);
    let mut errors = ErrorTally::default();
    let mut opening = tokio::task::JoinSet::new();
    let mut launched = 0;
    let window = args.open_concurrency.max(1);
    while launched < args.count || !opening.is_empty() {
        while launched < args.count && opening.len() < window {
            opening.spawn(open_tunnel(dialer.clone()));
            launched += 1;
        }
        if let Some(done) = opening.join_next().await {
            match done.context("tunnel task panicked")? {
                Ok(stream) => held.push(stream),
                Err((kind, message)) => errors.record(kind, || message),
            }
        }
    }
    let open_s = start.elapsed().as_secs_f64();

    tokio::time::sleep(args.settle).await;
    let after = args.pid.map(tree_memory).transpose()?;
    let open = held.len() as u64;
    let per_tunnel = |f: fn(&TreeMemory) -> u64| match (before, after) {
        (Some(b), Some(a)) if open > 0 => Some((f(&a) as f64 - f(&b) as f64) / open as f64),
        _ => None,
    };
    let report = HoldReport {
        mode: "hold",
        label: args.client.label(),
        route: dialer.route.to_string(),
        requested: args.count,
        open,
        open_s,
        pid: args.pid,
        before,
        after,
        kib_per_tunnel: per_tunnel(|m| m.rss_kib),
        pss_kib_per_tunnel: per_tunnel(|m| m.pss_kib),
        errors: errors.total(),
        error_kinds: errors.by_kind(),
        first_error: errors.first().map(str::to_string),
    };
    // Dropping with SO_LINGER 0 resets every tunnel at once.
    drop(held);
    Ok(report)
}

/// Open one tunnel and prove it carries bytes both ways.
async fn open_tunnel(dialer: Dialer) -> Result<Tunnel, (&'static str, String)> {
    let (mut stream, pending) = dialer.dial().await.map_err(|err| (err.kind, err.message))?;
    if !pending.is_empty() {
        return Err(("unexpected_data", "target sent data before the echo".into()));
    }
    let echo = async {
        stream.write_all(b"h").await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(byte[0])
    };
    match tokio::time::timeout(dialer.timeout, echo).await {
        Ok(Ok(b'h')) => Ok(stream),
        Ok(Ok(other)) => Err(("echo_mismatch", format!("echo returned {other:#04x}"))),
        Ok(Err(err)) => Err(("echo_io", format!("echo through {}: {err}", dialer.route))),
        Err(_) => Err((
            "echo_timeout",
            format!("no echo within {:?}", dialer.timeout),
        )),
    }
}
