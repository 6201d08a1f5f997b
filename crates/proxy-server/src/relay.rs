//! Relaying bytes between client and destination once a CONNECT succeeded:
//! splice(2) through a pooled pipe for plain TCP, or a user-space copy.
//! Each direction ends on EOF by shutting down the write side of the other
//! socket (half-close is passed on); an error in either ends both.

use crate::shaping::TokenBucket;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use splice::Pipe;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
// tokio's clock, so the idle timeout can be tested under a paused clock.
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What a pipe grows to once a splice filled it: bulk transfers then move
/// more per syscall. Grown only on demand, since every pipe page counts
/// against the user's pipe-user-pages limits.
const PIPE_BULK_CAPACITY: usize = 1 << 20;
/// Buffer per direction for the user-space copy.
const COPY_BUFFER: usize = 16 * 1024;
/// Pipes kept for reuse; more than this are closed when returned.
const MAX_POOLED_PIPES: usize = 4096;
/// Copy buffers kept for reuse (16 KiB each).
const MAX_POOLED_BUFFERS: usize = 1024;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Both directions reached EOF; `client_first` when the client's
    /// direction ended before the destination's.
    Completed { client_first: bool },
    /// Neither direction moved a byte for `idle_timeout`.
    IdleTimeout,
}

/// Where one direction's bytes are counted, and the bucket that shapes it.
#[derive(Default, Clone)]
pub struct DirectionCounter {
    /// The listener's metric.
    pub listener: Counter,
    /// This tunnel's own count (session record, admin list).
    pub session: Counter,
    /// The identity's metric, when the tunnel has a login.
    pub identity: Option<Counter>,
    /// Set when the identity's bandwidth is limited (copy relays only).
    pub shaper: Option<Arc<TokenBucket>>,
}

impl DirectionCounter {
    /// Count `n` relayed bytes.
    pub fn add(&self, n: usize) {
        self.listener.inc_by(n as u64);
        self.session.inc_by(n as u64);
        if let Some(identity) = &self.identity {
            identity.inc_by(n as u64);
        }
    }

    /// Count `n` relayed bytes and, when shaped, wait until the identity's
    /// bucket allows more.
    async fn account(&self, n: usize) {
        self.add(n);
        if let Some(shaper) = &self.shaper {
            shaper.consume(n).await;
        }
    }
}

/// Byte counters of the two directions.
#[derive(Default, Clone)]
pub struct RelayCounters {
    pub client_to_dest: DirectionCounter,
    pub dest_to_client: DirectionCounter,
}

impl RelayCounters {
    /// Whether either direction is shaped (such tunnels use copies).
    pub fn shaped(&self) -> bool {
        self.client_to_dest.shaper.is_some() || self.dest_to_client.shaper.is_some()
    }
}

/// Which direction reached EOF first (0: none yet, 1: client, 2: dest).
#[derive(Default)]
struct FirstEof(AtomicU8);

impl FirstEof {
    fn ended(&self, client: bool) {
        let side = if client { 1 } else { 2 };
        let _ = self
            .0
            .compare_exchange(0, side, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn outcome(&self) -> RelayOutcome {
        RelayOutcome::Completed {
            client_first: self.0.load(Ordering::Relaxed) != 2,
        }
    }
}

/// What one direction reports to: its byte counter, the tunnel's activity
/// clock and which direction reached EOF first. Each direction notes its
/// own EOF rather than being wrapped in a future that does: a future
/// passed into another is stored twice, and a held tunnel's task is
/// counted in KiB.
struct DirectionBooks<'a> {
    counter: &'a DirectionCounter,
    activity: &'a Activity,
    first_eof: &'a FirstEof,
    from_client: bool,
}

impl<'a> DirectionBooks<'a> {
    /// The books of the client → destination and destination → client
    /// directions.
    fn pair(
        counters: &'a RelayCounters,
        activity: &'a Activity,
        first_eof: &'a FirstEof,
    ) -> (Self, Self) {
        let books = |counter, from_client| DirectionBooks {
            counter,
            activity,
            first_eof,
            from_client,
        };
        (
            books(&counters.client_to_dest, true),
            books(&counters.dest_to_client, false),
        )
    }

    fn reached_eof(&self) {
        self.first_eof.ended(self.from_client);
    }
}

/// Last time a byte moved, shared by both directions and the idle watchdog.
struct Activity {
    start: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_millis: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_millis.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Resolves when the relay has been idle for `idle_timeout` (never if zero).
async fn idle_watchdog(activity: &Activity, idle_timeout: Duration) {
    if idle_timeout.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let idle = activity.idle_for();
        if idle >= idle_timeout {
            return;
        }
        tokio::time::sleep(idle_timeout - idle).await;
    }
}

/// Empty pipes kept for reuse, saving two syscalls per tunnel direction.
#[derive(Default)]
pub struct PipePool {
    pipes: Mutex<Vec<Pipe>>,
}

impl PipePool {
    fn take(&self) -> io::Result<Pipe> {
        match self.pipes.lock().pop() {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(),
        }
    }

