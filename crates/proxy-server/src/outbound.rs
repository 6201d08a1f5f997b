//! Outbound connections: resolution, source-address binding, keepalive.

use crate::config::TcpKeepaliveParams;
use socket2::{SockRef, TcpKeepalive};
use socks5::{ReplyCode, TargetAddr};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};

/// Why an outbound connection could not be made, with the reply to send.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OutboundError {
    /// The SOCKS reply code for the client.
    pub reply: ReplyCode,
    /// What happened, for the log.
    pub message: String,
}

impl OutboundError {
    fn io(context: impl std::fmt::Display, err: &io::Error) -> Self {
        OutboundError {
            reply: ReplyCode::from_io_error(err),
            message: format!("{context}: {err}"),
        }
    }
}

/// A socket bound to `source`, with `IP_BIND_ADDRESS_NO_PORT` so the kernel
/// picks the port at connect time (keeps one source IP from running out of
/// ephemeral ports, since the 4-tuple rather than the port must be unique).
pub fn bound_socket(source: SocketAddr) -> io::Result<TcpSocket> {
    let socket = new_socket(source)?;
    if source.port() == 0 {
        set_bind_address_no_port(&socket)?;
    }
    socket.bind(source)?;
    Ok(socket)
}

fn new_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
}

fn set_bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    let enable: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&enable as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How long a tunnel lives before its outbound socket gets the keepalive
/// settings. Most tunnels are over sooner and never need them, so the four
/// `setsockopt` calls are saved; a longer one gets them at this age, which
/// moves its first probe (minutes away by default) by at most this much.
pub const KEEPALIVE_AFTER: Duration = Duration::from_secs(1);

/// Apply the listener's keepalive settings to an outbound socket once its
/// tunnel is [`KEEPALIVE_AFTER`] old; never completes (select it beside
/// the relay).
pub async fn keepalive_later(stream: &TcpStream, keepalive: &TcpKeepaliveParams) {
    if keepalive.enabled {
        tokio::time::sleep(KEEPALIVE_AFTER).await;
        set_keepalive(stream, keepalive);
    }
    std::future::pending().await
}

/// Keepalive and `TCP_NODELAY` on any TCP socket. Both are best effort: a
/// failure only costs latency or dead-peer detection.
fn tune_socket(socket: SockRef<'_>, keepalive: &TcpKeepaliveParams) {
    let _ = socket.set_nodelay(true);
    keepalive_on(socket, keepalive);
}

/// The listener's keepalive settings on `stream` now (best effort).
pub fn set_keepalive(stream: &TcpStream, keepalive: &TcpKeepaliveParams) {
    keepalive_on(SockRef::from(stream), keepalive);
}

fn keepalive_on(socket: SockRef<'_>, keepalive: &TcpKeepaliveParams) {
    if keepalive.enabled {
        let params = TcpKeepalive::new()
            .with_time(keepalive.time)
            .with_interval(keepalive.interval)
            .with_retries(keepalive.retries);
        let _ = socket.set_tcp_keepalive(&params);
    }
}

/// How many connections may wait in the kernel's accept queue.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket whose accepted connections inherit `TCP_NODELAY` and
/// the keepalive settings from it (Linux copies them to each accepted
/// socket), saving five `setsockopt` calls per client.
pub fn tuned_listener(
    addr: SocketAddr,
    keepalive: &TcpKeepaliveParams,
) -> io::Result<tokio::net::TcpListener> {
    let socket = new_socket(addr)?;
    socket.set_reuseaddr(true)?;
    tune_socket(SockRef::from(&socket), keepalive);
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `connect(2)` on a non-blocking socket and wait until it is done. Unlike
/// `TcpSocket::connect`, no `getsockopt(SO_ERROR)` follows a success: the
/// readiness that ends the wait already tells them apart (a failed connect
/// reports an error and a hang-up, a successful one only writability), so
/// the error is fetched only when there is one.
async fn connect(socket: TcpSocket, addr: SocketAddr) -> io::Result<TcpStream> {
    // SAFETY: the descriptor is moved out of `socket`, which gives it up.
    let socket = unsafe { socket2::Socket::from_raw_fd(socket.into_raw_fd()) };
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    let stream = TcpStream::from_std(socket.into())?;
    let ready = stream.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::ErrorKind::NotConnected.into()));
    }
    Ok(stream)
}

