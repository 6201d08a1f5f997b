//! Idle relays, trickling clients and login blocks under tokio's paused
//! clock, with the proxy in process: time is advanced, never waited for.

mod inproc;

use inproc::*;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for the proxy to act on what is already due, far shorter
/// than any timeout under test: a paused clock jumps to it only when
/// nothing else can run.
const SETTLE: Duration = Duration::from_millis(50);

async fn closed_now(stream: &mut TcpStream) -> bool {
    tokio::time::timeout(SETTLE, is_closed(stream))
        .await
        .unwrap_or(false)
}

async fn idle_tunnel_closes_while_busy_one_stays(use_splice: bool) {
    let keys = format!("idle_timeout = '2 seconds', use_splice = {use_splice}");
    let proxy = start(&policy(&[&keys])).await;
    let echo = echo_server().await;
    let hold = hold_clock();
    let mut idle = tunnel(proxy.addr(), echo).await;
    let mut busy = tunnel(proxy.addr(), echo).await;
    round_trip(&mut idle, b"once, then silence").await;
    for round in 0..12 {
        tokio::time::advance(Duration::from_millis(250)).await;
        round_trip(&mut busy, format!("round {round}").as_bytes()).await;
    }
    drop(hold);
    assert!(
        closed_now(&mut idle).await,
        "idle for 3 s of a 2 s idle_timeout"
    );
    round_trip(&mut busy, b"the busy tunnel stays open").await;
}

#[tokio::test(start_paused = true)]
async fn splice_relay_closes_an_idle_tunnel_and_keeps_a_busy_one() {
    idle_tunnel_closes_while_busy_one_stays(true).await;
}

#[tokio::test(start_paused = true)]
async fn copy_relay_closes_an_idle_tunnel_and_keeps_a_busy_one() {
    idle_tunnel_closes_while_busy_one_stays(false).await;
}

/// A server that reads until EOF without answering, telling `arrived` the
/// size of each read, then writes the byte count and closes.
async fn counting_sink(arrived: tokio::sync::mpsc::UnboundedSender<usize>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut total = 0;
        let mut buf = [0u8; 64];
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
            let _ = arrived.send(n);
        }
        conn.write_all(format!("{total}\n").as_bytes())
            .await
            .unwrap();
    });
    addr
}

#[tokio::test(start_paused = true)]
async fn a_tunnel_busy_in_one_direction_only_stays_open() {
    let proxy = start(&policy(&["idle_timeout = '2 seconds'"])).await;
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let mut stream = tunnel(proxy.addr(), counting_sink(arrived).await).await;
    // Only `advance` moves the clock here.
    let _hold = hold_clock();
    for _ in 0..12 {
        stream.write_all(b"x").await.unwrap();
        // The byte crossed the relay (which noted the activity) before the
        // clock moves on.
        assert_eq!(arrivals.recv().await, Some(1));
        tokio::time::advance(Duration::from_millis(250)).await;
    }
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "12\n", "every byte sent one way over 3 s arrived");
}

/// Send `prefix`, then one byte of `filler` every 500 ms: the listener's
/// one-second handshake deadline closes the connection unanswered.
async fn trickle_is_cut(prefix: &[u8], filler: u8, step: &str) {
    let proxy = start(&policy(&["timeout = '1 second'"])).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    let mut answered = Vec::new();
    for _ in 0..4 {
        if stream.write_all(&[filler]).await.is_err() {
            break;
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        let mut buf = [0u8; 16];
        match tokio::time::timeout(SETTLE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return assert!(answered.len() <= 4, "{step}"),
            Ok(Ok(n)) => answered.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    panic!("{step}: still open after 2 s of a 1 s handshake timeout (answered {answered:?})");
}

#[tokio::test(start_paused = true)]
async fn a_greeting_sent_one_byte_every_500ms_is_cut_off() {
    // Version 5 then 255 methods announced: the greeting never completes.
    trickle_is_cut(&[5, 255], 0, "greeting").await;
}

#[tokio::test(start_paused = true)]
async fn an_rfc1929_request_sent_one_byte_every_500ms_is_cut_off() {
    trickle_is_cut(&[5, 1, 2, 1, 255], b'u', "RFC 1929 request").await;
}

#[tokio::test(start_paused = true)]
async fn a_socks_request_sent_one_byte_every_500ms_is_cut_off() {
    let mut prefix = vec![5, 1, 2, 1, 4];
    prefix.extend_from_slice(b"user");
    prefix.push(2);
    prefix.extend_from_slice(b"pw");
    // CONNECT to a domain whose 255-byte name never finishes.
    prefix.extend_from_slice(&[5, 1, 0, 3, 255]);
    trickle_is_cut(&prefix, b'a', "SOCKS request").await;
}

fn local_ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Eleven wrong passwords block the address (the twelfth login is refused
/// without a Lua call) until `block_for` has passed; other addresses are
/// not affected meanwhile.
#[tokio::test(start_paused = true)]
async fn eleven_wrong_passwords_block_until_block_for_passes() {
    let limit =
        "auth_failure_limit = { max_failures = 10, period = '1 minute', block_for = '2 seconds' }";
    let proxy = start(&policy(&[limit])).await;
    let (attacker, bystander) = (local_ip(1), local_ip(2));
    let hold = hold_clock();
    for n in 0..11 {
        let (_, status) = login_from(proxy.addr(), attacker, &format!("wrong-{n}")).await;
        assert_eq!(status, 1);
    }
    assert_eq!(proxy.handler_calls(), 11);
    let (mut refused, status) = login_from(proxy.addr(), attacker, PASSWORD).await;
    assert_eq!(status, 1, "the right password from a blocked address");
    drop(hold);
    assert!(closed_now(&mut refused).await);
    let _hold = hold_clock();
    assert_eq!(proxy.handler_calls(), 11, "no Lua call while blocked");
    assert_eq!(login_from(proxy.addr(), bystander, PASSWORD).await.1, 0);
    tokio::time::advance(Duration::from_millis(1900)).await;
    assert_eq!(login_from(proxy.addr(), attacker, PASSWORD).await.1, 1);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(login_from(proxy.addr(), attacker, PASSWORD).await.1, 0);
    assert_eq!(proxy.handler_calls(), 13);
}

#[tokio::test(start_paused = true)]
async fn auth_failure_limit_false_never_blocks() {
    let proxy = start(&policy(&["auth_failure_limit = false"])).await;
    let _hold = hold_clock();
    for n in 0..25 {
        assert_eq!(login(proxy.addr(), &format!("wrong-{n}")).await, 1);
    }
    assert_eq!(login(proxy.addr(), PASSWORD).await, 0);
    assert_eq!(proxy.handler_calls(), 26);
}
