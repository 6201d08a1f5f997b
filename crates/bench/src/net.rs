//! Socket plumbing shared by every mode: how a client reaches the target
//! (directly or through a SOCKS5 proxy), socket options, and the process
//! file-descriptor limit.

use crate::client::{socks5_connect, Credentials};
use anyhow::{anyhow, Context, Result};
use socks5::TargetAddr;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// A client's end of a tunnel: plain TCP, or TLS to a `use_tls` proxy
/// listener (SOCKS5 inside TLS).
pub type Tunnel = Either<TcpStream, tls::client::TlsStream<TcpStream>>;

/// How client connections reach the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Straight to the target: the loopback baseline.
    Direct,
    /// Through a SOCKS5 proxy at this address.
    Socks5(SocketAddr),
}

impl Route {
    /// Parse `--proxy`: absent or `direct` means [`Route::Direct`].
    pub fn parse(proxy: Option<&str>) -> Result<Route> {
        match proxy {
            None | Some("direct") => Ok(Route::Direct),
            Some(addr) => addr
                .parse()
                .map(Route::Socks5)
                .with_context(|| format!("--proxy {addr:?} is neither `direct` nor ip:port")),
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Direct => f.write_str("direct"),
            Route::Socks5(addr) => write!(f, "{addr}"),
        }
    }
}

/// Everything a client loop needs to open one tunnel.
#[derive(Clone)]
pub struct Dialer {
    /// Direct or through which proxy.
    pub route: Route,
    /// Where the tunnel ends (echo or discard server).
    pub target: SocketAddr,
    /// RFC 1929 credentials, if the proxy wants them.
    pub credentials: Option<(String, String)>,
    /// Bound on connect plus handshake.
    pub timeout: Duration,
    /// Speak TLS to the proxy first (its certificate is not verified: the
    /// tool measures, it does not authenticate).
    pub proxy_tls: Option<tls::TlsConnector>,
}

/// Why opening a tunnel failed, reduced to a name for error counting and a
/// message for the first occurrence.
#[derive(Debug)]
pub struct DialError {
    /// A short stable name: `connect`, `timeout`, or a handshake error kind.
    pub kind: &'static str,
    /// The full message.
    pub message: String,
}

impl Dialer {
    /// Open a tunnel: TCP connect with `TCP_NODELAY` and `SO_LINGER 0`, then
    /// the SOCKS5 handshake when going through a proxy. Returns the stream
    /// and any tunnel bytes that arrived with the proxy's reply.
    pub async fn dial(&self) -> Result<(Tunnel, Vec<u8>), DialError> {
        match tokio::time::timeout(self.timeout, self.dial_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(DialError {
                kind: "timeout",
                message: format!(
                    "no tunnel to {} via {} within {:?}",
                    self.target, self.route, self.timeout
                ),
            }),
        }
    }

    async fn dial_unbounded(&self) -> Result<(Tunnel, Vec<u8>), DialError> {
        let first_hop = match self.route {
            Route::Direct => self.target,
            Route::Socks5(proxy) => proxy,
        };
        let stream = TcpStream::connect(first_hop)
            .await
            .map_err(|err| DialError {
                kind: "connect",
                message: format!("connect to {first_hop}: {err}"),
            })?;
        tune(&stream).map_err(|err| DialError {
            kind: "sockopt",
            message: format!("{err:#}"),
        })?;
        let mut stream = match (&self.proxy_tls, self.route.clone()) {
            (Some(connector), Route::Socks5(proxy)) => {
                let name = tls::ServerName::from(proxy.ip());
                let tls_stream =
                    connector
                        .connect(name, stream)
                        .await
                        .map_err(|err| DialError {
                            kind: "tls",
                            message: format!("TLS to {proxy}: {err}"),
                        })?;
                Either::Right(tls_stream)
            }
            _ => Either::Left(stream),
        };
        if let Route::Socks5(proxy) = self.route {
            let credentials = self
                .credentials
                .as_ref()
                .map(|(user, pass)| Credentials { user, pass });
            let connected = socks5_connect(&mut stream, &TargetAddr::Ip(self.target), credentials)
                .await
                .map_err(|err| DialError {
                    kind: err.kind(),
                    message: format!("SOCKS5 via {proxy}: {err}"),
                })?;
            return Ok((stream, connected.pending));
        }
        Ok((stream, Vec::new()))
    }
}

/// `TCP_NODELAY` (one-byte echoes must not wait for Nagle) and `SO_LINGER 0`
/// (close sends RST, so loopback runs leave no TIME_WAIT behind to exhaust
/// ephemeral ports).
pub fn tune(stream: &TcpStream) -> Result<()> {
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .context("set SO_LINGER 0")?;
    Ok(())
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit so hold mode can keep
/// thousands of sockets open. Returns the new soft limit.
pub fn raise_nofile_limit() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other invariants.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(anyhow!(std::io::Error::last_os_error())).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(anyhow!(std::io::Error::last_os_error()))
                .context("setrlimit(RLIMIT_NOFILE) to the hard limit");
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_parsing() {
        assert_eq!(Route::parse(None).unwrap(), Route::Direct);
        assert_eq!(Route::parse(Some("direct")).unwrap(), Route::Direct);
        assert_eq!(
            Route::parse(Some("127.0.0.1:1080")).unwrap(),
            Route::Socks5("127.0.0.1:1080".parse().unwrap())
        );
        assert!(Route::parse(Some("localhost")).is_err());
    }
}
