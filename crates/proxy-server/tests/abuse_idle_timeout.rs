//! `idle_timeout` on the relay (issue 9): a tunnel with no byte in either
//! direction is closed by the proxy, a tunnel that keeps moving bytes stays
//! open past the timeout and keeps working. Both relays are covered: splice
//! (the default) and the user-space copy (`use_splice = false`).

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// One byte every `BUSY_INTERVAL` for `BUSY_FOR`: three times the idle
/// timeout, with gaps well below it.
const BUSY_INTERVAL: Duration = Duration::from_millis(200);
const BUSY_FOR: Duration = Duration::from_secs(3);

fn idle_timeout_proxy(use_splice: bool) -> RunningProxy {
    RunningProxy::start(&with_http_listener(&policy(
        &format!("timeout = '5 seconds', idle_timeout = '1 second', use_splice = {use_splice}"),
        None,
    )))
}

/// Echo one byte at a time through `stream` for `BUSY_FOR`; returns how
/// many round trips were made.
fn keep_busy(stream: &mut TcpStream) -> usize {
    let started = Instant::now();
    let mut round_trips = 0;
    while started.elapsed() < BUSY_FOR {
        let byte = [b'a' + (round_trips % 26) as u8];
        assert_echo_round_trip(stream, &byte);
        round_trips += 1;
        std::thread::sleep(BUSY_INTERVAL);
    }
    round_trips
}

fn idle_tunnel_closes_while_busy_one_stays(use_splice: bool) {
    let proxy = idle_timeout_proxy(use_splice);
    let echo = spawn_echo_server("127.0.0.1:0");

    let (mut busy, _) = open_session(proxy.addr, None, &ip_target(echo));
    let busy_client = std::thread::spawn(move || {
        let round_trips = keep_busy(&mut busy);
        // Still open and working after three idle periods.
        assert_echo_with_half_close(&mut busy, b"busy tunnel still works");
        round_trips
    });

    let (mut idle, _) = open_session(proxy.addr, None, &ip_target(echo));
    let outcome = wait_closed(&mut idle);
    assert_eq!(
        outcome,
        CloseOutcome::Closed,
        "an idle tunnel must be closed by the proxy after idle_timeout = 1 second \
         (bound {IO_TIMEOUT:?}, use_splice = {use_splice})\n{}",
        proxy.output_dump()
    );

    let round_trips = busy_client
        .join()
        .unwrap_or_else(|_| panic!("the busy tunnel failed\n{}", proxy.output_dump()));
    assert!(round_trips >= 2, "{round_trips} round trips");
    assert!(
        proxy.listener_metric("proxy_idle_timeouts_total") >= 1,
        "the idle close is counted"
    );
}

#[test]
fn splice_relay_closes_an_idle_tunnel_and_keeps_a_busy_one() {
    idle_tunnel_closes_while_busy_one_stays(true);
}

#[test]
fn copy_relay_closes_an_idle_tunnel_and_keeps_a_busy_one() {
    idle_tunnel_closes_while_busy_one_stays(false);
}

#[test]
fn a_tunnel_busy_in_one_direction_only_stays_open() {
    // Bytes only from the client to the destination: the destination is a
    // sink that answers once, when its client half-closes.
    let proxy = idle_timeout_proxy(true);
    let sink = spawn_sink_server();
    let (mut stream, _) = open_session(proxy.addr, None, &ip_target(sink));
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < BUSY_FOR {
        send(&mut stream, b"x");
        sent += 1;
        std::thread::sleep(BUSY_INTERVAL);
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let answer = read_to_eof(&mut stream, "sink's count after one-way traffic");
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("{sent}\n"),
        "every byte sent one way over {BUSY_FOR:?} reached the destination\n{}",
        proxy.output_dump()
    );
}

/// Reads until EOF without answering, then writes the byte count and closes.
fn spawn_sink_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // One client per test; the thread ends with it.
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        // Bounded: the proxy delivers the half-close well within this.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let mut count = 0usize;
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => count += n,
            }
        }
        let _ = stream.write_all(format!("{count}\n").as_bytes());
    });
    addr
}
