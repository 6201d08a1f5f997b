//! Diagnostic logging: `KUMO_PROXY_LOG` filter, format, stderr or files.

use clap::ValueEnum;
use std::path::Path;
use tracing_subscriber::EnvFilter;

/// `--diag-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DiagFormat {
    Full,
    Compact,
    Pretty,
    Json,
}

/// Install the global subscriber. Returns a guard that flushes file output
/// when dropped.
pub fn init(
    format: DiagFormat,
    log_dir: Option<&Path>,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    let filter =
        EnvFilter::try_from_env("KUMO_PROXY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = log_dir.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let appender = tracing_appender::rolling::daily(dir, "proxy-server.log");
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let result = match format {
        DiagFormat::Full => builder.try_init(),
        DiagFormat::Compact => builder.compact().try_init(),
        DiagFormat::Pretty => builder.pretty().try_init(),
        DiagFormat::Json => builder.json().try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("installing the log subscriber: {err}"))?;
    Ok(guard)
}
