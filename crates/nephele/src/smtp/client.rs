//! A small SMTP client over any async byte stream (plain TCP, a SOCKS5
//! tunnel, TLS after STARTTLS): replies are parsed by a pure function over
//! the receive buffer, and every step is bounded by its own timeout.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest reply accepted (all lines together).
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A byte stream the client can run over.
pub trait SmtpStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> SmtpStream for T {}

/// A (possibly multi-line) server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    /// The three-digit code.
    pub code: u16,
    /// The RFC 3463 code at the start of the text, when present.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text of every line (enhanced code removed), joined by spaces.
    pub text: String,
}

impl SmtpReply {
    /// `2xx` or `3xx`.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// Reading or writing failed.
    #[error("i/o error during {stage}: {source}")]
    Io {
        /// The step.
        stage: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The step's timeout passed.
    #[error("no answer to {stage} within {timeout:?}")]
    Timeout {
        /// The step.
        stage: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// The server closed the connection.
    #[error("server closed the connection during {stage}")]
    Closed {
        /// The step.
        stage: &'static str,
    },
    /// The server sent something that is not an SMTP reply.
    #[error("malformed reply during {stage}: {detail}")]
    Malformed {
        /// The step.
        stage: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The server answered with a failure code.
    #[error("{stage} answered {} {}", .reply.code, .reply.text)]
    Rejected {
        /// The step.
        stage: &'static str,
        /// The reply.
        reply: SmtpReply,
    },
    /// STARTTLS was required but not offered, or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Parse one whole reply at the start of `buf`: the reply and the bytes it
/// used, `Ok(None)` when more bytes are needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(SmtpReply, usize)>, String> {
    let mut pos = 0;
    let mut code = None;
    let mut texts = Vec::new();
    loop {
        let Some(end) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_REPLY_BYTES {
                return Err("reply too long".into());
            }
            return Ok(None);
        };
        let line = &buf[pos..pos + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += end + 1;
        let line = String::from_utf8_lossy(line);
        if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            return Err(format!("not a reply line: {line:?}"));
        }
        let this: u16 = line[..3].parse().map_err(|_| "bad code".to_string())?;
        if *code.get_or_insert(this) != this {
            return Err(format!("code changed within a reply: {line:?}"));
        }
        let sep = line.as_bytes().get(3).copied();
        texts.push(line.get(4..).unwrap_or("").to_owned());
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => break,
            Some(_) => return Err(format!("bad separator: {line:?}")),
        }
    }
    let code = code.expect("at least one line");
    let mut text = texts.join(" ");
    let enhanced = parse_enhanced(&text, code);
    if enhanced.is_some() {
        if let Some((_, rest)) = text.split_once(' ') {
            text = rest.to_owned();
        } else {
            text.clear();
        }
    }
    Ok(Some((
        SmtpReply {
            code,
            enhanced,
            text,
        },
        pos,
    )))
}

fn parse_enhanced(text: &str, code: u16) -> Option<(u8, u16, u16)> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && u16::from(class) == code / 100).then_some((class, subject, detail))
}

/// Dot-stuff `data` and append the terminating `.` line (adding a final
/// CRLF when the data lacks one).
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 5);
    let mut at_line_start = true;
    for &byte in data {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
    }
    if !data.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// One SMTP connection: the stream and its receive buffer.
pub struct SmtpConnection {
    stream: Box<dyn SmtpStream>,
    received: Vec<u8>,
}

impl SmtpConnection {
    /// Wrap a connected stream; `pending` are bytes already read from it.
    pub fn new(stream: Box<dyn SmtpStream>, pending: Vec<u8>) -> Self {
        SmtpConnection {
            stream,
            received: pending,
        }
    }

    /// Read one reply within `timeout`.
    pub async fn read_reply(
        &mut self,
        stage: &'static str,
        timeout: Duration,
    ) -> Result<SmtpReply, SmtpError> {
        let work = async {
            loop {
                match parse_reply(&self.received) {
                    Ok(Some((reply, used))) => {
                        self.received.drain(..used);
                        return Ok(reply);
                    }
                    Ok(None) => {}
                    Err(detail) => return Err(SmtpError::Malformed { stage, detail }),
                }
                self.received.reserve(1024);
                let read = self
                    .stream
                    .read_buf(&mut self.received)
                    .await
                    .map_err(|source| SmtpError::Io { stage, source })?;
                if read == 0 {
                    return Err(SmtpError::Closed { stage });
                }
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| SmtpError::Timeout { stage, timeout })?
    }

    /// Send `bytes`, then read the reply, all within `timeout`; a `4xx` or
    /// `5xx` is [`SmtpError::Rejected`].
    pub async fn command(
        &mut self,
        stage: &'static str,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<SmtpReply, SmtpError> {
        let now = tokio::time::Instant::now();
        // An unrepresentable deadline times out at once rather than panic.
        let deadline = now.checked_add(timeout).unwrap_or(now);
        tokio::time::timeout_at(deadline, self.stream.write_all(bytes))
            .await
            .map_err(|_| SmtpError::Timeout { stage, timeout })?
            .map_err(|source| SmtpError::Io { stage, source })?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = self.read_reply(stage, left).await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(SmtpError::Rejected { stage, reply })
        }
    }

    /// Expect a positive reply (the banner).
    pub async fn expect_positive(
        &mut self,
        stage: &'static str,
        timeout: Duration,
    ) -> Result<SmtpReply, SmtpError> {
        let reply = self.read_reply(stage, timeout).await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(SmtpError::Rejected { stage, reply })
        }
    }

    /// Upgrade to TLS after a successful `STARTTLS`.
    pub async fn start_tls(
        self,
        connector: &tls::TlsConnector,
        host: &str,
        timeout: Duration,
    ) -> Result<SmtpConnection, SmtpError> {
        let name = tls::server_name(host).map_err(|err| SmtpError::Tls(format!("{err:#}")))?;
        let handshake = connector.connect(name, self.stream);
        let stream = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| SmtpError::Timeout {
                stage: "TLS handshake",
                timeout,
            })?
            .map_err(|err| SmtpError::Tls(format!("handshake failed: {err}")))?;
        Ok(SmtpConnection::new(Box::new(stream), Vec::new()))
    }

    /// Say `QUIT` without waiting long for the answer.
    pub async fn quit(mut self) {
        let _ = self
            .command("QUIT", b"QUIT\r\n", Duration::from_secs(2))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"250-a\r\n250 b").unwrap(), None);
        let (reply, used) = parse_reply(b"250-mx.example\r\n250-STARTTLS\r\n250 8BITMIME\r\nX")
            .unwrap()
            .unwrap();
        assert_eq!(used, 44);
        assert_eq!(reply.code, 250);
        assert_eq!(reply.text, "mx.example STARTTLS 8BITMIME");
        let (reply, _) = parse_reply(b"451 4.3.0 try later\r\n").unwrap().unwrap();
        assert_eq!(reply.enhanced, Some((4, 3, 0)));
        assert_eq!(reply.text, "try later");
        let (reply, _) = parse_reply(b"550 5.1.1\n").unwrap().unwrap();
        assert_eq!((reply.enhanced, reply.text.as_str()), (Some((5, 1, 1)), ""));
        let (reply, _) = parse_reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(reply.enhanced, None);
        assert!(parse_reply(b"hello\r\n").is_err());
        assert!(parse_reply(b"250-a\r\n251 b\r\n").is_err());
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n..c\r\n"),
            b"..a\r\nb\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
    }
}
