//! Egress through `proxy-server` over TLS (`socks5_proxy_tls`), a proxy
//! named by host, and `suspend_when_proxy_unhealthy`: nephele (the real
//! binary) → a recording TCP relay → the in-process proxy with only a TLS
//! listener → the aiosmtpd sink.

mod smtp_common;
mod support;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;
use smtp_common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::*;

/// A CA (PEM) and a proxy certificate it signed for `localhost` and
/// `proxy.test`, written into `dir` as `ca.pem`, `proxy.pem`, `proxy.key`.
fn write_ca_and_proxy_cert(dir: &Path) {
    let ca_params = |name: &str| {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params("test CA").self_signed(&ca_key).unwrap();
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "proxy.test".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("proxy.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("proxy.key"), leaf_key.serialize_pem()).unwrap();
    // Another CA that did not sign the proxy's certificate.
    let other_key = KeyPair::generate().unwrap();
    let other = ca_params("another CA").self_signed(&other_key).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
}

/// The proxy with a single listener, TLS with the certificate of
/// [`write_ca_and_proxy_cert`]: a client speaking plain SOCKS5 has no port
/// to speak it to.
fn start_tls_proxy(dir: &Path) -> InProcessProxy {
    write_ca_and_proxy_cert(dir);
    let listener = format!(
        ", use_tls = true, tls_certificate = '{0}/proxy.pem', tls_private_key = '{0}/proxy.key'",
        dir.display()
    );
    start_proxy_with(dir, &listener)
}

/// A TCP relay to `target` keeping every byte the client sent: the check
/// that no secret crosses in clear, without a packet capture.
struct Relay {
    addr: SocketAddr,
    from_client: Arc<Mutex<Vec<u8>>>,
}

fn start_relay(target: SocketAddr) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let from_client = Arc::new(Mutex::new(Vec::new()));
    let seen = from_client.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(target) else {
                continue;
            };
            let (mut client_rx, mut server_tx) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = client_rx.read(&mut buf) {
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    if server_tx.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server_tx.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Relay { addr, from_client }
}

/// A "proxy" that accepts, counts and closes each connection.
fn start_counting_closer() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let count = accepts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (addr, accepts)
}

/// Source fields: the proxy at `server` (a `host:port` text) over TLS
/// with `tls` (the Lua table's fields).
fn tls_source(server: &str, tls: &str) -> String {
    format!(
        "socks5_proxy_server = '{server}', socks5_proxy_username = '{PROXY_USER}', \
         socks5_proxy_password = {{ key_data = '{PROXY_PASSWORD}' }}, socks5_proxy_tls = {{ {tls} }}"
    )
}

fn write_policy(ws: &Workspace, mx: SocketAddr, source: &str) {
    let policy = smtp_policy(&mx.to_string(), source);
    ws.write("policy.lua", &format!("{POLICY_INIT}{POLICY_AUTH}{policy}"));
}

fn inject_to(daemon: &Daemon, email: &str) {
    let body = json!({
        "envelope_sender": "news@example.com",
        "recipients": [{"email": email}],
        "content": "Subject: via tls\r\n\r\nhello\r\n",
    });
    let reply = inject(daemon, &body, &["-u", "scott:tiger"]);
    assert_eq!(reply.json()["success_count"], 1, "{}", reply.body);
}

fn wait_received(dir: &Path, count: usize) -> Vec<Received> {
    wait_for("messages at the sink", WAIT_TIMEOUT, || {
        let got = received(dir);
        (got.len() >= count).then_some(got)
    })
}

fn first_failure(ws: &Workspace) -> String {
    let record = wait_for("a TransientFailure", WAIT_TIMEOUT, || {
        ws.records_of("TransientFailure").into_iter().next()
    });
    record["response"]["content"].as_str().unwrap().to_owned()
}

#[test]
fn delivers_through_the_tls_listener_named_localhost_and_no_secret_in_clear() {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    let proxy = start_tls_proxy(ws.dir());
    let relay = start_relay(proxy.addr);
    // A host name, resolved at connect time; the certificate's name is
    // checked against it (no server_name given).
    let server = format!("localhost:{}", relay.addr.port());
    let ca = format!("ca_certificate = '{}/ca.pem'", ws.dir().display());
    write_policy(&ws, sink.addr, &tls_source(&server, &ca));
    let daemon = ws.start();
    inject_to(&daemon, "tls@example.net");
    let got = wait_received(&ws.dir().join("sink"), 1);
    assert_eq!(got[0].envelope["rcpt_tos"], json!(["tls@example.net"]));
    // The login reached the proxy's only (TLS) listener.
    let calls = proxy_calls(ws.dir());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with(PROXY_USER), "{calls:?}");
    assert!(calls[0].ends_with(&proxy.addr.to_string()), "{calls:?}");
    // What nephele sent is a TLS record stream: a handshake record first,
    // and neither the password, the user name nor the message in clear.
    let sent = relay.from_client.lock().unwrap().clone();
    assert_eq!(
        sent.get(..2),
        Some(&[0x16, 0x03][..]),
        "a TLS handshake record"
    );
    for clear in [PROXY_PASSWORD, PROXY_USER, "EHLO", "tls@example.net"] {
        let found = sent.windows(clear.len()).any(|w| w == clear.as_bytes());
        assert!(!found, "{clear:?} crossed in clear");
    }
    let delivery = wait_for("a Delivery", WAIT_TIMEOUT, || {
        ws.records_of("Delivery").into_iter().next()
    });
    assert_eq!(delivery["egress_source"], "src");
}

