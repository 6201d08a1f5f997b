//! A raw SOCKS5 client over blocking std sockets: well-formed messages are
//! built with the `socks5` codec, malformed ones are written by hand in the
//! tests. Every read is bounded by [`IO_TIMEOUT`].

use socks5::{
    encode_greeting, encode_request, encode_userpass_request, parse_reply, AuthMethod, Command,
    Parsed, Reply, ReplyCode, TargetAddr,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Bound on every read and write of the test clients; a generous upper
/// bound, not a measurement.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Method bytes.
pub const NO_AUTH: u8 = 0x00;
pub const GSSAPI: u8 = 0x01;
pub const USER_PASS: u8 = 0x02;
pub const NO_ACCEPTABLE: u8 = 0xFF;

/// Connect to the proxy with bounded reads and writes.
pub fn connect(proxy: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)
        .unwrap_or_else(|err| panic!("connect to proxy {proxy}: {err}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Write all of `bytes`.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream
        .write_all(bytes)
        .unwrap_or_else(|err| panic!("send {bytes:02x?}: {err}"));
}

/// Read exactly `n` bytes, naming `what` on failure.
pub fn read_n(stream: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => panic!(
                "{what}: connection closed after {filled} of {n} bytes: {:02x?}",
                &buf[..filled]
            ),
            Ok(got) => filled += got,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!(
                "{what}: read failed after {filled} of {n} bytes ({:02x?}): {err}",
                &buf[..filled]
            ),
        }
    }
    buf
}

/// Read until EOF (bounded by [`IO_TIMEOUT`] per read).
pub fn read_to_eof(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!(
                "{what}: read failed after {} bytes ({:?}): {err}",
                out.len(),
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Outcome of waiting for the proxy to close a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// EOF or a reset, with no byte received first.
    Closed,
    /// The proxy sent these bytes (then closed or went quiet).
    SentData(Vec<u8>),
    /// Still open after [`IO_TIMEOUT`].
    StillOpen,
}

/// Wait (up to [`IO_TIMEOUT`]) for the proxy to close the connection.
pub fn wait_closed(stream: &mut TcpStream) -> CloseOutcome {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                return if received.is_empty() {
                    CloseOutcome::StillOpen
                } else {
                    CloseOutcome::SentData(received)
                };
            }
            // ECONNRESET and friends: the proxy closed.
            Err(_) => break,
        }
    }
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    if received.is_empty() {
        CloseOutcome::Closed
    } else {
        CloseOutcome::SentData(received)
    }
}

/// Assert the proxy closes the connection without sending anything more.
pub fn assert_closed(stream: &mut TcpStream, what: &str) {
    let outcome = wait_closed(stream);
    assert_eq!(
        outcome,
        CloseOutcome::Closed,
        "{what}: expected the proxy to close the connection (within {IO_TIMEOUT:?})"
    );
}

/// Send a greeting offering `methods`; return the proxy's `[VER, METHOD]`.
pub fn greet(stream: &mut TcpStream, methods: &[u8]) -> [u8; 2] {
    let methods: Vec<AuthMethod> = methods.iter().map(|&m| AuthMethod(m)).collect();
    let mut out = Vec::new();
    encode_greeting(&methods, &mut out).unwrap();
    send(stream, &out);
    let reply = read_n(stream, 2, "method selection");
    [reply[0], reply[1]]
}

/// Send an RFC 1929 request; return the proxy's `[VER, STATUS]`.
pub fn login(stream: &mut TcpStream, username: &[u8], password: &[u8]) -> [u8; 2] {
    let mut out = Vec::new();
    encode_userpass_request(username, password, &mut out).unwrap();
    send(stream, &out);
    let reply = read_n(stream, 2, "RFC 1929 status");
    [reply[0], reply[1]]
}

/// Read one reply, byte by byte so nothing relayed behind it is consumed.
pub fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    loop {
        match parse_reply(&buf) {
            Ok(Parsed::Complete { value, .. }) => return value,
            Ok(Parsed::Incomplete) => {
                let byte = read_n(stream, 1, &format!("reply (so far {buf:02x?})"));
                buf.push(byte[0]);
            }
            Err(err) => panic!("malformed reply {buf:02x?}: {err}"),
        }
    }
}

/// Send a request and read its reply.
pub fn request(stream: &mut TcpStream, command: Command, address: &TargetAddr) -> Reply {
    let mut out = Vec::new();
    encode_request(command, address, &mut out).unwrap();
    send(stream, &out);
    read_reply(stream)
}

/// Wire value of a reply code (for readable assertions).
pub fn code(reply: &Reply) -> u8 {
    reply.code.code()
}

/// A target as the codec wants it.
pub fn ip_target(addr: SocketAddr) -> TargetAddr {
    TargetAddr::Ip(addr)
}

/// Negotiate: no-auth if `credentials` is `None`, else RFC 1929 (asserting
/// success either way).
pub fn authenticate(stream: &mut TcpStream, credentials: Option<(&str, &str)>) {
    match credentials {
        None => assert_eq!(greet(stream, &[NO_AUTH]), [5, NO_AUTH], "no-auth selection"),
        Some((user, pass)) => {
            assert_eq!(
                greet(stream, &[USER_PASS]),
                [5, USER_PASS],
                "user/pass selection"
            );
            assert_eq!(
                login(stream, user.as_bytes(), pass.as_bytes()),
                [1, 0],
                "RFC 1929 login of {user:?} should succeed"
            );
        }
    }
}

/// A full session: authenticate, CONNECT to `target`, assert success.
pub fn open_session(
    proxy: SocketAddr,
    credentials: Option<(&str, &str)>,
    target: &TargetAddr,
) -> (TcpStream, Reply) {
    let mut stream = connect(proxy);
    authenticate(&mut stream, credentials);
    let reply = request(&mut stream, Command::Connect, target);
    assert_eq!(
        reply.code,
        ReplyCode::Succeeded,
        "CONNECT {target:?} should succeed, got {reply:?}"
    );
    (stream, reply)
}

/// Through a session to the echo server: send `payload`, half-close, and
/// check the echo plus the server's EOF trailer come back, then EOF.
pub fn assert_echo_with_half_close(stream: &mut TcpStream, payload: &[u8]) {
    send(stream, payload);
    stream.shutdown(Shutdown::Write).expect("shutdown write");
    let got = read_to_eof(stream, "echo after half-close");
    let mut expected = payload.to_vec();
    expected.extend_from_slice(super::EOF_TRAILER);
    assert!(
        got == expected,
        "expected the echo of {} bytes then the EOF trailer, got {} bytes: {:?}",
        payload.len(),
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
}

/// Through a session to the echo server: one round trip, connection kept.
pub fn assert_echo_round_trip(stream: &mut TcpStream, payload: &[u8]) {
    send(stream, payload);
    let got = read_n(stream, payload.len(), "echo round trip");
    assert_eq!(got, payload, "echo round trip");
}

/// Like [`connect`], from the local address `source` (e.g. `127.0.0.2`, so
/// the proxy sees another client IP on loopback).
pub fn connect_from(proxy: SocketAddr, source: std::net::IpAddr) -> TcpStream {
    assert!(source.is_loopback(), "test clients stay on loopback");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(proxy),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("client socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|err| panic!("bind client socket to {source}: {err}"));
    socket
        .connect_timeout(&proxy.into(), IO_TIMEOUT)
        .unwrap_or_else(|err| panic!("connect to proxy {proxy} from {source}: {err}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}
