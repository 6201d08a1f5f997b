//! The client side of a SOCKS5 handshake (RFC 1928 greeting, BIND and
//! CONNECT, RFC 1929 username/password), driven over any async byte stream.
//!
//! All bytes are produced and parsed by this crate's sans-IO codec; this
//! module only moves them. It is generic over the stream so the same code
//! runs over plain TCP or TLS. Available with the `tokio` feature.

use crate::{
    encode_greeting, encode_request, encode_userpass_request, parse_method_selection, parse_reply,
    parse_userpass_status, AuthMethod, Command, ParseResult, Parsed, Reply, ReplyCode, Socks5Error,
    TargetAddr,
};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a client handshake failed. A refused login, a refused request (the
/// proxy's own policy) and an unreachable destination are distinct variants
/// so callers can tell a proxy problem from a destination problem.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed while reading or writing.
    #[error("i/o error during {stage}: {source}")]
    Io {
        /// Which message was being sent or awaited.
        stage: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server closed the connection before a whole message arrived.
    #[error("proxy closed the connection while awaiting {stage}")]
    Closed {
        /// Which message was awaited.
        stage: &'static str,
    },
    /// The server sent bytes the codec rejects, or a field was too long.
    #[error("protocol error during {stage}: {source}")]
    Protocol {
        /// Which message was being encoded or parsed.
        stage: &'static str,
        /// The codec's error.
        source: Socks5Error,
    },
    /// The server chose a method the client did not offer, or none at all.
    #[error("proxy selected method {0:#04x}, which was not offered")]
    MethodRejected(u8),
    /// The server answered the RFC 1929 request with a failure status.
    #[error("proxy refused the login")]
    AuthRejected,
    /// The proxy itself refused a BIND or CONNECT (policy, unsupported
    /// command, bad source address...).
    #[error("proxy refused the {command} request (reply code {code})", code = .code.code())]
    Refused {
        /// `BIND` or `CONNECT`.
        command: &'static str,
        /// The reply code.
        code: ReplyCode,
    },
    /// The proxy could not reach the destination (refused, unreachable,
    /// timed out).
    #[error("destination unreachable through the proxy (reply code {code})", code = .0.code())]
    DestinationUnreachable(ReplyCode),
}

impl HandshakeError {
    /// A short, stable name for error counting.
    pub fn kind(&self) -> &'static str {
        match self {
            HandshakeError::Io { .. } => "io",
            HandshakeError::Closed { .. } => "closed",
            HandshakeError::Protocol { .. } => "protocol",
            HandshakeError::MethodRejected(_) => "method_rejected",
            HandshakeError::AuthRejected => "auth_rejected",
            HandshakeError::Refused { .. } => "refused",
            HandshakeError::DestinationUnreachable(_) => "destination_unreachable",
        }
    }
}

/// Credentials for the RFC 1929 sub-negotiation.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The username, sent as bytes.
    pub user: &'a str,
    /// The password, sent as bytes; never printed.
    pub pass: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("pass", &"<redacted>")
            .finish()
    }
}

/// What the server answered to a successful CONNECT.
#[derive(Debug)]
pub struct Connected {
    /// The address the server reports it bound for the outgoing connection.
    pub bound: TargetAddr,
    /// Bytes that arrived after the reply in the same read: the first bytes
    /// of the tunnel, which the caller must consume before reading again.
    pub pending: Vec<u8>,
}

/// Run a SOCKS5 client handshake on `stream` and CONNECT it to `target`
/// (see [`socks5_handshake`]).
pub async fn socks5_connect<S>(
    stream: &mut S,
    target: &TargetAddr,
    credentials: Option<Credentials<'_>>,
) -> Result<Connected, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    socks5_handshake(stream, target, credentials, None).await
}

