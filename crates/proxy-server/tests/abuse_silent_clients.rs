//! Thousands of clients that connect and send nothing (issue 9): they do
//! not keep a well-behaved client from being served meanwhile, and the
//! proxy closes every one of them once the handshake `timeout` passes.

mod support;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

const SILENT_CLIENTS: usize = 3_000;

/// The test holds the silent sockets and the proxy (which inherits the
/// limit) holds their peers, plus headroom for both.
const NEEDED_NOFILE: u64 = 7_000;

/// Generous bound for the proxy to close all of them with a 2 s timeout.
const ALL_CLOSED_BOUND: Duration = Duration::from_secs(60);

/// A connect that reports failure instead of panicking, so a refused
/// connection can be counted and explained.
fn connect_silently(proxy: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[test]
fn three_thousand_silent_clients_do_not_block_a_real_one_and_are_all_closed() {
    raise_nofile_limit(NEEDED_NOFILE);
    let proxy = RunningProxy::start(&seed_policy("timeout = '2 seconds'"));
    let echo = spawn_echo_server("127.0.0.1:0");

    let connecting = Instant::now();
    let silent: Vec<TcpStream> = (0..SILENT_CLIENTS)
        .map(|n| {
            connect_silently(proxy.addr).unwrap_or_else(|err| {
                panic!(
                    "silent client {n} of {SILENT_CLIENTS} could not connect: {err}\n{}",
                    proxy.output_dump()
                )
            })
        })
        .collect();
    let connected_in = connecting.elapsed();

    // A well-behaved client, right behind the crowd.
    let (mut stream, _) = open_session(proxy.addr, Some((USER, PASSWORD)), &ip_target(echo));
    assert_echo_with_half_close(&mut stream, b"served among the silent crowd");
    drop(stream);
    let served_after = connecting.elapsed();

    // Every silent client is closed (EOF or reset), none is sent a byte.
    let deadline = Instant::now() + ALL_CLOSED_BOUND;
    let mut still_open = Vec::new();
    let mut sent_data = Vec::new();
    for (n, mut socket) in silent.into_iter().enumerate() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(left)).unwrap();
        let mut byte = [0u8; 1];
        let outcome = loop {
            match socket.read(&mut byte) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match outcome {
            Ok(0) => {}
            Ok(_) => sent_data.push(n),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                still_open.push(n)
            }
            // A reset also means the proxy closed it.
            Err(_) => {}
        }
    }
    assert!(
        sent_data.is_empty(),
        "the proxy sent bytes to {} silent clients (first: {:?})",
        sent_data.len(),
        &sent_data[..sent_data.len().min(10)]
    );
    assert!(
        still_open.is_empty(),
        "{} of {SILENT_CLIENTS} silent clients were still open {ALL_CLOSED_BOUND:?} after \
         the well-behaved session (timeout = 2 seconds; connected in {connected_in:?}, real \
         client served after {served_after:?}; first: {:?})\n{}",
        still_open.len(),
        &still_open[..still_open.len().min(10)],
        tail(&proxy.output_dump(), 4_000)
    );
    assert!(!proxy_has_panicked(&proxy), "{}", proxy.output_dump());
    eprintln!(
        "{SILENT_CLIENTS} silent clients connected in {connected_in:?}; the real client was \
         served {served_after:?} after the first connect; all closed {:?} after it",
        connecting.elapsed()
    );
}

fn proxy_has_panicked(proxy: &RunningProxy) -> bool {
    proxy.stderr().contains("panicked")
}

/// The last `max` bytes of `text` (on a char boundary), for readable failures.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
