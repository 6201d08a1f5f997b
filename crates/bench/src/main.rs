//! The `bench` binary: parse arguments, raise the fd limit, run one mode.

use anyhow::{Context, Result};
use bench::cli::{self, Cli, Mode};
use bench::{bulk, conn, hold, net, servers, table};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<()> {
    let cli = Cli::parse();
    net::raise_nofile_limit()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.mode.threads() {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build().context("start tokio")?;
    runtime.block_on(run(cli.mode))
}

/// Run one mode and print its report.
async fn run(mode: Mode) -> Result<()> {
    match mode {
        Mode::Echo(args) => serve(args, servers::ServerKind::Echo).await,
        Mode::Discard(args) => serve(args, servers::ServerKind::Discard).await,
        Mode::Conn(args) => {
            let output = Output::of(&args.client);
            output.print(&conn::run(args).await?)
        }
        Mode::Bulk(args) => {
            let output = Output::of(&args.client);
            output.print(&bulk::run(args).await?)
        }
        Mode::Hold(args) => {
            let output = Output::of(&args.client);
            output.print(&hold::run(args).await?)
        }
        Mode::Table(args) => {
            let input = match &args.input {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?,
                None => std::io::read_to_string(std::io::stdin()).context("read stdin")?,
            };
            print!("{}", table::render(&input, &args.ratios, &args.goals)?);
            Ok(())
        }
    }
}

/// Bind, announce the address (scripts wait for this line), serve forever.
async fn serve(args: cli::ServerArgs, kind: servers::ServerKind) -> Result<()> {
    let listener = servers::bind(args.listen)?;
    let local = listener.local_addr().context("listener address")?;
    println!("listening on {local}");
    servers::serve(listener, kind).await
}

/// Where a client mode's report goes.
struct Output {
    json: bool,
    json_file: Option<PathBuf>,
}

impl Output {
    fn of(args: &cli::ClientArgs) -> Self {
        Output {
            json: args.json,
            json_file: args.json_file.clone(),
        }
    }

    /// Print the human-readable line or one JSON object, and append the
    /// JSON object to `--json-file` if given.
    fn print<R: serde::Serialize + std::fmt::Display>(&self, report: &R) -> Result<()> {
        let line = serde_json::to_string(report).context("encode report")?;
        if self.json {
            println!("{line}");
        } else {
            println!("{report}");
        }
        if let Some(path) = &self.json_file {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open {}", path.display()))?;
            writeln!(file, "{line}").with_context(|| format!("append to {}", path.display()))?;
        }
        Ok(())
    }
}