/// Run a SOCKS5 client handshake on `stream` and CONNECT it to `target`,
/// first asking with BIND for `source` as the outgoing address when given
/// (KumoMTA's way of choosing the proxy's source address).
///
/// With `credentials` only username/password is offered (so a server that
/// would accept no-auth cannot skip the login); without, only no-auth. Each
/// message waits for the server's answer before the next is sent, as
/// RFC 1928 clients do. The caller bounds the whole call with a timeout.
pub async fn socks5_handshake<S>(
    stream: &mut S,
    target: &TargetAddr,
    credentials: Option<Credentials<'_>>,
    source: Option<SocketAddr>,
) -> Result<Connected, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = Exchange {
        stream,
        out: Vec::with_capacity(64),
        inbuf: Vec::with_capacity(64),
    };
    io.negotiate_method(credentials.is_some()).await?;
    if let Some(creds) = credentials {
        io.login(creds).await?;
    }
    if let Some(source) = source {
        let reply = io.request(Command::Bind, &TargetAddr::Ip(source)).await?;
        if reply.code != ReplyCode::Succeeded {
            return Err(HandshakeError::Refused {
                command: "BIND",
                code: reply.code,
            });
        }
    }
    let reply = io.request(Command::Connect, target).await?;
    match reply.code {
        ReplyCode::Succeeded => Ok(Connected {
            bound: reply.bound,
            pending: io.inbuf,
        }),
        code @ (ReplyCode::NetworkUnreachable
        | ReplyCode::HostUnreachable
        | ReplyCode::ConnectionRefused
        | ReplyCode::TtlExpired) => Err(HandshakeError::DestinationUnreachable(code)),
        code => Err(HandshakeError::Refused {
            command: "CONNECT",
            code,
        }),
    }
}

/// One handshake's stream and buffers: each step sends one message and
/// waits for its answer, keeping bytes that arrived past it in `inbuf`.
struct Exchange<'s, S> {
    stream: &'s mut S,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Exchange<'_, S> {
    /// RFC 1928 method negotiation: offer only username/password when
    /// logging in, else only no-auth, and insist the proxy picks it.
    async fn negotiate_method(&mut self, login: bool) -> Result<(), HandshakeError> {
        let method = if login {
            AuthMethod::USERNAME_PASSWORD
        } else {
            AuthMethod::NO_AUTH
        };
        self.out.clear();
        encode_greeting(&[method], &mut self.out).map_err(protocol("greeting"))?;
        send(self.stream, &self.out, "greeting").await?;
        let stage = "method selection";
        let chosen = receive(self.stream, &mut self.inbuf, stage, parse_method_selection).await?;
        if chosen != method {
            return Err(HandshakeError::MethodRejected(chosen.0));
        }
        Ok(())
    }

    /// The RFC 1929 username/password sub-negotiation.
    async fn login(&mut self, creds: Credentials<'_>) -> Result<(), HandshakeError> {
        self.out.clear();
        encode_userpass_request(creds.user.as_bytes(), creds.pass.as_bytes(), &mut self.out)
            .map_err(protocol("username/password request"))?;
        send(self.stream, &self.out, "username/password request").await?;
        let stage = "username/password status";
        let accepted = receive(self.stream, &mut self.inbuf, stage, parse_userpass_status).await?;
        if !accepted {
            return Err(HandshakeError::AuthRejected);
        }
        Ok(())
    }

    /// A BIND or CONNECT request and the proxy's reply to it.
    async fn request(
        &mut self,
        command: Command,
        addr: &TargetAddr,
    ) -> Result<Reply, HandshakeError> {
        let (request, reply) = match command {
            Command::Bind => ("BIND request", "BIND reply"),
            _ => ("request", "reply"),
        };
        self.out.clear();
        encode_request(command, addr, &mut self.out).map_err(protocol(request))?;
        send(self.stream, &self.out, request).await?;
        receive(self.stream, &mut self.inbuf, reply, parse_reply).await
    }
}

fn protocol(stage: &'static str) -> impl FnOnce(Socks5Error) -> HandshakeError {
    move |source| HandshakeError::Protocol { stage, source }
}

