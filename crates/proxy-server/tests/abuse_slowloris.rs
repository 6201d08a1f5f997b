//! Slowloris on the SOCKS handshake (issue 9): a client that keeps sending
//! one byte every 500 ms, so the connection is never silent but the message
//! never completes, is closed once a step has taken `timeout` (1 second) —
//! for the greeting, the RFC 1929 request and the SOCKS request alike.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const TRICKLE_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes the trickler sends at most (30 s worth), far fewer than any of
/// the messages it starts needs to complete.
const MAX_TRICKLED_BYTES: usize = 60;
/// Generous bound on the close, for a 1-second step timeout (the bound of
/// [`wait_closed`]).
const CLOSE_BOUND: Duration = IO_TIMEOUT;

fn one_second_timeout_proxy() -> RunningProxy {
    RunningProxy::start(&seed_policy("timeout = '1 second'"))
}

/// Send one byte of `filler` every `TRICKLE_INTERVAL` on a clone of
/// `stream` until `stop` is set, a write fails, or `MAX_TRICKLED_BYTES`.
fn spawn_trickler(
    stream: &TcpStream,
    filler: u8,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let mut writer = stream.try_clone().expect("clone client socket");
    std::thread::spawn(move || {
        let mut sent = 0;
        while sent < MAX_TRICKLED_BYTES && !stop.load(Ordering::Relaxed) {
            if writer.write_all(&[filler]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(TRICKLE_INTERVAL);
        }
        sent
    })
}

/// After `prefix` (already sent), trickle bytes and assert the proxy closes
/// the connection within `CLOSE_BOUND` without answering.
fn assert_trickle_is_cut(proxy: &RunningProxy, mut stream: TcpStream, filler: u8, step: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let trickler = spawn_trickler(&stream, filler, stop.clone());
    let outcome = wait_closed(&mut stream);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = trickler.join().expect("trickler thread");
    assert_eq!(
        outcome,
        CloseOutcome::Closed,
        "{step}: a client trickling one byte every {TRICKLE_INTERVAL:?} must be closed \
         (timeout = 1 second), sent {sent} bytes over {elapsed:?}\n{}",
        proxy.output_dump()
    );
    assert!(
        elapsed <= CLOSE_BOUND,
        "{step}: closed only after {elapsed:?}"
    );
    assert!(
        sent < MAX_TRICKLED_BYTES,
        "{step}: the trickler ran out of bytes before the close"
    );
}

#[test]
fn a_greeting_sent_one_byte_every_500ms_is_cut_off() {
    let proxy = one_second_timeout_proxy();
    let mut stream = connect(proxy.addr);
    // VER 5, 255 methods: 255 more bytes would complete it.
    send(&mut stream, &[5, 255]);
    assert_trickle_is_cut(&proxy, stream, NO_AUTH, "greeting");
}

#[test]
fn an_rfc1929_request_sent_one_byte_every_500ms_is_cut_off() {
    let proxy = one_second_timeout_proxy();
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    // VER 1, a 255-byte username to come.
    send(&mut stream, &[1, 255]);
    assert_trickle_is_cut(&proxy, stream, b'u', "RFC 1929 request");
    assert!(
        recorded_calls(proxy.dir()).is_empty(),
        "an incomplete login never reaches Lua"
    );
}

#[test]
fn a_socks_request_sent_one_byte_every_500ms_is_cut_off() {
    let proxy = one_second_timeout_proxy();
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[NO_AUTH]), [5, NO_AUTH]);
    // CONNECT to a 255-byte domain name to come.
    send(&mut stream, &[5, 1, 0, 3, 255]);
    assert_trickle_is_cut(&proxy, stream, b'a', "SOCKS request");
}
