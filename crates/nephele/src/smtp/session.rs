//! One connection and transaction: TCP (bound to the source address) or a
//! SOCKS5 tunnel ([`super::proxy`]: optional TLS, RFC 1929 login, BIND to
//! the proxy source address, CONNECT), then banner, EHLO, STARTTLS; and one MAIL, RCPT, DATA
//! transaction over such a connection.

use super::client::{dot_stuff, SmtpConnection, SmtpError, SmtpReply};
use super::egress::{EgressPath, EgressSource, EnableTls};
use super::health::SourceHealth;
use super::proxy::Tunnel;
use crate::delivery::Outcome;
use crate::logs::Response;
use message::Message;
use socks5::client::Credentials;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// How a session failed.
pub enum Failure {
    /// Could not get a usable SMTP connection (proxy or TCP); the next
    /// host may be tried.
    Connect(Response),
    /// The destination answered; this is the attempt's outcome.
    Transaction(Outcome),
}

/// How sending one message over a connection ended.
pub enum Sent {
    /// Accepted; the connection may carry another message.
    Delivered(Response),
    /// Refused or failed; `reusable` when the connection is still in a
    /// clean state (after `RSET`).
    Failed {
        /// What to record.
        failure: Failure,
        /// Whether the connection may be kept.
        reusable: bool,
    },
    /// The connection was dead before anything was sent.
    Stale,
}

/// Everything one session needs.
pub struct Session<'a> {
    pub source: &'a EgressSource,
    pub path: &'a EgressPath,
    pub tls: &'a tls::TlsConnector,
    pub ehlo_name: &'a str,
    /// The name presented for TLS.
    pub host: String,
    /// Where proxy failures are counted.
    pub health: &'a SourceHealth,
}

