//! The splice relay against a receive queue of many small, separate
//! fragments: a splice then stops when the pipe runs out of slots, not
//! bytes, with data still queued — and no new packet may come to wake the
//! relay again. A bulk prefix first moves the relay from copies to splice.

use super::*;
use std::os::fd::AsRawFd;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Fragments queued before the relay starts; more than the 16 slots of a
/// default pipe.
const FRAGMENTS: usize = 48;
const FRAGMENT_LEN: usize = 100;
const PAGE: usize = 4096;

async fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (client, accepted)
}

/// Bytes waiting in `stream`'s receive queue (SIOCINQ).
fn queued(stream: &TcpStream) -> usize {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD on a socket we own, into a c_int.
    unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut bytes) };
    bytes as usize
}

/// Bytes sent in one write first: more than a copy buffer, so the relay
/// switches to splice before it meets the fragments.
const BULK_PREFIX: usize = 2 * COPY_BUFFER;

/// Send `BULK_PREFIX` bytes, then `FRAGMENTS` writes of `FRAGMENT_LEN`
/// bytes, each from a different page of a file, so the receiver cannot
/// merge them into one fragment.
fn send_separate_fragments(sender: &TcpStream) -> Vec<u8> {
    let mut file = tempfile::tempfile().unwrap();
    let content: Vec<u8> = (0..FRAGMENTS * PAGE).map(|i| (i % 251) as u8).collect();
    std::io::Write::write_all(&mut file, &content).unwrap();
    socket2::SockRef::from(sender).set_nodelay(true).unwrap();
    let mut expected: Vec<u8> = (0..BULK_PREFIX).map(|i| (i % 13) as u8).collect();
    let mut prefix = &expected[..];
    while !prefix.is_empty() {
        let n = sender
            .try_write(prefix)
            .expect("the prefix fits the socket buffers");
        prefix = &prefix[n..];
    }
    for fragment in 0..FRAGMENTS {
        let mut offset = (fragment * PAGE) as libc::off_t;
        // SAFETY: valid descriptors; sendfile advances the local offset.
        let sent = unsafe {
            libc::sendfile(
                sender.as_raw_fd(),
                file.as_raw_fd(),
                &mut offset,
                FRAGMENT_LEN,
            )
        };
        assert_eq!(sent, FRAGMENT_LEN as isize, "sendfile");
        expected.extend_from_slice(&content[fragment * PAGE..fragment * PAGE + FRAGMENT_LEN]);
    }
    expected
}

#[tokio::test]
async fn splice_relays_a_queue_of_small_fragments_without_new_packets() {
    let (sender, proxy_client_side) = connected_pair().await;
    let (proxy_dest_side, mut receiver) = connected_pair().await;
    let expected = send_separate_fragments(&sender);
    // Everything is queued at the proxy before it starts relaying, and the
    // sender stays open and silent: no later packet will wake the relay.
    for _ in 0..200 {
        if queued(&proxy_client_side) == expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(queued(&proxy_client_side), expected.len());

    let pipes = PipePool::default();
    let buffers = BufferPool::default();
    let counters = RelayCounters::default();
    let relay = relay_splice(
        &proxy_client_side,
        &proxy_dest_side,
        &pipes,
        &buffers,
        &counters,
        Duration::from_secs(60),
    );
    let mut got = vec![0u8; expected.len()];
    let read_all = receiver.read_exact(&mut got);
    tokio::select! {
        result = relay => panic!("the relay ended first: {result:?}"),
        result = tokio::time::timeout(Duration::from_secs(10), read_all) => {
            result.expect("every queued byte relayed").unwrap();
        }
    }
    assert_eq!(got, expected);
    drop(sender);
}

/// The size of `f`'s future, without running it.
fn future_size<F: std::future::Future>(_: &F) -> usize {
    std::mem::size_of::<F>()
}

/// Each direction is stored once in the relay's state: wrapping a
/// direction in a future that watches for its EOF had stored each twice
/// (about 900 bytes more per held tunnel).
#[tokio::test]
async fn the_splice_relay_stores_each_direction_once() {
    let (client, dest) = connected_pair().await;
    let (pipes, buffers) = (PipePool::default(), BufferPool::default());
    let counters = RelayCounters::default();
    let (activity, first_eof) = (Activity::new(), FirstEof::default());
    let (books, _) = DirectionBooks::pair(&counters, &activity, &first_eof);
    let loan = pipes.loan().unwrap();
    let direction = splice_one_way(&client, &dest, loan, &buffers, &books);
    let watchdog = idle_watchdog(&activity, Duration::ZERO);
    let relay = relay_splice(&client, &dest, &pipes, &buffers, &counters, Duration::ZERO);
    let parts = 2 * future_size(&direction) + future_size(&watchdog);
    let whole = future_size(&relay);
    assert!(
        whole < parts + 400,
        "the relay is {whole} bytes for {parts} bytes of directions and watchdog"
    );
}
