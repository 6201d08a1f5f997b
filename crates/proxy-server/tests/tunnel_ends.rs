//! How a tunnel's end is passed on: a clean close (FIN) is a half-close
//! the other end can still answer, and a reset on either side ends the
//! tunnel at the other side too.

mod inproc;

use inproc::*;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A destination server whose accepted connections the test drives.
async fn destination() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A tunnel through `proxy` to `listener`, with one byte relayed each way
/// so both directions are under way; the client and the destination's
/// accepted socket.
async fn open_tunnel(proxy: SocketAddr, listener: &TcpListener) -> (TcpStream, TcpStream) {
    let mut client = tunnel(proxy, listener.local_addr().unwrap()).await;
    let (mut accepted, _) = listener.accept().await.unwrap();
    client.write_all(b"a").await.unwrap();
    assert_eq!(read_exact::<1>(&mut accepted).await.unwrap(), *b"a");
    accepted.write_all(b"b").await.unwrap();
    assert_eq!(read_exact::<1>(&mut client).await.unwrap(), *b"b");
    (client, accepted)
}

/// Close `stream` with a reset.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// What the next read of `stream` sees: `Ok(n)` bytes or the error kind.
async fn next_read(stream: &mut TcpStream) -> Result<usize, ErrorKind> {
    let mut buf = [0u8; 16];
    stream.read(&mut buf).await.map_err(|err| err.kind())
}

/// Whether the next read sees the end of the stream (EOF or a reset).
async fn sees_the_end(stream: &mut TcpStream) -> bool {
    matches!(
        next_read(stream).await,
        Ok(0) | Err(ErrorKind::ConnectionReset)
    )
}

#[tokio::test]
async fn a_reset_on_either_side_ends_the_tunnel_at_the_other() {
    let proxy = start(&policy(&[""])).await;
    let listener = destination().await;
    for client_resets in [true, false] {
        let (client, accepted) = open_tunnel(proxy.addr(), &listener).await;
        let (resetting, mut other) = match client_resets {
            true => (client, accepted),
            false => (accepted, client),
        };
        reset(resetting);
        assert!(
            sees_the_end(&mut other).await,
            "client resets: {client_resets}"
        );
    }
}

/// A client's FIN is a half-close: the destination sees EOF and can still
/// answer, and the client gets the answer and then EOF.
#[tokio::test]
async fn a_clean_close_stays_a_clean_close() {
    let proxy = start(&policy(&[""])).await;
    let listener = destination().await;
    let (mut client, mut accepted) = open_tunnel(proxy.addr(), &listener).await;
    client.shutdown().await.unwrap();
    assert_eq!(next_read(&mut accepted).await, Ok(0));
    accepted.write_all(b"late").await.unwrap();
    drop(accepted);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"late");
}
