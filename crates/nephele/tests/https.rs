//! HTTPS on nephele's HTTP listener: `use_tls = true` with a generated
//! certificate, and the injection API working through it.

mod support;

use support::*;

#[test]
fn injection_over_https_with_a_generated_certificate() {
    let policy = POLICY_INIT.replace(
        "kumo.start_http_listener { listen = '127.0.0.1:0' }",
        "kumo.start_http_listener { listen = '127.0.0.1:0', use_tls = true, hostname = 'mail.nephele.test' }",
    ) + POLICY_AUTH
        + POLICY_MAILDIR_QUEUE;
    let workspace = Workspace::new(&policy);
    let daemon = workspace.start();
    let https = |path: &str| format!("https://{}{path}", daemon.addr);

    let live = curl(&https("/api/check-liveness/v1"), &["-k"]);
    assert_eq!(live.status, 200, "{}", live.body);

    let body = serde_json::json!({
        "envelope_sender": "noreply@example.com",
        "recipients": [{ "email": "tls@example.com" }],
        "content": "Subject: over TLS\r\n\r\nsecret body\r\n",
    })
    .to_string();
    let reply = curl(
        &https("/api/inject/v1"),
        &[
            "-k",
            "-u",
            "scott:tiger",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["success_count"], 1, "{}", reply.body);
    let delivered = wait_for("delivery into the maildir", WAIT_TIMEOUT, || {
        let messages = workspace.maildir_messages();
        (!messages.is_empty()).then_some(messages)
    });
    assert!(delivered[0].contains("over TLS"), "{}", delivered[0]);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(daemon.url("/api/check-liveness/v1"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout).trim(), "200");
}

#[test]
fn a_given_certificate_is_verified_by_curl() {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "nephele-inject.test");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    // The certificate from a file, the key inline as a keysource.
    let policy = POLICY_INIT.replace(
        "kumo.start_http_listener { listen = '127.0.0.1:0' }",
        &format!(
            "kumo.start_http_listener {{ listen = '127.0.0.1:0', use_tls = true, \
             tls_certificate = '@DIR@/cert.pem', tls_private_key = {{ key_data = [[{}]] }} }}",
            key.serialize_pem()
        ),
    );
    let workspace = Workspace::new(&policy);
    let cert_path = workspace.write("cert.pem", &cert.pem());
    let daemon = workspace.start();
    let port = daemon.addr.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let cacert = cert_path.display().to_string();
    let live = curl(
        &format!("https://localhost:{port}/api/check-liveness/v1"),
        &["--cacert", &cacert, "--resolve", &resolve],
    );
    assert_eq!(live.status, 200, "{}", live.body);
}
