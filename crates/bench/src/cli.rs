//! Command-line arguments for every mode.

use crate::net::{Dialer, Route};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Load tool for SOCKS5 proxies: connection rate, bulk throughput and
/// held-tunnel memory, against a proxy or directly (the baseline).
#[derive(Debug, Parser)]
#[command(name = "bench", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Echo server: writes back what it reads.
    Echo(ServerArgs),
    /// Discard server: reads and drops.
    Discard(ServerArgs),
    /// Connection rate: N loops of connect, (auth), CONNECT, 1-byte echo, close.
    Conn(ConnArgs),
    /// Throughput: K streams pushing data into a discard server.
    Bulk(BulkArgs),
    /// Memory: open N tunnels, hold them, read the proxy's RSS before and after.
    Hold(HoldArgs),
    /// Summarise `--json` lines from several runs into a table of medians.
    Table(TableArgs),
}

impl Mode {
    /// Tokio worker threads the mode asked for, if it chose.
    pub fn threads(&self) -> Option<usize> {
        match self {
            Mode::Echo(a) | Mode::Discard(a) => a.threads,
            Mode::Conn(a) => a.client.threads,
            Mode::Bulk(a) => a.client.threads,
            Mode::Hold(a) => a.client.threads,
            Mode::Table(_) => Some(1),
        }
    }
}

/// Arguments of the echo and discard servers.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to bind; port 0 picks a free one. Prints `listening on ADDR`.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Arguments shared by the client modes.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// SOCKS5 proxy ip:port, or `direct` (the default) to skip the proxy.
    #[arg(long)]
    pub proxy: Option<String>,
    /// Target ip:port; without it an in-process echo (or discard) server on
    /// 127.0.0.1:0 is started.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// RFC 1929 username (needs --pass).
    #[arg(long, requires = "pass")]
    pub user: Option<String>,
    /// RFC 1929 password (needs --user).
    #[arg(long, requires = "user")]
    pub pass: Option<String>,
    /// Speak TLS to the proxy (a `use_tls = true` listener), SOCKS5 inside.
    #[arg(long)]
    pub proxy_tls: bool,
    /// Bound on connect plus handshake, and on each echo, in seconds.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Print one JSON object instead of the human-readable line.
    #[arg(long)]
    pub json: bool,
    /// Also append the JSON object as one line to this file (the
    /// human-readable line still goes to standard output).
    #[arg(long)]
    pub json_file: Option<PathBuf>,
    /// Name of this configuration in the report (default: the route).
    #[arg(long)]
    pub label: Option<String>,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ClientArgs {
    /// The dialer for these arguments, given the resolved target.
    pub fn dialer(&self, target: SocketAddr) -> Result<Dialer> {
        Ok(Dialer {
            route: Route::parse(self.proxy.as_deref())?,
            target,
            credentials: self.user.clone().zip(self.pass.clone()),
            timeout: self.timeout,
            proxy_tls: match self.proxy_tls {
                true => Some(tls::connector(tls::ClientTrust::AcceptAny)?),
                false => None,
            },
        })
    }

    /// The report label: `--label`, or the route plus `+auth`.
    pub fn label(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        let mut label = self.proxy.as_deref().unwrap_or("direct").to_string();
        if self.proxy_tls {
            label.push_str("+tls");
        }
        if self.user.is_some() {
            label.push_str("+auth");
        }
        label
    }
}

/// Arguments of `conn`.
#[derive(Debug, Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Concurrent client loops.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Measured time in seconds (fractions allowed).
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub duration: Duration,
    /// Unmeasured warm-up before the measured time, in seconds.
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    pub warmup: Duration,
    /// The proxy's process id: its CPU time (with its children's) over the
    /// measured window is reported per connection.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Each loop stops after this many connections (or at the end of
    /// `--duration`, whichever comes first): `--concurrency 1 --count 1`
    /// times a single login.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// Arguments of `bulk`.
#[derive(Debug, Args)]
pub struct BulkArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Parallel streams.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub streams: u32,
    /// How long each stream pushes, in seconds (ignored with --bytes).
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub duration: Duration,
    /// Push exactly this many bytes per stream instead of a duration.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Size of each write in bytes.
    #[arg(long, default_value_t = 128 * 1024)]
    pub chunk: usize,
    /// The proxy's process id: its CPU time (with its children's) while the
    /// streams push is reported per GiB relayed, the proxy's cost per byte
    /// whichever side of the run is the bottleneck.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Arguments of `hold`.
#[derive(Debug, Args)]
pub struct HoldArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Tunnels to open and hold.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// The proxy's process id; its RSS (with its child processes') is read
    /// from /proc before and after. Without it only the open count is shown.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Tunnels being opened at once.
    #[arg(long, default_value_t = 64)]
    pub open_concurrency: usize,
    /// Pause after the last tunnel is up before reading RSS, in seconds.
    #[arg(long, default_value = "0.5", value_parser = parse_secs)]
    pub settle: Duration,
}

/// Arguments of `table`.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// File of `--json` lines (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// A ratio row `OURS/PEER` (labels); repeatable.
    #[arg(long = "ratio", value_parser = parse_ratio)]
    pub ratios: Vec<(String, String)>,
    /// A goal to check, `FIELD:OURS/PEER>=X` (ratio of medians) or
    /// `FIELD:LABEL<=X` (a median); FIELD is a JSON field such as
    /// `conn_per_sec`. Repeatable.
    #[arg(long = "goal", value_parser = parse_goal)]
    pub goals: Vec<Goal>,
}

