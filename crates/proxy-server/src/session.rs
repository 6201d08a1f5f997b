//! One client connection: method selection, RFC 1929 login, requests, then
//! the relay. Every read of the handshake is bounded by the listener's
//! `timeout`.

use crate::auth::login;
use crate::destination::Prohibited;
use crate::listener::ListenerContext;
use crate::outbound::{self, OutboundError};
use crate::relay;
use crate::tunnel::{Tunnel, TunnelRequest};
use aaa::{AclMap, AuthInfo, Resource, Secret};
use socks5::{
    encode_method_selection, encode_reply, encode_userpass_status, parse_greeting, parse_request,
    parse_userpass_request, AuthMethod, Command, ParseResult, Parsed, ReplyCode, Socks5Error,
    TargetAddr,
};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

/// The longest handshake message (a 255-byte username and password).
const HANDSHAKE_BUFFER: usize = 600;

/// Why a session ended before relaying.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client sent nothing complete for the {0} within the timeout")]
    Timeout(&'static str),
    #[error("client closed the connection during the {0}")]
    ClosedEarly(&'static str),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] Socks5Error),
    #[error("no acceptable authentication method offered")]
    NoAcceptableMethod,
    #[error("login refused")]
    LoginRefused,
    #[error("{privilege} {resource} not allowed by the ACL")]
    NotAllowed {
        privilege: &'static str,
        resource: String,
    },
    #[error("UDP ASSOCIATE is not supported")]
    UdpAssociate,
    #[error("BIND to {address} failed: {message}")]
    Bind {
        address: TargetAddr,
        message: String,
    },
    #[error("{0}")]
    Outbound(#[from] OutboundError),
    #[error("{0}")]
    Prohibited(#[from] Prohibited),
    #[error("{0}")]
    Limit(#[from] crate::admission::Refusal),
}

/// The handshake's side of a client stream: the bytes received but not yet
/// parsed, and a reusable output buffer.
///
/// Its reads and writes are bounded by the one deadline of the whole
/// handshake, enforced once around it (see [`handshake`]) rather than by a
/// timer per step: every timer registered costs the runtime a lock and,
/// when it is the earliest, a wake-up of its I/O driver (an `eventfd`
/// write). `step` names what a timeout interrupted.
struct HandshakeIo<S> {
    stream: S,
    received: Vec<u8>,
    out: Vec<u8>,
    /// When the whole handshake must be over.
    deadline: tokio::time::Instant,
    /// The client's address.
    peer: SocketAddr,
    /// The step under way, for the timeout's error.
    step: &'static str,
}

impl<S: AsyncRead + AsyncWrite + Unpin> HandshakeIo<S> {
    /// Read until `parse` sees a whole message (the caller bounds it).
    async fn read_message<T>(
        &mut self,
        step: &'static str,
        parse: impl Fn(&[u8]) -> ParseResult<T>,
    ) -> Result<T, SessionError> {
        self.step = step;
        loop {
            if let Parsed::Complete { value, consumed } = parse(&self.received)? {
                self.received.drain(..consumed);
                return Ok(value);
            }
            if self.received.len() >= HANDSHAKE_BUFFER {
                // Unreachable for well-formed length prefixes; kept as a bound.
                return Err(SessionError::Protocol(Socks5Error::FieldTooLong {
                    field: step,
                    len: self.received.len(),
                }));
            }
            if self.stream.read_buf(&mut self.received).await? == 0 {
                return Err(SessionError::ClosedEarly(step));
            }
        }
    }

    /// Write the output buffer (the caller bounds it).
    async fn flush(&mut self, step: &'static str) -> Result<(), SessionError> {
        self.step = step;
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    async fn reply(&mut self, code: ReplyCode, bound: SocketAddr) -> Result<(), SessionError> {
        encode_reply(code, &TargetAddr::Ip(bound), &mut self.out)?;
        self.flush("reply").await
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
}

/// A CONNECT that succeeded: the destination, any bytes the client sent
/// after its request (they belong to the destination) and what the tunnel
/// is accounted under.
struct Connected {
    dest: TcpStream,
    /// The address `dest` is connected to.
    connected_to: SocketAddr,
    early_data: Vec<u8>,
    request: TunnelRequest,
}

/// Negotiate with the client up to a successful CONNECT. The whole
/// handshake, greeting to CONNECT reply, shares one deadline.
async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut HandshakeIo<S>,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerContext,
) -> Result<Connected, SessionError> {
    let method = select_method(io, ctx).await?;
    // Who the requests are checked for: the login's AuthInfo, or an
    // anonymous peer when no login was asked for.
    let auth = if method == AuthMethod::USERNAME_PASSWORD {
        authenticate_client(io, ctx, peer, local).await?
    } else {
        AuthInfo {
            peer_address: Some(peer.ip()),
            ..AuthInfo::default()
        }
    };
    let mut source: Option<SocketAddr> = None;
    loop {
        let request = match io.read_message("request", parse_request).await {
            Ok(request) => request,
            Err(SessionError::Protocol(err)) => {
                if let Some(code) = err.reply_code() {
                    io.reply(code, unspecified()).await?;
                }
                return Err(SessionError::Protocol(err));
            }
            Err(err) => return Err(err),
        };
        match request.command {
            Command::UdpAssociate => {
                io.reply(ReplyCode::CommandNotSupported, unspecified())
                    .await?;
                return Err(SessionError::UdpAssociate);
            }
            Command::Bind => {
                source = Some(select_source(io, ctx, &auth, local, request.address).await?);
            }
            Command::Connect => {
                let target = Target {
                    requested: request.address,
                    source,
                };
                return connect(io, ctx, &auth, local, target).await;
            }
        }
    }
}

/// Read the greeting and answer with the method to use.
async fn select_method<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut HandshakeIo<S>,
    ctx: &ListenerContext,
) -> Result<AuthMethod, SessionError> {
    let greeting = io.read_message("greeting", parse_greeting).await?;
    let method = if greeting.offers(AuthMethod::USERNAME_PASSWORD) && ctx.policy.is_some() {
        AuthMethod::USERNAME_PASSWORD
    } else if ctx.params.require_auth {
        AuthMethod::NO_ACCEPTABLE
    } else if greeting.offers(AuthMethod::NO_AUTH) {
        AuthMethod::NO_AUTH
    } else {
        AuthMethod::NO_ACCEPTABLE
    };
    encode_method_selection(method, &mut io.out);
    io.flush("method selection").await?;
    if method == AuthMethod::NO_ACCEPTABLE {
        return Err(SessionError::NoAcceptableMethod);
    }
    Ok(method)
}

/// Read the RFC 1929 login, decide it and answer; the AuthInfo of an
/// accepted login.
async fn authenticate_client<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut HandshakeIo<S>,
    ctx: &ListenerContext,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<AuthInfo, SessionError> {
    let (username, password) = io
        .read_message("authentication", |buf| {
            Ok(parse_userpass_request(buf)?
                .map(|req| (req.username.to_vec(), Secret::new(req.password))))
        })
        .await?;
    let accepted = login(ctx, &username, &password, peer, local).await;
    encode_userpass_status(accepted.is_some(), &mut io.out);
    io.flush("authentication status").await?;
    accepted.ok_or(SessionError::LoginRefused)
}

/// `BIND` with an IP address: authorize it as the source of the next
/// CONNECT and answer with the address. The client chooses the address,
/// never the port: the kernel picks one at connect time.
async fn select_source<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut HandshakeIo<S>,
    ctx: &ListenerContext,
    auth: &AuthInfo,
    local: SocketAddr,
    requested: TargetAddr,
) -> Result<SocketAddr, SessionError> {
    let TargetAddr::Ip(address) = requested else {
        io.reply(ReplyCode::AddressTypeNotSupported, unspecified())
            .await?;
        return Err(SessionError::Bind {
            address: requested,
            message: "a source address must be an IP address".into(),
        });
    };
    let address = SocketAddr::new(address.ip().to_canonical(), 0);
    let resource = Resource::proxy_source(local, address.ip());
    if let Err(err) = check_access(ctx, auth, resource, "bind").await {
        io.reply(ReplyCode::NotAllowedByRuleset, unspecified())
            .await?;
        return Err(err);
    }
    // Binding now both validates the address and tells the client what it
    // will be; the CONNECT binds it again.
    match outbound::bound_socket(address).and_then(|socket| socket.local_addr()) {
        Ok(bound) => {
            debug!(source = %address, "BIND selects source address");
            io.reply(ReplyCode::Succeeded, bound).await?;
            Ok(address)
        }
        Err(err) => {
            io.reply(ReplyCode::from_io_error(&err), unspecified())
                .await?;
            Err(SessionError::Bind {
                address: requested,
                message: err.to_string(),
            })
        }
    }
}

/// What a CONNECT asks for.
struct Target {
    /// The destination as the client wrote it.
    requested: TargetAddr,
    /// The source address an earlier BIND selected.
    source: Option<SocketAddr>,
}

/// `CONNECT`: authorize the requested name, admit it under the identity's
/// limits, resolve it, keep the addresses that are neither prohibited nor
/// denied by the ACL, and connect to the first that answers. Every
/// decision is on the address connected to.
async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut HandshakeIo<S>,
    ctx: &ListenerContext,
    auth: &AuthInfo,
    local: SocketAddr,
    target: Target,
) -> Result<Connected, SessionError> {
    if let TargetAddr::Domain(host, port) = &target.requested {
        // DNS names are case-insensitive and may end in a dot.
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let resource = Resource::proxy_destination(local, &name, *port);
        if let Err(err) = check_access(ctx, auth, resource, "connect").await {
            io.reply(ReplyCode::NotAllowedByRuleset, unspecified())
                .await?;
            return Err(err);
        }
    }
    let request = admit(io, ctx, auth, &target).await?;
    let connected =
        match tokio::time::timeout_at(io.deadline, reach(ctx, auth, local, &target)).await {
            Ok(result) => result,
            Err(_) => Err(SessionError::Outbound(OutboundError {
                reply: ReplyCode::TtlExpired,
                message: format!("connecting to {} timed out", target.requested),
            })),
        };
    match connected {
        Ok((dest, connected_to)) => {
            ctx.metrics.outbound_connections.inc();
            let bound = dest.local_addr()?;
            debug!(target = %target.requested, via = %bound, "CONNECT established");
            io.reply(ReplyCode::Succeeded, bound).await?;
            Ok(Connected {
                dest,
                connected_to,
                early_data: std::mem::take(&mut io.received),
                request,
            })
        }
        Err(err) => {
            let code = match &err {
                SessionError::Outbound(outbound) => outbound.reply,
                _ => ReplyCode::NotAllowedByRuleset,
            };
            io.reply(code, unspecified()).await?;
            Err(err)
        }
    }
}

/// Admit the CONNECT under the identity's limits; refused: reply `02`,
/// counted and recorded.
async fn admit<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut HandshakeIo<S>,
    ctx: &ListenerContext,
    auth: &AuthInfo,
    target: &Target,
) -> Result<TunnelRequest, SessionError> {
    let mut request = TunnelRequest {
        auth: auth.clone(),
        requested: target.requested.clone(),
        source: target.source,
        admission: Default::default(),
    };
    let admitted = match &ctx.policy {
        Some(policy) => ctx.control.admit(policy, auth).await,
        None => Ok(Default::default()),
    };
    match admitted {
        Ok(admission) => {
            request.admission = admission;
            Ok(request)
        }
        Err(refusal) => {
            crate::tunnel::refused(ctx, io.peer, &request, &refusal);
            io.reply(ReplyCode::NotAllowedByRuleset, unspecified())
                .await?;
            Err(refusal.into())
        }
    }
}

/// Resolve the target, filter its addresses and connect.
async fn reach(
    ctx: &ListenerContext,
    auth: &AuthInfo,
    local: SocketAddr,
    target: &Target,
) -> Result<(TcpStream, SocketAddr), SessionError> {
    let candidates = outbound::resolve(&target.requested, target.source).await?;
    let mut allowed = Vec::with_capacity(candidates.len());
    let mut refusal = None;
    for addr in candidates {
        match allowed_destination(ctx, auth, local, addr).await {
            Ok(()) => allowed.push(addr),
            Err(err) => {
                ctx.metrics.destinations_refused.inc();
                debug!(target = %target.requested, address = %addr, error = %err, "destination address refused");
                refusal = Some(err);
            }
        }
    }
    if allowed.is_empty() {
        return Err(refusal.unwrap_or(SessionError::NotAllowed {
            privilege: "connect",
            resource: target.requested.to_string(),
        }));
    }
    Ok(outbound::connect_any(&allowed, target.source).await?)
}

/// Whether the resolved `addr` may be connected to: not prohibited, and
/// allowed by `kumo.aaa` under its own resource names.
async fn allowed_destination(
    ctx: &ListenerContext,
    auth: &AuthInfo,
    local: SocketAddr,
    addr: SocketAddr,
) -> Result<(), SessionError> {
    ctx.destinations.check(addr)?;
    let resource = Resource::proxy_destination(local, &addr.ip().to_string(), addr.port());
    check_access(ctx, auth, resource, "connect").await
}

/// Check `privilege` on `resource` for `auth` with `kumo.aaa` (legacy mode
/// checks nothing).
async fn check_access(
    ctx: &ListenerContext,
    auth: &AuthInfo,
    resource: Resource,
    privilege: &'static str,
) -> Result<(), SessionError> {
    let (Some(aaa), Some(policy)) = (&ctx.aaa, &ctx.policy) else {
        return Ok(());
    };
    let decision = aaa
        .authorize(policy, AclMap::default_map(), &resource, auth, privilege)
        .await;
    if decision.allow {
        return Ok(());
    }
    Err(SessionError::NotAllowed {
        privilege,
        resource: decision.target_resource,
    })
}

/// The AuthInfo of an accepted login; `None` when refused. Every outcome
/// goes to the accounting log (never the password).
/// Serve one client from its first byte (TLS handshake or SOCKS greeting)
/// to the end of its relay.
pub async fn serve_client(
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerContext,
) {
    // TCP_NODELAY and keepalive are inherited from the listening socket.
    match &ctx.tls {
        None => serve_plain(client, peer, local, ctx).await,
        // Boxed so the TLS session state does not enlarge every plain
        // session's task (held tunnels are counted in KiB).
        Some(acceptor) => Box::pin(serve_tls(client, acceptor, peer, local, ctx)).await,
    }
}

async fn serve_plain(
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerContext,
) {
    // The handshake's state (Lua call, resolution, connect) is boxed and
    // freed once it ends, so a long-lived relay keeps only its own state.
    let Some((client, dest, tunnel)) = Box::pin(handshake(client, peer, local, ctx)).await else {
        return;
    };
    let (client, dest, counters) = (&client, &dest, tunnel.counters());
    // Shaped tunnels copy: the bucket meters each chunk.
    let splice = ctx.params.use_splice && !tunnel.shaped();
    let idle = ctx.params.idle_timeout;
    let relay = move || async move {
        if splice {
            relay::relay_splice(client, dest, &ctx.pipes, &ctx.buffers, counters, idle).await
        } else {
            relay::relay_tcp_copy(client, dest, &ctx.buffers, counters, idle).await
        }
    };
    tunnel.run(ctx, Some(dest), relay).await;
}

async fn serve_tls(
    client: TcpStream,
    acceptor: &tls::TlsAcceptor,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerContext,
) {
    // The TLS handshake is bounded like every other step: a client that
    // sends a few bytes and stalls must not hold the connection.
    let client = match tokio::time::timeout(ctx.params.timeout, acceptor.accept(client)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            ctx.metrics.tls_handshake_failures.inc();
            ctx.metrics.connections_failed.inc();
            info!(peer = %peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            ctx.metrics.tls_handshake_failures.inc();
            ctx.metrics.connections_failed.inc();
            info!(peer = %peer, timeout = ?ctx.params.timeout, "TLS handshake timed out");
            return;
        }
    };
    let Some((client, dest, tunnel)) = Box::pin(handshake(client, peer, local, ctx)).await else {
        return;
    };
    // The copy relay owns the stream: keepalive now, not later.
    outbound::set_keepalive(&dest, &ctx.params.tcp_keepalive);
    let (idle, counters) = (ctx.params.idle_timeout, tunnel.counters());
    let relay = || relay::relay_copy(client, dest, counters, idle);
    tunnel.run(ctx, None, relay).await;
}

/// Run the SOCKS handshake on `client`; on success forward the client's
/// early data and hand back the stream, the destination and the tunnel.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerContext,
) -> Option<(S, TcpStream, Tunnel)> {
    let mut io = HandshakeIo {
        stream: client,
        received: Vec::with_capacity(HANDSHAKE_BUFFER),
        out: Vec::with_capacity(32),
        deadline: {
            let now = tokio::time::Instant::now();
            now.checked_add(ctx.params.timeout).unwrap_or(now)
        },
        peer,
        step: "greeting",
    };
    let deadline = io.deadline;
    // The handshake's only timer (CONNECT's own bound aside): a timeout
    // names the step it interrupted.
    let bounded = tokio::time::timeout_at(deadline, negotiate(&mut io, peer, local, ctx)).await;
    let negotiated = bounded.unwrap_or(Err(SessionError::Timeout(io.step)));
    let Connected {
        mut dest,
        connected_to,
        early_data,
        request,
    } = match negotiated {
        Ok(connected) => connected,
        Err(err) => {
            ctx.metrics.connections_failed.inc();
            match err {
                SessionError::Io(_) | SessionError::Outbound(_) | SessionError::Bind { .. } => {
                    warn!(peer = %peer, error = %err, "session failed")
                }
                _ => info!(peer = %peer, error = %err, "session ended before relaying"),
            }
            return None;
        }
    };
    if !early_data.is_empty() {
        if let Err(err) = dest.write_all(&early_data).await {
            ctx.metrics.connections_failed.inc();
            warn!(peer = %peer, error = %err, "forwarding early client data failed");
            return None;
        }
        ctx.metrics
            .bytes_client_to_dest
            .inc_by(early_data.len() as u64);
    }
    let tunnel = Tunnel::open(ctx, peer, request, connected_to, early_data.len());
    Some((io.stream, dest, tunnel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{BufferPool, PipePool, RelayCounters};
    use std::future::Future;
    use std::time::Duration;

    /// The size of the future `f` returns, without making one.
    fn future_size<A, B, C, D, Fut, F: Fn(A, B, C, D) -> Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn splice(
        client: &'static TcpStream,
        dest: &'static TcpStream,
        pipes: &'static PipePool,
        buffers: &'static BufferPool,
    ) -> impl Future + 'static {
        static COUNTERS: std::sync::OnceLock<RelayCounters> = std::sync::OnceLock::new();
        let counters = COUNTERS.get_or_init(Default::default);
        relay::relay_splice(client, dest, pipes, buffers, counters, Duration::ZERO)
    }

    /// The handshake (boxed while it runs) carries no policy call or Redis
    /// state unless it needs one: those futures are kilobytes and boxed
    /// where they are made (the verdict cache's miss, the ACL decision's
    /// miss, the fleet's calls). It was 18 KB, copied into every session's
    /// box.
    #[test]
    fn the_handshake_state_is_a_few_kilobytes() {
        type Ctx = &'static ListenerContext;
        let size = future_size::<TcpStream, SocketAddr, SocketAddr, Ctx, _, _>(handshake);
        assert!(size < 6 * 1024, "the handshake future is {size} bytes");
    }

    /// A held tunnel's task is its relay plus a little bookkeeping: the
    /// relay future must be stored once, not once per `async fn` it is
    /// passed through (it was three times, doubling memory per tunnel),
    /// and the tunnel's books once (`Tunnel::run` borrows them): under a
    /// kilobyte besides the relay.
    #[test]
    fn a_held_tunnel_keeps_one_copy_of_its_relay_state() {
        type Ctx = &'static ListenerContext;
        let session = future_size::<TcpStream, SocketAddr, SocketAddr, Ctx, _, _>(serve_client);
        let relay = future_size(splice);
        assert!(
            session < relay + 1024,
            "a session's task is {session} bytes for a {relay}-byte relay"
        );
    }
}
