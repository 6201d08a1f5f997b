//! The targets at the far end of a tunnel: an echo server (for conn and
//! hold) and a discard server (for bulk). Both run until their task is
//! dropped or the process exits; each connection task ends at EOF or error.

use crate::net::tune;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which far-end behaviour a server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Writes back every byte it reads.
    Echo,
    /// Reads and drops every byte.
    Discard,
}

/// Bind `addr` (port 0 allowed) with a deep backlog, so bursts of connects
/// from 64 loops or a 2,000-tunnel hold are not dropped as SYN overflow.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .context("create listening socket")?;
    socket.set_reuseaddr(true).context("set SO_REUSEADDR")?;
    socket.bind(addr).with_context(|| format!("bind {addr}"))?;
    socket
        .listen(4096)
        .with_context(|| format!("listen on {addr}"))
}

/// Accept connections on `listener` forever, serving each with `kind`.
pub async fn serve(listener: TcpListener, kind: ServerKind) -> Result<()> {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // EMFILE and friends: keep serving the connections we have.
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            // Errors here are the client's RST on close: expected, not news.
            let _ = match kind {
                ServerKind::Echo => echo(stream).await,
                ServerKind::Discard => discard(stream).await,
            };
        });
    }
}

/// Bind and serve in a background task; returns the bound address.
pub fn spawn(addr: SocketAddr, kind: ServerKind) -> Result<(SocketAddr, JoinHandle<Result<()>>)> {
    let listener = bind(addr)?;
    let local = listener.local_addr().context("listener address")?;
    Ok((local, tokio::spawn(serve(listener, kind))))
}

/// Echo until EOF, then drop with `SO_LINGER 0`: the RST ends the peer's
/// FIN_WAIT_2 at once so neither side keeps a TIME_WAIT entry.
async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    tune(&stream).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Read and drop until EOF, then close normally so the client sees EOF
/// after every byte it sent has been read. The bytes are spliced into
/// `/dev/null` rather than copied out, so the load tool's side of a bulk run
/// costs as little CPU as possible and the proxy, not the discard server,
/// is what the run measures. Falls back to reads when splice is refused.
async fn discard(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    if let Ok(sink) = SpliceSink::new() {
        loop {
            stream.readable().await?;
            match stream.try_io(Interest::READABLE, || sink.drain_from(&stream)) {
                Ok(0) => {
                    stream.shutdown().await?;
                    return Ok(());
                }
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if stream.read(&mut buf).await? == 0 {
            stream.shutdown().await?;
            return Ok(());
        }
    }
}

/// A pipe into `/dev/null`: socket bytes go in and are dropped without ever
/// reaching user space.
struct SpliceSink {
    pipe: splice::Pipe,
    null: std::fs::File,
}

/// The pipe size asked for (the unprivileged maximum by default).
const SINK_PIPE_CAPACITY: usize = 1 << 20;

impl SpliceSink {
    fn new() -> std::io::Result<Self> {
        let mut pipe = splice::Pipe::new()?;
        pipe.grow_once(SINK_PIPE_CAPACITY);
        Ok(SpliceSink {
            pipe,
            null: std::fs::OpenOptions::new().write(true).open("/dev/null")?,
        })
    }

    /// Move what the socket holds into the pipe and on into `/dev/null`.
    /// `Ok(0)` is EOF; `WouldBlock` means the socket is drained.
    fn drain_from(&self, stream: &TcpStream) -> std::io::Result<usize> {
        let n = self
            .pipe
            .fill_from(stream.as_raw_fd(), self.pipe.capacity())?;
        let mut left = n;
        while left > 0 {
            left -= self.pipe.drain_to(self.null.as_raw_fd(), left)?;
        }
        Ok(n)
    }
}
