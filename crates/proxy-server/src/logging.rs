//! Diagnostic logging: `KUMO_PROXY_LOG` filter, format, stderr or files,
//! and a handle to change the filter while running
//! (`POST /api/admin/set_diagnostic_log_filter/v1`).

use clap::ValueEnum;
use http_listener::LogFilterSetter;
use std::path::Path;
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer};

/// `--diag-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DiagFormat {
    Full,
    Compact,
    Pretty,
    Json,
}

/// What [`init`] hands back: a guard that flushes file output when dropped,
/// and the setter of the live filter.
pub struct Logging {
    pub _guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    pub set_filter: LogFilterSetter,
}

/// Install the global subscriber.
pub fn init(format: DiagFormat, log_dir: Option<&Path>) -> anyhow::Result<Logging> {
    let filter =
        EnvFilter::try_from_env("KUMO_PROXY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = log_dir.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let appender = tracing_appender::rolling::daily(dir, "proxy-server.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (fmt::writer::BoxMakeWriter::new(writer), Some(guard))
        }
        None => (fmt::writer::BoxMakeWriter::new(std::io::stderr), None),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let output = fmt::layer().with_writer(writer).with_ansi(ansi);
    let output = match format {
        DiagFormat::Full => output.boxed(),
        DiagFormat::Compact => output.compact().boxed(),
        DiagFormat::Pretty => output.pretty().boxed(),
        DiagFormat::Json => output.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|err| anyhow::anyhow!("installing the log subscriber: {err}"))?;
    let set_filter: LogFilterSetter = Arc::new(move |directives: &str| {
        let filter = EnvFilter::builder()
            .parse(directives)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        handle
            .reload(filter)
            .map_err(|err| anyhow::anyhow!("reloading the log filter: {err}"))
    });
    Ok(Logging {
        _guard: guard,
        set_filter,
    })
}
