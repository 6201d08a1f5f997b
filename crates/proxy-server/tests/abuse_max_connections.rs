//! `max_connections` on the SOCKS listener (issue 9): with the listener
//! full, a new client is closed at once without a method-selection reply
//! and counted in `proxy_connections_rejected_total`; a freed slot serves
//! the next client.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

const MAX_CONNECTIONS: usize = 10;

/// Bound on the proxy noticing that a session ended and freeing its slot.
const SLOT_FREED_BOUND: Duration = Duration::from_secs(15);

/// A long step timeout, so a client the proxy accepted but left waiting is
/// not closed by the handshake timeout within the client's read bound.
fn full_listener_proxy() -> RunningProxy {
    RunningProxy::start(&with_http_listener(&policy(
        &format!("max_connections = {MAX_CONNECTIONS}, timeout = '60 seconds'"),
        None,
    )))
}

/// Connect, offer no-auth, and return what the proxy answered before
/// closing: `Some([5, method])`, or `None` if it closed without a byte.
/// Panics if it neither answers nor closes within `IO_TIMEOUT`.
fn greet_or_closed(proxy: &RunningProxy) -> (TcpStream, Option<[u8; 2]>) {
    let mut stream = connect(proxy.addr);
    // The proxy may have closed already; a failed write is then expected.
    let _ = stream.write_all(&[5, 1, NO_AUTH]);
    let mut reply = [0u8; 2];
    let mut filled = 0;
    while filled < 2 {
        match stream.read(&mut reply[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the proxy neither answered the greeting nor closed within {IO_TIMEOUT:?}\n{}",
                    proxy.output_dump()
                )
            }
            // A reset: closed.
            Err(_) => break,
        }
    }
    match filled {
        0 => (stream, None),
        2 => (stream, Some(reply)),
        _ => panic!("the proxy sent a partial method selection {reply:02x?}"),
    }
}

/// A no-auth session to `echo` once the proxy has a free slot. The slot of
/// an ended session is released just after its client sees EOF, so a
/// refusal in that instant is retried, within [`SLOT_FREED_BOUND`].
fn session_once_a_slot_is_free(proxy: &RunningProxy, echo: std::net::SocketAddr) -> TcpStream {
    let deadline = Instant::now() + SLOT_FREED_BOUND;
    let mut refusals = 0;
    let mut stream = loop {
        let (stream, answer) = greet_or_closed(proxy);
        match answer {
            Some(selection) => {
                assert_eq!(selection, [5, NO_AUTH], "method selection");
                break stream;
            }
            None => {
                refusals += 1;
                assert!(
                    Instant::now() < deadline,
                    "no slot was free {SLOT_FREED_BOUND:?} after a session ended \
                     ({refusals} refusals)\n{}",
                    proxy.output_dump()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let reply = request(&mut stream, socks5::Command::Connect, &ip_target(echo));
    assert_eq!(code(&reply), 0, "CONNECT once a slot is free: {reply:?}");
    stream
}

#[test]
fn the_eleventh_client_is_closed_at_once_and_a_freed_slot_serves_again() {
    let proxy = full_listener_proxy();
    let echo = spawn_echo_server("127.0.0.1:0");

    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|n| {
            let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
            assert_echo_round_trip(&mut stream, format!("held session {n}").as_bytes());
            stream
        })
        .collect();

    let (_eleventh, answer) = greet_or_closed(&proxy);
    assert_eq!(
        answer,
        None,
        "with {MAX_CONNECTIONS} sessions open the 11th client must be closed without a \
         method-selection reply\n{}",
        proxy.output_dump()
    );
    assert_eq!(
        proxy.listener_metric("proxy_connections_rejected_total"),
        1,
        "the refused client is counted"
    );

    // The held sessions are unaffected.
    for (n, stream) in held.iter_mut().enumerate() {
        assert_echo_round_trip(stream, format!("still held {n}").as_bytes());
    }

    // End one session cleanly; its slot serves a new client.
    let mut first = held.remove(0);
    assert_echo_with_half_close(&mut first, b"leaving");
    drop(first);
    let mut newcomer = session_once_a_slot_is_free(&proxy, echo);
    assert_echo_with_half_close(&mut newcomer, b"served after a slot was freed");
    drop(newcomer);

    // Still capped after slots were reused: nine held plus one more fill
    // the listener again, and the next client is refused.
    let mut tenth = session_once_a_slot_is_free(&proxy, echo);
    assert_echo_round_trip(&mut tenth, b"tenth again");
    let (_over, answer) = greet_or_closed(&proxy);
    assert_eq!(answer, None, "the cap holds after slots were reused");

    for (n, stream) in held.iter_mut().enumerate() {
        assert_echo_with_half_close(stream, format!("bye {n}").as_bytes());
    }
}
