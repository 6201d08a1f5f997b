//! The SOCKS5 listener with `use_tls = true`: SOCKS inside TLS, bounded TLS
//! handshakes, given and generated certificates, and clear start-up errors.

mod support;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use socks5::{
    encode_greeting, encode_request, encode_userpass_request, parse_reply, AuthMethod, Command,
    Parsed, ReplyCode, TargetAddr,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};
use support::*;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

fn tls_connect(proxy: SocketAddr) -> TlsStream {
    let config = tls::client_config(tls::ClientTrust::AcceptAny).unwrap();
    let tcp = TcpStream::connect(proxy).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    StreamOwned::new(conn, tcp)
}

fn read_exact_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Greeting, RFC 1929 login and CONNECT over any stream.
fn socks_login_connect(
    stream: &mut (impl Read + Write),
    user: &str,
    pass: &str,
    target: SocketAddr,
) -> ReplyCode {
    let mut out = Vec::new();
    encode_greeting(&[AuthMethod::USERNAME_PASSWORD], &mut out).unwrap();
    stream.write_all(&out).unwrap();
    assert_eq!(read_exact_n(stream, 2), [5, 2]);
    out.clear();
    encode_userpass_request(user.as_bytes(), pass.as_bytes(), &mut out).unwrap();
    stream.write_all(&out).unwrap();
    if read_exact_n(stream, 2) != [1, 0] {
        return ReplyCode::NotAllowedByRuleset;
    }
    out.clear();
    encode_request(Command::Connect, &TargetAddr::Ip(target), &mut out).unwrap();
    stream.write_all(&out).unwrap();
    let mut buf = Vec::new();
    loop {
        match parse_reply(&buf).unwrap() {
            Parsed::Complete { value, .. } => return value.code,
            Parsed::Incomplete => buf.extend(read_exact_n(stream, 1)),
        }
    }
}

fn tls_policy(extra: &str) -> String {
    seed_policy(&format!(
        "use_tls = true, require_auth = true, hostname = 'proxy.nephele.test' {extra}"
    ))
}

/// [`tls_policy`] plus an HTTP listener, so a test can read `/metrics`.
fn tls_policy_with_metrics(extra: &str) -> String {
    tls_policy(extra).replace(
        "kumo.on('proxy_init', function()",
        "kumo.on('proxy_init', function()\n  proxy.start_http_listener { listen = '127.0.0.1:0' }",
    )
}

#[test]
fn socks_over_tls_with_login_relays_bytes_intact() {
    let echo = spawn_echo_server("127.0.0.1:0");
    let proxy = RunningProxy::start(&tls_policy(""));
    let mut stream = tls_connect(proxy.addr);
    assert_eq!(
        socks_login_connect(&mut stream, USER, PASSWORD, echo),
        ReplyCode::Succeeded
    );
    let payload = pattern_bytes(3 * 1024 * 1024);
    // Write and read in turns so neither side's buffers fill up.
    let mut echoed = Vec::with_capacity(payload.len());
    for chunk in payload.chunks(256 * 1024) {
        stream.write_all(chunk).unwrap();
        echoed.extend(read_exact_n(&mut stream, chunk.len()));
    }
    assert!(echoed == payload, "echo through SOCKS-over-TLS differs");
    // A TLS close_notify is the client's half-close: the echo server sees
    // EOF and its trailer comes back before the end of the stream.
    stream.conn.send_close_notify();
    stream.flush().unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert_eq!(rest, EOF_TRAILER);
}

/// A server that reads its client to EOF, then answers `size` bytes.
fn spawn_answer_after_eof(size: usize) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).unwrap();
        conn.write_all(&pattern_bytes(size)).unwrap();
    });
    addr
}

/// A client that ends its direction with a bare TCP FIN (no TLS
/// close_notify) still receives the whole other direction.
#[test]
fn a_fin_without_close_notify_ends_only_that_direction() {
    const ANSWER: usize = 1_000_000;
    let server = spawn_answer_after_eof(ANSWER);
    let proxy = RunningProxy::start(&tls_policy(""));
    let mut stream = tls_connect(proxy.addr);
    assert_eq!(
        socks_login_connect(&mut stream, USER, PASSWORD, server),
        ReplyCode::Succeeded
    );
    stream.write_all(b"request").unwrap();
    stream.flush().unwrap();
    stream.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert_eq!(answer.len(), ANSWER);
    assert!(answer == pattern_bytes(ANSWER));
}