/// Resolve `target` into the canonical addresses a connection would use
/// (domain names asynchronously; every numeric spelling the resolver takes,
/// such as `127.1` or `0x7f000001`, comes back as the address it means;
/// IPv4-mapped IPv6 becomes IPv4), keeping only those of the source
/// address's family when one is bound.
pub async fn resolve(
    target: &TargetAddr,
    source: Option<SocketAddr>,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let addrs: Vec<SocketAddr> = match target {
        TargetAddr::Ip(addr) => vec![*addr],
        TargetAddr::Domain(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|err| OutboundError {
                reply: ReplyCode::HostUnreachable,
                message: format!("resolving {host}: {err}"),
            })?
            .collect(),
    };
    let mut matching: Vec<SocketAddr> = addrs
        .into_iter()
        .map(crate::destination::canonical)
        .filter(|a| source.is_none_or(|source| a.is_ipv4() == source.is_ipv4()))
        .collect();
    matching.dedup();
    if matching.is_empty() {
        return Err(OutboundError {
            reply: ReplyCode::HostUnreachable,
            message: match source {
                Some(source) => format!("{target} has no address of the family of source {source}"),
                None => format!("{target} resolved to no address"),
            },
        });
    }
    Ok(matching)
}

/// Connect to the first of `addrs` that answers, from `source` when given;
/// the stream (with `TCP_NODELAY`; keepalive comes with
/// [`keepalive_later`]) and the address it reached (known here, so no
/// `getpeername` is needed). The caller bounds the whole attempt.
pub async fn connect_any(
    addrs: &[SocketAddr],
    source: Option<SocketAddr>,
) -> Result<(TcpStream, SocketAddr), OutboundError> {
    let mut last_error = None;
    for &addr in addrs {
        let socket = match source {
            Some(source) => bound_socket(source)
                .map_err(|err| OutboundError::io(format!("binding {source}"), &err))?,
            None => new_socket(addr).map_err(|err| OutboundError::io("creating socket", &err))?,
        };
        match connect(socket, addr).await {
            Ok(stream) => {
                // Best effort, like keepalive.
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Err(err) => last_error = Some(OutboundError::io(format!("connecting to {addr}"), &err)),
        }
    }
    Err(last_error.unwrap_or_else(|| OutboundError {
        reply: ReplyCode::HostUnreachable,
        message: "no address to connect to".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-client `setsockopt` calls are skipped on the promise that
    /// accepted sockets inherit the listener's options; hold Linux to it.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive() {
        let keepalive = TcpKeepaliveParams {
            enabled: true,
            time: Duration::from_secs(123),
            interval: Duration::from_secs(17),
            retries: 4,
        };
        let listener = tuned_listener("127.0.0.1:0".parse().unwrap(), &keepalive).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let sock = SockRef::from(&accepted);
        assert!(sock.nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(123));
        assert_eq!(sock.keepalive_interval().unwrap(), Duration::from_secs(17));
        assert_eq!(sock.keepalive_retries().unwrap(), 4);
    }

    /// Success is told from failure by readiness alone: a listening port
    /// connects (and reports the address reached), a closed one is refused
    /// with the right reply.
    #[tokio::test]
    async fn connect_any_reports_the_address_or_the_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            gone.local_addr().unwrap()
        };
        let (stream, reached) = connect_any(&[closed, open], None).await.unwrap();
        assert_eq!(reached, open);
        assert_eq!(stream.peer_addr().unwrap(), open);
        assert!(stream.nodelay().unwrap());
        let refused = connect_any(&[closed], None).await.unwrap_err();
        assert_eq!(refused.reply, ReplyCode::ConnectionRefused, "{refused}");
    }

    /// Outbound keepalive is applied once the tunnel is KEEPALIVE_AFTER
    /// old, not before.
    #[tokio::test(start_paused = true)]
    async fn keepalive_comes_once_the_tunnel_lasts() {
        let keepalive = TcpKeepaliveParams {
            enabled: true,
            time: Duration::from_secs(77),
            interval: Duration::from_secs(11),
            retries: 2,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let sock = SockRef::from(&stream);
        let later = keepalive_later(&stream, &keepalive);
        tokio::pin!(later);
        let early = tokio::time::timeout(KEEPALIVE_AFTER / 2, &mut later).await;
        assert!(early.is_err() && !sock.keepalive().unwrap());
        let after = tokio::time::timeout(KEEPALIVE_AFTER, &mut later).await;
        assert!(after.is_err(), "keepalive_later never completes");
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(77));
        assert_eq!(sock.keepalive_interval().unwrap(), Duration::from_secs(11));
        assert_eq!(sock.keepalive_retries().unwrap(), 2);
    }
}