    /// Only empty pipes may come back: a pipe that still holds bytes from an
    /// aborted transfer would leak them into the next tunnel.
    fn give_back(&self, pipe: Pipe) {
        let mut pipes = self.pipes.lock();
        if pipes.len() < MAX_POOLED_PIPES {
            pipes.push(pipe);
        }
    }
}

/// A pipe on loan from the pool. It goes back when dropped, including when
/// the relay future is cancelled, unless it may still hold bytes from an
/// aborted transfer: then it is closed.
struct LoanedPipe<'a> {
    pipe: Option<Pipe>,
    pool: &'a PipePool,
    bytes_inside: usize,
}

impl Drop for LoanedPipe<'_> {
    fn drop(&mut self) {
        if let (Some(pipe), 0) = (self.pipe.take(), self.bytes_inside) {
            self.pool.give_back(pipe);
        }
    }
}

/// Run `op` (a read-side syscall) under `stream`'s read readiness. A short
/// read means the socket was drained, so readiness is cleared right away
/// (reported to tokio as `WouldBlock`) instead of costing one more syscall
/// that would only answer EAGAIN; tokio keeps readiness that arrived
/// meanwhile, so no wake-up is lost.
fn read_clearing_readiness(
    stream: &TcpStream,
    capacity: usize,
    op: impl FnOnce() -> io::Result<usize>,
) -> io::Result<usize> {
    let mut short_read = None;
    let result = stream.try_io(Interest::READABLE, || {
        let n = op()?;
        if n > 0 && n < capacity {
            short_read = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (result, short_read) {
        (_, Some(n)) => Ok(n),
        (result, None) => result,
    }
}

/// One direction with splice: socket → pipe → socket until EOF. It starts
/// with copies: small exchanges (handshakes, request and response) take the
/// fewest syscalls that way, since a short read proves the socket drained
/// while a short splice does not. The first read that fills the copy buffer
/// marks a bulk transfer, which continues with splice.
async fn splice_one_way(
    from: &TcpStream,
    to: &TcpStream,
    mut loan: LoanedPipe<'_>,
    buffers: &BufferPool,
    books: &DirectionBooks<'_>,
) -> io::Result<()> {
    loop {
        let received = copy_tcp_chunk(from, to, buffers, books.activity).await?;
        if received == 0 {
            shutdown_write(to);
            books.reached_eof();
            return Ok(());
        }
        books.counter.add(received);
        if received == COPY_BUFFER {
            break;
        }
    }
    // The pipe and its fill level, borrowed apart: `bytes_inside` must be
    // current at every await, so a cancelled transfer drops a pipe that
    // still holds bytes instead of returning it to the pool.
    let LoanedPipe {
        pipe: Some(pipe),
        bytes_inside,
        ..
    } = &mut loan
    else {
        return Err(io::Error::other("splice relay started without a pipe"));
    };
    loop {
        let capacity = pipe.capacity();
        let received = loop {
            from.readable().await?;
            // Not `read_clearing_readiness`: a splice also stops short when
            // the pipe runs out of slots (one per fragment, and fragments
            // can be a few hundred bytes), with data still queued. Only
            // EAGAIN proves the socket drained.
            match from.try_io(Interest::READABLE, || {
                pipe.fill_from(from.as_raw_fd(), capacity)
            }) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        };
        if received == 0 {
            shutdown_write(to);
            books.reached_eof();
            return Ok(());
        }
        *bytes_inside = received;
        books.activity.touch();
        while *bytes_inside > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                pipe.drain_to(to.as_raw_fd(), *bytes_inside)
            }) {
                Ok(n) => *bytes_inside -= n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
        if received == capacity {
            // A full pipe: this direction is a bulk transfer.
            pipe.grow_once(PIPE_BULK_CAPACITY);
        }
        books.counter.add(received);
        books.activity.touch();
    }
}

fn raw_read(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a valid, exclusively borrowed buffer of its length.
    let n = unsafe { libc::read(stream.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn shutdown_write(stream: &TcpStream) {
    // The peer may already be gone; the other direction reports real errors.
    let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Write);
}

/// One direction with a user-space buffer until EOF, then shut down writes.
async fn copy_one_way<R, W>(mut from: R, mut to: W, books: &DirectionBooks<'_>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes its TCP side without close_notify has
            // ended its direction; the other one goes on.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(err) => return Err(err),
        };
        if n == 0 {
            // Shutdown errors mean the peer is gone; nothing left to tell it.
            let _ = to.shutdown().await;
            books.reached_eof();
            return Ok(());
        }
        books.activity.touch();
        to.write_all(&buf[..n]).await?;
        books.activity.touch();
        books.counter.account(n).await;
    }
}

impl PipePool {
    fn loan(&self) -> io::Result<LoanedPipe<'_>> {
        Ok(LoanedPipe {
            pipe: Some(self.take()?),
            pool: self,
            bytes_inside: 0,
        })
    }
}

/// Relay two TCP streams with splice(2). When no pipe can be had (the
/// process is out of descriptors) the tunnel is relayed with user-space
/// copies instead of being dropped after its success reply.
pub async fn relay_splice(
    client: &TcpStream,
    dest: &TcpStream,
    pipes: &PipePool,
    buffers: &BufferPool,
    counters: &RelayCounters,
    idle_timeout: Duration,
) -> io::Result<RelayOutcome> {
    let (up, down) = match (pipes.loan(), pipes.loan()) {
        (Ok(up), Ok(down)) => (up, down),
        (Err(err), _) | (_, Err(err)) => {
            tracing::debug!(error = %err, "no pipe for splice; relaying with copies");
            return relay_tcp_copy(client, dest, buffers, counters, idle_timeout).await;
        }
    };
    let activity = Activity::new();
    let first_eof = FirstEof::default();
    let (up_books, down_books) = DirectionBooks::pair(counters, &activity, &first_eof);
    // The directions are made inside `select!`, so each is stored once.
    tokio::select! {
        result = async {
            tokio::try_join!(
                splice_one_way(client, dest, up, buffers, &up_books),
                splice_one_way(dest, client, down, buffers, &down_books),
            )
        } => result.map(|_| first_eof.outcome()),
        () = idle_watchdog(&activity, idle_timeout) => Ok(RelayOutcome::IdleTimeout),
    }
}

/// Copy buffers lent to TCP relays only while a chunk is in flight, so an
/// idle tunnel holds no buffer at all.
#[derive(Default)]
pub struct BufferPool {
    buffers: Mutex<Vec<Box<[u8]>>>,
}

impl BufferPool {
    fn take(&self) -> Box<[u8]> {
        self.buffers
            .lock()
            .pop()
            .unwrap_or_else(|| vec![0u8; COPY_BUFFER].into_boxed_slice())
    }

    fn give_back(&self, buffer: Box<[u8]>) {
        let mut buffers = self.buffers.lock();
        if buffers.len() < MAX_POOLED_BUFFERS {
            buffers.push(buffer);
        }
    }
}

/// One chunk between TCP sockets with a borrowed buffer: wait until `from`
/// is readable, borrow, read, write it all out, return the buffer. Returns
/// the bytes moved; 0 is EOF.
async fn copy_tcp_chunk(
    from: &TcpStream,
    to: &TcpStream,
    pool: &BufferPool,
    activity: &Activity,
) -> io::Result<usize> {
    loop {
        from.readable().await?;
        let mut buffer = pool.take();
        let capacity = buffer.len();
        let received = match read_clearing_readiness(from, capacity, || raw_read(from, &mut buffer))
        {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                pool.give_back(buffer);
                continue;
            }
            Err(err) => return Err(err),
        };
        if received == 0 {
            pool.give_back(buffer);
            return Ok(0);
        }
        activity.touch();
        let mut written = 0;
        while written < received {
            to.writable().await?;
            match to.try_write(&buffer[written..received]) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
        pool.give_back(buffer);
        activity.touch();
        return Ok(received);
    }
}

/// One direction between TCP sockets with borrowed buffers until EOF.
async fn copy_tcp_one_way(
    from: &TcpStream,
    to: &TcpStream,
    pool: &BufferPool,
    books: &DirectionBooks<'_>,
) -> io::Result<()> {
    loop {
        let received = copy_tcp_chunk(from, to, pool, books.activity).await?;
        if received == 0 {
            shutdown_write(to);
            books.reached_eof();
            return Ok(());
        }
        books.counter.account(received).await;
    }
}

/// Relay two TCP streams with user-space copies from a shared buffer pool.
pub async fn relay_tcp_copy(
    client: &TcpStream,
    dest: &TcpStream,
    pool: &BufferPool,
    counters: &RelayCounters,
    idle_timeout: Duration,
) -> io::Result<RelayOutcome> {
    let activity = Activity::new();
    let first_eof = FirstEof::default();
    let (up_books, down_books) = DirectionBooks::pair(counters, &activity, &first_eof);
    tokio::select! {
        result = async {
            tokio::try_join!(
                copy_tcp_one_way(client, dest, pool, &up_books),
                copy_tcp_one_way(dest, client, pool, &down_books),
            )
        } => result.map(|_| first_eof.outcome()),
        () = idle_watchdog(&activity, idle_timeout) => Ok(RelayOutcome::IdleTimeout),
    }
}

/// Relay any two byte streams with user-space copies (TLS sessions).
pub async fn relay_copy<C, D>(
    client: C,
    dest: D,
    counters: &RelayCounters,
    idle_timeout: Duration,
) -> io::Result<RelayOutcome>
where
    C: AsyncRead + AsyncWrite + Unpin,
    D: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let (client_read, client_write) = tokio::io::split(client);
    let (dest_read, dest_write) = tokio::io::split(dest);
    let first_eof = FirstEof::default();
    let (up_books, down_books) = DirectionBooks::pair(counters, &activity, &first_eof);
    tokio::select! {
        result = async {
            tokio::try_join!(
                copy_one_way(client_read, dest_write, &up_books),
                copy_one_way(dest_read, client_write, &down_books),
            )
        } => result.map(|_| first_eof.outcome()),
        () = idle_watchdog(&activity, idle_timeout) => Ok(RelayOutcome::IdleTimeout),
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