async fn send<S>(stream: &mut S, bytes: &[u8], stage: &'static str) -> Result<(), HandshakeError>
where
    S: AsyncWrite + Unpin,
{
    stream
        .write_all(bytes)
        .await
        .map_err(|source| HandshakeError::Io { stage, source })
}

/// Read until `parse` yields a whole message, then drop its bytes from
/// `buf` and keep whatever followed it.
async fn receive<S, T>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    stage: &'static str,
    parse: impl Fn(&[u8]) -> ParseResult<T>,
) -> Result<T, HandshakeError>
where
    S: AsyncRead + Unpin,
{
    loop {
        match parse(buf).map_err(protocol(stage))? {
            Parsed::Complete { value, consumed } => {
                buf.drain(..consumed);
                return Ok(value);
            }
            Parsed::Incomplete => {
                buf.reserve(64);
                let read = stream
                    .read_buf(buf)
                    .await
                    .map_err(|source| HandshakeError::Io { stage, source })?;
                if read == 0 {
                    return Err(HandshakeError::Closed { stage });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_method_selection, encode_reply, encode_userpass_status};
    use std::net::SocketAddr;
    use tokio::io::duplex;

    fn target() -> TargetAddr {
        TargetAddr::Ip("127.0.0.1:7".parse::<SocketAddr>().unwrap())
    }

    /// A scripted server: answers each client message with the canned bytes,
    /// split into one-byte writes to exercise the Incomplete path.
    async fn scripted_server(
        mut server: tokio::io::DuplexStream,
        answers: Vec<Vec<u8>>,
        trailing: &'static [u8],
    ) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        for (i, answer) in answers.iter().enumerate() {
            let n = server.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            for byte in answer {
                server.write_all(&[*byte]).await.unwrap();
            }
            if i + 1 == answers.len() {
                server.write_all(trailing).await.unwrap();
            }
        }
        seen
    }

    fn reply_ok() -> Vec<u8> {
        let mut out = Vec::new();
        encode_reply(ReplyCode::Succeeded, &target(), &mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn no_auth_connect() {
        let (mut client, server) = duplex(1024);
        let mut selection = Vec::new();
        encode_method_selection(AuthMethod::NO_AUTH, &mut selection);
        let server = tokio::spawn(scripted_server(server, vec![selection, reply_ok()], b""));
        let connected = socks5_connect(&mut client, &target(), None).await.unwrap();
        assert_eq!(connected.bound, target());
        assert!(connected.pending.is_empty());
        let seen = server.await.unwrap();
        assert_eq!(&seen[..3], &[5, 1, 0]);
    }

    #[tokio::test]
    async fn userpass_connect_keeps_trailing_bytes() {
        let (mut client, server) = duplex(1024);
        let mut selection = Vec::new();
        encode_method_selection(AuthMethod::USERNAME_PASSWORD, &mut selection);
        let mut status = Vec::new();
        encode_userpass_status(true, &mut status);
        let server = tokio::spawn(scripted_server(
            server,
            vec![selection, status, reply_ok()],
            b"hi",
        ));
        let creds = Credentials {
            user: "bench",
            pass: "benchpass",
        };
        let connected = socks5_connect(&mut client, &target(), Some(creds))
            .await
            .unwrap();
        // The trailing bytes may or may not arrive with the reply's last byte.
        assert!(connected.pending.is_empty() || connected.pending == b"hi");
        let seen = server.await.unwrap();
        assert_eq!(&seen[..3], &[5, 1, 2]);
    }

    #[tokio::test]
    async fn auth_failure_is_reported() {
        let (mut client, server) = duplex(1024);
        let mut selection = Vec::new();
        encode_method_selection(AuthMethod::USERNAME_PASSWORD, &mut selection);
        let mut status = Vec::new();
        encode_userpass_status(false, &mut status);
        tokio::spawn(scripted_server(server, vec![selection, status], b""));
        let creds = Credentials {
            user: "bench",
            pass: "wrong",
        };
        let err = socks5_connect(&mut client, &target(), Some(creds))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "auth_rejected");
    }

    #[tokio::test]
    async fn refused_method_and_early_close() {
        let (mut client, server) = duplex(1024);
        let mut selection = Vec::new();
        encode_method_selection(AuthMethod::NO_ACCEPTABLE, &mut selection);
        tokio::spawn(scripted_server(server, vec![selection], b""));
        let err = socks5_connect(&mut client, &target(), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "method_rejected");

        let (mut client, server) = duplex(1024);
        drop(server);
        let err = socks5_connect(&mut client, &target(), None)
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), "closed" | "io"), "{err}");
    }

    #[tokio::test]
    async fn bind_then_connect_and_distinct_refusals() {
        let source: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let (mut client, server) = duplex(1024);
        let mut selection = Vec::new();
        encode_method_selection(AuthMethod::NO_AUTH, &mut selection);
        let server = tokio::spawn(scripted_server(
            server,
            vec![selection.clone(), reply_ok(), reply_ok()],
            b"",
        ));
        socks5_handshake(&mut client, &target(), None, Some(source))
            .await
            .unwrap();
        let seen = server.await.unwrap();
        // greeting (3 bytes), then BIND: VER CMD=2 RSV ATYP=1 127.0.0.2
        assert_eq!(&seen[3..10], &[5, 2, 0, 1, 127, 0, 0]);

        for (code, kind) in [
            (ReplyCode::NotAllowedByRuleset, "refused"),
            (ReplyCode::ConnectionRefused, "destination_unreachable"),
        ] {
            let (mut client, server) = duplex(1024);
            let mut reply = Vec::new();
            encode_reply(code, &target(), &mut reply).unwrap();
            tokio::spawn(scripted_server(server, vec![selection.clone(), reply], b""));
            let err = socks5_connect(&mut client, &target(), None)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
        }
    }
}
