//! HTTPS on the proxy's HTTP listener (`use_tls = true`): a generated
//! certificate for `hostname`, and a given one verified by curl.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use support::*;

/// `curl ARGS https://HOST:PORT/PATH`, returning the HTTP status.
fn curl_https(url: &str, args: &[&str]) -> u16 {
    let out = run_tool(
        Command::new(require_tool("curl"))
            .args([
                "-sS",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(args)
            .arg(url),
        None,
    );
    out.assert_success(&format!("curl {args:?} {url}"));
    out.stdout_text()
        .trim()
        .parse()
        .expect("curl printed a status")
}

fn start(http_keys: &str) -> (RunningProxy, SocketAddr) {
    let policy = http_policy(
        &[&format!(
            "listen = '127.0.0.1:0', use_tls = true, {http_keys}"
        )],
        SEED_HTTP_HANDLER,
    );
    let proxy = RunningProxy::start(&policy);
    let addr = proxy.http_addr();
    (proxy, addr)
}

#[test]
fn generated_certificate_serves_https() {
    let (_proxy, addr) = start("hostname = 'http.nephele.test'");
    assert_eq!(
        curl_https(&format!("https://{addr}/proxy/status"), &["-k"]),
        200
    );
    assert_eq!(
        curl_https(
            &format!("https://{addr}/metrics"),
            &["-k", "-u", "scott:tiger"]
        ),
        200
    );
    assert_eq!(
        curl_https(
            &format!("https://{addr}/metrics"),
            &["-k", "-u", "scott:bogus"]
        ),
        401
    );
}

#[test]
fn given_certificate_is_verified_by_curl() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "nephele-http.test");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.path().join("http-cert.pem");
    let key_path = dir.path().join("http-key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (_proxy, addr) = start(&format!(
        "tls_certificate = '{}', tls_private_key = '{}'",
        cert_path.display(),
        key_path.display()
    ));
    // Full verification against the given certificate as the only root.
    let port = addr.port();
    let url = format!("https://localhost:{port}/proxy/status");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let cacert = cert_path.display().to_string();
    assert_eq!(
        curl_https(&url, &["--cacert", &cacert, "--resolve", &resolve]),
        200
    );
}

#[test]
fn http_listener_with_key_but_no_tls_fails_start() {
    let policy = http_policy(
        &["listen = '127.0.0.1:0', tls_private_key = { key_data = 'x' }"],
        SEED_HTTP_HANDLER,
    );
    let finished = ProxyCommand::with_policy(&policy).run_to_exit();
    assert!(!finished.status.success());
    assert!(
        finished.stderr.contains("use_tls is false"),
        "{}",
        finished.stderr
    );
}