impl Session<'_> {
    /// Connect to `addr` (directly or through the proxy) and greet it.
    pub async fn open(&self, addr: SocketAddr) -> Result<SmtpConnection, Failure> {
        let conn = self.connect(addr).await.map_err(Failure::Connect)?;
        self.greet(conn, addr)
            .await
            .map_err(|err| self.failed(addr, err))
    }

    /// Send `message` over `conn` (ready for `MAIL FROM`).
    pub async fn send(
        &self,
        conn: &mut SmtpConnection,
        addr: SocketAddr,
        message: &Message,
    ) -> Sent {
        match self.transaction(conn, message).await {
            Ok(reply) => Sent::Delivered(reply_response(
                &reply,
                format!("{} {} (from {addr})", reply.code, reply.text),
            )),
            // A kept connection the server closed meanwhile: nothing was
            // sent, so a fresh connection may carry the message.
            Err(SmtpError::Io {
                stage: "MAIL FROM", ..
            })
            | Err(SmtpError::Closed { stage: "MAIL FROM" }) => Sent::Stale,
            Err(err) => {
                let reusable = matches!(err, SmtpError::Rejected { .. })
                    && conn
                        .command("RSET", b"RSET\r\n", self.path.mail_from_timeout)
                        .await
                        .is_ok();
                Sent::Failed {
                    failure: self.failed(addr, err),
                    reusable,
                }
            }
        }
    }

    fn failed(&self, addr: SocketAddr, err: SmtpError) -> Failure {
        match err {
            SmtpError::Rejected { stage, reply } => {
                let text = format!("{addr} answered {stage} with {} {}", reply.code, reply.text);
                let response = reply_response(&reply, text);
                if reply.code >= 500 {
                    Failure::Transaction(Outcome::Permanent(response))
                } else {
                    Failure::Transaction(Outcome::Transient(response))
                }
            }
            other => Failure::Transaction(Outcome::Transient(Response::new(
                451,
                (4, 4, 2),
                format!("destination {addr}: {other}"),
            ))),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SmtpConnection, Response> {
        let timeout = self.path.connect_timeout;
        let Some(proxy) = &self.source.socks5_proxy_server else {
            let work = connect_from(self.source.source_address, addr);
            let stream = tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| {
                    Response::new(
                        451,
                        (4, 4, 1),
                        format!("connecting to {addr}: timed out after {timeout:?}"),
                    )
                })?
                .map_err(|err| {
                    Response::new(451, (4, 4, 1), format!("connecting to {addr}: {err}"))
                })?;
            return Ok(SmtpConnection::new(Box::new(stream), Vec::new()));
        };
        let password = match &self.source.socks5_proxy_password {
            Some(key) => match key.load() {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(err) => {
                    return Err(Response::new(
                        451,
                        (4, 3, 0),
                        format!(
                            "loading socks5_proxy_password ({}): {err:#}",
                            key.describe()
                        ),
                    ))
                }
            },
            None => String::new(),
        };
        let tunnel = Tunnel {
            proxy,
            tls: self.source.socks5_proxy_tls.as_ref(),
            credentials: self
                .source
                .socks5_proxy_username
                .as_deref()
                .map(|user| Credentials {
                    user,
                    pass: &password,
                }),
            bind: self
                .source
                .socks5_proxy_source_address
                .map(|ip| SocketAddr::new(ip, 0)),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        tunnel.open(addr, deadline).await.map_err(|failure| {
            if failure.unhealthy {
                let rule = self.source.suspend_when_proxy_unhealthy.as_ref();
                let now = std::time::Instant::now();
                self.health.proxy_failed(&self.source.name, rule, now);
            }
            Response::new(451, (4, 4, 1), failure.text)
        })
    }

    /// Banner, EHLO, and STARTTLS as `enable_tls` says.
    async fn greet(
        &self,
        mut conn: SmtpConnection,
        addr: SocketAddr,
    ) -> Result<SmtpConnection, SmtpError> {
        let timeout = self.path.ehlo_timeout;
        conn.expect_positive("banner", timeout).await?;
        let ehlo = format!("EHLO {}\r\n", self.ehlo_name);
        let reply = conn.command("EHLO", ehlo.as_bytes(), timeout).await?;
        let offers_tls = reply
            .text
            .split(' ')
            .any(|word| word.eq_ignore_ascii_case("STARTTLS"));
        let want = match self.path.enable_tls {
            EnableTls::Disabled => false,
            EnableTls::Opportunistic => offers_tls,
            EnableTls::Required if !offers_tls => {
                return Err(SmtpError::Tls(format!(
                    "enable_tls is Required but {addr} does not offer STARTTLS"
                )))
            }
            EnableTls::Required => true,
        };
        if !want {
            return Ok(conn);
        }
        let timeout = self.path.starttls_timeout;
        conn.command("STARTTLS", b"STARTTLS\r\n", timeout).await?;
        let mut conn = conn.start_tls(self.tls, &self.host, timeout).await?;
        conn.command("EHLO", ehlo.as_bytes(), self.path.ehlo_timeout)
            .await?;
        Ok(conn)
    }

    async fn transaction(
        &self,
        conn: &mut SmtpConnection,
        message: &Message,
    ) -> Result<SmtpReply, SmtpError> {
        let path = self.path;
        let mail = format!("MAIL FROM:<{}>\r\n", message.sender().email());
        conn.command("MAIL FROM", mail.as_bytes(), path.mail_from_timeout)
            .await?;
        let rcpt = format!("RCPT TO:<{}>\r\n", message.recipient().email());
        conn.command("RCPT TO", rcpt.as_bytes(), path.rcpt_to_timeout)
            .await?;
        conn.command("DATA", b"DATA\r\n", path.data_timeout).await?;
        let content = dot_stuff(message.data());
        conn.command("end of data", &content, path.data_dot_timeout)
            .await
    }
}

fn reply_response(reply: &SmtpReply, content: String) -> Response {
    let class = (reply.code / 100) as u8;
    let enhanced = reply.enhanced.unwrap_or((class, 0, 0));
    Response::new(reply.code, enhanced, content)
}

async fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
