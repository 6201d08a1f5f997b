use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pem_pair(hostname: &str) -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_owned()]).unwrap();
    (generated.cert.pem(), generated.key_pair.serialize_pem())
}

fn data(text: &str) -> KeySource {
    KeySource::Data {
        key_data: text.to_owned(),
    }
}

#[test]
fn self_signed_when_no_keys_given() {
    server_config("proxy.test", None, None).unwrap();
}

#[test]
fn given_pair_from_files_and_inline() {
    let (cert, key) = pem_pair("given.test");
    server_config("x", Some(&data(&cert)), Some(&data(&key))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("k.pem"), &key).unwrap();
    server_config(
        "x",
        Some(&KeySource::File(dir.path().join("c.pem"))),
        Some(&KeySource::File(dir.path().join("k.pem"))),
    )
    .unwrap();
}

#[test]
fn mismatched_key_names_both_files() {
    let (cert, _) = pem_pair("a.test");
    let (_, other_key) = pem_pair("b.test");
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("other-key.pem");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, other_key).unwrap();
    let err = server_config(
        "x",
        Some(&KeySource::File(cert_path)),
        Some(&KeySource::File(key_path)),
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("cert.pem") && text.contains("other-key.pem"),
        "{text}"
    );
}

#[test]
fn clear_errors_for_missing_file_garbage_and_half_pairs() {
    let (cert, key) = pem_pair("a.test");
    let err = server_config(
        "x",
        Some(&KeySource::File("/nonexistent/c.pem".into())),
        Some(&data(&key)),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/c.pem"), "{err:#}");
    let err = server_config("x", Some(&data("not pem at all")), Some(&data(&key))).unwrap_err();
    assert!(format!("{err:#}").contains("no PEM certificate"), "{err:#}");
    let err = server_config("x", Some(&data(&cert)), Some(&data("garbage"))).unwrap_err();
    assert!(format!("{err:#}").contains("tls_private_key"), "{err:#}");
    let err = server_config("x", Some(&data(&cert)), None).unwrap_err();
    assert!(format!("{err:#}").contains("give both"), "{err:#}");
}

async fn echo_server(acceptor: TlsAcceptor, connections: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..connections {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        }
    });
    addr
}

async fn talk(addr: std::net::SocketAddr, trust: ClientTrust) -> anyhow::Result<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector(trust)?
        .connect(server_name("localhost")?, tcp)
        .await?;
    tls.write_all(b"hello").await?;
    let mut back = Vec::new();
    tls.read_to_end(&mut back).await?;
    Ok(back)
}

#[tokio::test]
async fn client_and_server_talk() {
    let (cert, key) = pem_pair("localhost");
    let server = acceptor("x", Some(&data(&cert)), Some(&data(&key))).unwrap();
    let addr = echo_server(server, 3).await;
    assert_eq!(
        talk(addr, ClientTrust::Roots(cert.clone().into_bytes()))
            .await
            .unwrap(),
        b"hello"
    );
    assert_eq!(talk(addr, ClientTrust::AcceptAny).await.unwrap(), b"hello");
    // A client trusting only another root refuses the certificate.
    let (other_cert, _) = pem_pair("localhost");
    assert!(talk(addr, ClientTrust::Roots(other_cert.into_bytes()))
        .await
        .is_err());
}
