//! The `bench` binary: parse arguments, raise the fd limit, run one mode.

use anyhow::{Context, Result};
use bench::cli::{self, Cli, Mode};
use bench::{bulk, conn, hold, net, servers, table};
use clap::Parser;

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
            let json = args.client.json;
            print(&conn::run(args).await?, json)
        }
        Mode::Bulk(args) => {
            let json = args.client.json;
            print(&bulk::run(args).await?, json)
        }
        Mode::Hold(args) => {
            let json = args.client.json;
            print(&hold::run(args).await?, json)
        }
        Mode::Table(args) => {
            let input = match &args.input {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?,
                None => std::io::read_to_string(std::io::stdin()).context("read stdin")?,
            };
            print!("{}", table::render(&input, &args.ratios)?);
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

/// Print a report as its human-readable line or as one JSON object.
fn print<R: serde::Serialize + std::fmt::Display>(report: &R, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).context("encode report")?
        );
    } else {
        println!("{report}");
    }
    Ok(())
}
