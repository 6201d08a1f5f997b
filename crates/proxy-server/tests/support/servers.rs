//! Tiny loopback servers the proxy connects to, each on port 0 in its own
//! threads for the life of the test binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Written by the echo server after it has seen EOF from its client, so a
/// client can tell "destination saw my half-close and could still answer".
pub const EOF_TRAILER: &[u8] = b"<echo-server-saw-eof>";

/// Body of every `GET` except `/bytes/N`.
pub const HELLO_BODY: &str = "hello from the nephele test server\n";

fn listen(bind: &str) -> TcpListener {
    let listener = TcpListener::bind(bind).unwrap_or_else(|err| panic!("bind {bind}: {err}"));
    assert!(
        listener.local_addr().unwrap().ip().is_loopback(),
        "test servers must stay on loopback"
    );
    listener
}

fn serve(listener: TcpListener, handler: impl Fn(TcpStream) + Send + Sync + 'static) {
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            std::thread::spawn(move || handler(stream));
        }
    });
}

/// Echo every byte until EOF, then write [`EOF_TRAILER`] and shut down the
/// write side. `bind` is e.g. `"127.0.0.1:0"` or `"[::1]:0"`.
pub fn spawn_echo_server(bind: &str) -> SocketAddr {
    let listener = listen(bind);
    let addr = listener.local_addr().unwrap();
    serve(listener, |mut stream| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        let _ = stream.write_all(EOF_TRAILER);
        let _ = stream.shutdown(Shutdown::Write);
        // Keep the socket until the client closes too.
        let _ = stream.read(&mut buf);
    });
    addr
}

/// Write the peer address it saw (`ip:port\n`) and close.
pub fn spawn_peer_reporter(bind: &str) -> SocketAddr {
    let listener = listen(bind);
    let addr = listener.local_addr().unwrap();
    serve(listener, |mut stream| {
        if let Ok(peer) = stream.peer_addr() {
            let _ = stream.write_all(format!("{peer}\n").as_bytes());
        }
        let _ = stream.shutdown(Shutdown::Write);
    });
    addr
}

/// An address on which nothing listens: bind port 0, note it, close.
pub fn closed_port() -> SocketAddr {
    let listener = listen("127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// FNV-1a 64, the checksum the HTTP server reports for uploads.
pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `len` deterministic pseudo-random bytes (xorshift64*), incompressible
/// enough that a relay bug cannot hide in repeated patterns.
pub fn pattern_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The answer of the HTTP server to an upload of `body`.
pub fn upload_answer(body: &[u8]) -> String {
    format!("{} {:016x}\n", body.len(), fnv1a64(body))
}

/// A minimal HTTP/1.1 server, one request per connection:
/// `GET /bytes/N` → `pattern_bytes(N)`, other `GET` → [`HELLO_BODY`],
/// `POST`/`PUT` with `Content-Length` → [`upload_answer`] of the body,
/// which is also kept in `uploads`.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub uploads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl HttpServer {
    pub fn start() -> Self {
        let listener = listen("127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let kept = uploads.clone();
        serve(listener, move |stream| {
            let _ = handle_http(stream, &kept);
        });
        Self { addr, uploads }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://localhost:PORT{path}`, for proxy-side name resolution.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }

    /// Every upload body received so far.
    pub fn uploads(&self) -> Vec<Vec<u8>> {
        self.uploads.lock().unwrap().clone()
    }
}

fn handle_http(stream: TcpStream, uploads: &Mutex<Vec<Vec<u8>>>) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut content_length = None;
    let mut expect_continue = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.parse::<usize>().ok(),
                "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
    }
    let (status, body) = match method.as_str() {
        "GET" => match path.strip_prefix("/bytes/") {
            Some(len) => match len.parse::<usize>() {
                Ok(len) => ("200 OK", pattern_bytes(len)),
                Err(_) => ("400 Bad Request", b"bad length\n".to_vec()),
            },
            None => ("200 OK", HELLO_BODY.as_bytes().to_vec()),
        },
        "POST" | "PUT" => match content_length {
            Some(len) => {
                if expect_continue {
                    writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                }
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body)?;
                let answer = upload_answer(&body);
                uploads.lock().unwrap().push(body);
                ("200 OK", answer.into_bytes())
            }
            None => ("411 Length Required", b"need content-length\n".to_vec()),
        },
        _ => ("405 Method Not Allowed", b"no\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(&body)?;
    writer.flush()?;
    writer.shutdown(Shutdown::Write)
}