/// A goal line of the table: a median or a ratio of medians compared to a
/// bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// The JSON field, e.g. `conn_per_sec`.
    pub field: String,
    /// The measured label.
    pub ours: String,
    /// The label divided by, for a ratio goal.
    pub peer: Option<String>,
    /// `true` for `>=`, `false` for `<=`.
    pub at_least: bool,
    /// The bound.
    pub bound: f64,
    /// The text as given, for the report.
    pub text: String,
}

/// Parse `FIELD:OURS/PEER>=X` or `FIELD:LABEL<=X`.
pub fn parse_goal(s: &str) -> Result<Goal, String> {
    let bad = || format!("{s:?} is not FIELD:OURS[/PEER]>=X or <=X");
    let (field, rest) = s.split_once(':').ok_or_else(bad)?;
    let (expr, bound, at_least) = if let Some((expr, bound)) = rest.split_once(">=") {
        (expr, bound, true)
    } else if let Some((expr, bound)) = rest.split_once("<=") {
        (expr, bound, false)
    } else {
        return Err(bad());
    };
    let bound: f64 = bound.trim().parse().map_err(|_| bad())?;
    let (ours, peer) = match expr.split_once('/') {
        Some((ours, peer)) => (ours, Some(peer.to_string())),
        None => (expr, None),
    };
    if field.is_empty() || ours.is_empty() || peer.as_deref() == Some("") {
        return Err(bad());
    }
    Ok(Goal {
        field: field.to_string(),
        ours: ours.to_string(),
        peer,
        at_least,
        bound,
        text: s.to_string(),
    })
}

/// Seconds as a decimal number (`5`, `0.5`), or with an `ms` suffix.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let (number, scale) = match s.strip_suffix("ms") {
        Some(ms) => (ms, 1e-3),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?} must be a finite, non-negative duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// `OURS/PEER` into its two labels.
pub fn parse_ratio(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ours, peer)) if !ours.is_empty() && !peer.is_empty() => {
            Ok((ours.to_string(), peer.to_string()))
        }
        _ => Err(format!("{s:?} is not OURS/PEER")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
    }

    #[test]
    fn secs() {
        assert_eq!(parse_secs("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_secs("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_secs("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("five").is_err());
        assert!(parse_secs("inf").is_err());
    }

    #[test]
    fn ratio() {
        assert_eq!(
            parse_ratio("ours/microsocks").unwrap(),
            ("ours".to_string(), "microsocks".to_string())
        );
        assert!(parse_ratio("ours").is_err());
        assert!(parse_ratio("/peer").is_err());
    }

    #[test]
    fn goal() {
        let g = parse_goal("conn_per_sec:ours-auth/microsocks-auth>=1.5").unwrap();
        assert_eq!(g.field, "conn_per_sec");
        assert_eq!(g.ours, "ours-auth");
        assert_eq!(g.peer.as_deref(), Some("microsocks-auth"));
        assert!(g.at_least);
        assert_eq!(g.bound, 1.5);
        let g = parse_goal("kib_per_tunnel:ours<=8").unwrap();
        assert_eq!((g.peer, g.at_least, g.bound), (None, false, 8.0));
        assert!(parse_goal("kib_per_tunnel:ours=8").is_err());
        assert!(parse_goal("ours<=8").is_err());
        assert!(parse_goal("f:a/>=1").is_err());
        assert!(parse_goal("f:a>=x").is_err());
    }

    #[test]
    fn conn_defaults_and_auth() {
        let cli = parse(&[
            "conn",
            "--proxy",
            "127.0.0.1:1080",
            "--user",
            "u",
            "--pass",
            "p",
        ])
        .unwrap();
        let Mode::Conn(args) = cli.mode else {
            panic!("not conn")
        };
        assert_eq!(args.concurrency, 64);
        assert_eq!(args.duration, Duration::from_secs(5));
        assert_eq!(args.client.label(), "127.0.0.1:1080+auth");
        let dialer = args.client.dialer("127.0.0.1:7".parse().unwrap()).unwrap();
        assert_eq!(
            dialer.route,
            Route::Socks5("127.0.0.1:1080".parse().unwrap())
        );
        assert_eq!(dialer.credentials, Some(("u".into(), "p".into())));
    }

    #[test]
    fn user_needs_pass() {
        assert!(parse(&["conn", "--user", "u"]).is_err());
        assert!(parse(&["conn", "--pass", "p"]).is_err());
    }

    #[test]
    fn direct_is_default() {
        let cli = parse(&["bulk", "--streams", "2", "--bytes", "1000", "--json"]).unwrap();
        let Mode::Bulk(args) = cli.mode else {
            panic!("not bulk")
        };
        assert_eq!(args.streams, 2);
        assert_eq!(args.bytes, Some(1000));
        assert!(args.client.json);
        assert_eq!(args.client.label(), "direct");
        let dialer = args.client.dialer("127.0.0.1:9".parse().unwrap()).unwrap();
        assert_eq!(dialer.route, Route::Direct);
    }

    #[test]
    fn hold_and_servers() {
        let cli = parse(&["hold", "--count", "10", "--pid", "42", "--label", "x"]).unwrap();
        let Mode::Hold(args) = cli.mode else {
            panic!("not hold")
        };
        assert_eq!((args.count, args.pid), (10, Some(42)));
        assert_eq!(args.client.label(), "x");
        assert!(parse(&["hold", "--count", "0"]).is_err());
        assert!(parse(&["echo", "--listen", "127.0.0.1:0"]).is_ok());
        assert!(parse(&["discard"]).is_err());
    }
}