#[test]
fn a_wrong_ca_fails_naming_tls_then_the_right_one_with_server_name_delivers() {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    let proxy = start_tls_proxy(ws.dir());
    let dir = ws.dir().display().to_string();
    let wrong = format!("ca_certificate = '{dir}/other-ca.pem', server_name = 'proxy.test'");
    write_policy(&ws, sink.addr, &tls_source(&proxy.addr.to_string(), &wrong));
    let daemon = ws.start();
    inject_to(&daemon, "ca@example.net");
    let content = first_failure(&ws);
    assert!(content.contains("TLS"), "{content}");
    assert!(content.contains(&proxy.addr.to_string()), "{content}");
    assert!(!content.contains(PROXY_PASSWORD), "{content}");
    assert!(proxy_calls(ws.dir()).is_empty(), "no login without TLS");
    assert!(received(&ws.dir().join("sink")).is_empty());

    // The right CA, the proxy named by IP and its certificate by
    // server_name; the retry goes through after an epoch bump.
    let right = format!("ca_certificate = '{dir}/ca.pem', server_name = 'proxy.test'");
    write_policy(&ws, sink.addr, &tls_source(&proxy.addr.to_string(), &right));
    let reply = curl(&daemon.url("/api/admin/bump-config-epoch"), &["-X", "POST"]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_received(&ws.dir().join("sink"), 1);
    assert_eq!(proxy_calls(ws.dir()).len(), 1);
}

#[test]
fn insecure_accepts_a_self_signed_proxy_certificate() {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    // No certificate given: the proxy generates a self-signed one.
    let proxy = start_proxy_with(ws.dir(), ", use_tls = true");
    let source = tls_source(&proxy.addr.to_string(), "insecure = true");
    write_policy(&ws, sink.addr, &source);
    let daemon = ws.start();
    inject_to(&daemon, "selfsigned@example.net");
    wait_received(&ws.dir().join("sink"), 1);
    assert_eq!(proxy_calls(ws.dir()).len(), 1);
}

#[test]
fn bad_socks5_proxy_tls_settings_name_the_key() {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    let source = tls_source("127.0.0.1:1", "ca_certificat = '/tmp/ca.pem'");
    write_policy(&ws, sink.addr, &source);
    let daemon = ws.start();
    inject_to(&daemon, "bad@example.net");
    let content = first_failure(&ws);
    assert!(
        content.contains("socks5_proxy_tls") && content.contains("ca_certificat"),
        "{content}"
    );
}

/// A pool of `down` (weight 1,000,000) and `up` (weight 1), each with
/// `suspend_when_proxy_unhealthy = { duration = '1h' }`.
fn pool_policy(mx: SocketAddr, down: &str, up: &str) -> String {
    format!(
        r#"{POLICY_INIT}{POLICY_AUTH}
local SOURCES = {{ down = {{ {down} }}, up = {{ {up} }} }}
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '{mx}' }} }} }},
    egress_pool = 'pool', retry_interval = '1 second', max_retry_interval = '1 second',
  }}
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {{ name = name, entries = {{
    {{ name = 'down', weight = 1000000 }}, {{ name = 'up', weight = 1 }} }} }}