#[test]
fn wrong_password_over_tls_is_refused() {
    let echo = spawn_echo_server("127.0.0.1:0");
    let proxy = RunningProxy::start(&tls_policy(""));
    let mut stream = tls_connect(proxy.addr);
    assert_eq!(
        socks_login_connect(&mut stream, USER, "wrong", echo),
        ReplyCode::NotAllowedByRuleset
    );
}

/// A client that sends the start of a TLS record and stalls, and one that
/// sends plain SOCKS bytes: both are closed, within the step timeout for the
/// staller, and both are logged as handshake failures.
#[test]
fn non_tls_and_stalled_clients_are_dropped() {
    let proxy = RunningProxy::start(&tls_policy_with_metrics(", timeout = '1 second'"));
    let started = Instant::now();
    let mut stalled = connect(proxy.addr);
    send(&mut stalled, &[0x16, 0x03, 0x01]);
    assert_closed(&mut stalled, "stalled TLS record");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "staller not closed in time"
    );

    // A plain SOCKS client gets at most a TLS alert record, never a SOCKS
    // reply, and then the end of the stream.
    let mut plain = connect(proxy.addr);
    send(&mut plain, &[5, 1, 0]);
    let answer = read_to_eof(&mut plain, "answer to a plain SOCKS greeting");
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "expected nothing or a TLS alert, got {answer:02x?}"
    );
    wait_for_log(&proxy, "TLS handshake timed out");
    wait_for_log(&proxy, "TLS handshake failed");
    assert_eq!(
        proxy.listener_metric("proxy_tls_handshake_failures_total"),
        2
    );
}

fn wait_for_log(proxy: &RunningProxy, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = proxy.stderr();
        if log.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn named_certificate(common_name: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn s_client_certificate(addr: SocketAddr) -> String {
    let mut child = Process::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is needed: run scripts/test to install it");
    drop(child.stdin.take());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    out
}

#[test]
fn openssl_sees_the_configured_certificate() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = named_certificate("nephele-given.test");
    let cert_path = files.path().join("cert.pem");
    std::fs::write(&cert_path, cert).unwrap();
    // The certificate from a file, the key inline as a keysource.
    let policy = tls_policy(&format!(
        ", tls_certificate = '{}', tls_private_key = {{ key_data = [[{key}]] }}",
        cert_path.display()
    ));
    let proxy = ProxyCommand::with_policy(&policy).start();
    let shown = s_client_certificate(proxy.addr);
    assert!(
        shown.contains("nephele-given.test"),
        "s_client output:\n{shown}"
    );
}

#[test]
fn generated_certificate_names_the_hostname() {
    let proxy = RunningProxy::start(&tls_policy(""));
    let shown = s_client_certificate(proxy.addr);
    let pem_start = shown
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate in s_client output");
    let pem_end =
        shown.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let mut x509 = Process::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(&shown.as_bytes()[pem_start..pem_end])
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DNS:proxy.nephele.test"), "{text}");
}

#[test]
fn mismatched_key_fails_start_naming_both_files() {
    let files = tempfile::tempdir().unwrap();
    let (cert, _) = named_certificate("a.test");
    let (_, other_key) = named_certificate("b.test");
    let cert_path = files.path().join("server-cert.pem");
    let key_path = files.path().join("unrelated-key.pem");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, other_key).unwrap();
    let policy = tls_policy(&format!(
        ", tls_certificate = '{}', tls_private_key = '{}'",
        cert_path.display(),
        key_path.display()
    ));
    let finished = ProxyCommand::with_policy(&policy).run_to_exit();
    assert!(
        !finished.status.success(),
        "should fail: {}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("server-cert.pem")
            && finished.stderr.contains("unrelated-key.pem"),
        "{}",
        finished.stderr
    );
}