end)
kumo.on('get_egress_source', function(name)
  local params = {{ name = name, suspend_when_proxy_unhealthy = {{ duration = '1h' }} }}
  for k, v in pairs(SOURCES[name]) do params[k] = v end
  return kumo.make_egress_source(params)
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, connect_timeout = '5 seconds' }}
end)
"#
    )
}

/// Deliver five messages; the first attempt almost surely picks `down`
/// (a million to one), fails and suspends it, and no later attempt uses
/// it within the hour; the suspension shows in the metrics. Returns the
/// failure recorded for `down`.
fn five_messages_avoid_the_unhealthy_source(ws: &Workspace) -> serde_json::Value {
    let daemon = ws.start();
    let sink_dir = ws.dir().join("sink");
    inject_to(&daemon, "m0@example.net");
    wait_received(&sink_dir, 1);
    for n in 1..5 {
        inject_to(&daemon, &format!("m{n}@example.net"));
    }
    wait_received(&sink_dir, 5);
    let deliveries = ws.wait_for_records("Delivery", 5);
    assert!(deliveries.iter().all(|d| d["egress_source"] == "up"));
    let failures = ws.records_of("TransientFailure");
    assert!(failures.iter().all(|f| f["egress_source"] == "down"));
    assert_eq!(failures.len(), 1, "{failures:?}");
    let metrics = curl(&daemon.url("/metrics"), &[]).body;
    for needle in [
        "egress_source_health_suspended{source=\"down\",reason=\"ProxyUnhealthy\"} 1",
        "egress_source_health_suspensions_total{source=\"down\",reason=\"ProxyUnhealthy\"} 1",
        "egress_source_connection_failures_total{source=\"down\",kind=\"ProxyUnhealthy\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }
    assert!(!metrics.contains("source=\"up\""), "{metrics}");
    failures[0].clone()
}

#[test]
fn an_unreachable_proxy_suspends_its_source_and_the_pool_uses_the_other() {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    let proxy = start_proxy(ws.dir());
    let (closer, accepts) = start_counting_closer();
    let down = format!("socks5_proxy_server = '{closer}'");
    let up = proxied_source(proxy.addr, PROXY_PASSWORD, None);
    ws.write("policy.lua", &pool_policy(sink.addr, &down, &up));
    let failure = five_messages_avoid_the_unhealthy_source(&ws);
    let content = failure["response"]["content"].as_str().unwrap();
    assert!(content.contains(&closer.to_string()), "{content}");
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        1,
        "tried once, then skipped"
    );
}

#[test]
fn a_refused_bind_suspends_its_source_too() {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    let proxy = start_proxy(ws.dir());
    // The test proxy's ACL refuses BIND to 127.0.0.3.
    let down = proxied_source(proxy.addr, PROXY_PASSWORD, Some("127.0.0.3"));
    let up = proxied_source(proxy.addr, PROXY_PASSWORD, None);
    ws.write("policy.lua", &pool_policy(sink.addr, &down, &up));
    let failure = five_messages_avoid_the_unhealthy_source(&ws);
    let content = failure["response"]["content"].as_str().unwrap();
    assert!(content.contains("refused the BIND request"), "{content}");
}
