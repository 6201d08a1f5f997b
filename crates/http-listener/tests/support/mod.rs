//! In-process helpers: a policy file in a temp dir, a listener on
//! `127.0.0.1:0`, and a tiny raw HTTP/1.1 client (one request per
//! connection, `Connection: close`).

#![allow(dead_code)]

use http_listener::{CommonApi, HttpListener, HttpListenerParams, HttpServices, LogFilterSetter};
use policy::{PolicyLoader, PolicyPool};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::OpenApi;

/// A running listener; stops when dropped.
pub struct TestListener {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub policy: PolicyPool,
    shutdown: CancellationToken,
}

impl Drop for TestListener {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestListener {
    /// Start a listener with `policy_text` (`@DIR@` replaced by the temp
    /// dir) and the listener keys given as JSON (merged over
    /// `listen = 127.0.0.1:0`).
    pub async fn start(policy_text: &str, params_json: serde_json::Value) -> Self {
        Self::start_with(policy_text, params_json, None, axum::Router::new()).await
    }

    pub async fn start_with(
        policy_text: &str,
        params_json: serde_json::Value,
        log_filter: Option<LogFilterSetter>,
        extra: axum::Router,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = write_policy(dir.path(), policy_text);
        let loader = PolicyLoader::new(&path, vec![]);
        let policy = PolicyPool::new(loader, Duration::from_secs(5)).unwrap();
        let mut params = serde_json::json!({"listen": "127.0.0.1:0"});
        for (key, value) in params_json.as_object().unwrap() {
            params[key] = value.clone();
        }
        let params: HttpListenerParams = serde_json::from_value(params).unwrap();
        let services = Arc::new(HttpServices::with_default_acl(
            policy.clone(),
            Arc::new(prometheus_client::registry::Registry::default()),
            log_filter,
            CommonApi::openapi(),
        ));
        let listener = HttpListener::bind(params, services, extra).await.unwrap();
        let addr = listener.local_addr();
        let shutdown = CancellationToken::new();
        tokio::spawn(listener.run(shutdown.clone(), TaskTracker::new()));
        TestListener {
            addr,
            dir,
            policy,
            shutdown,
        }
    }

    /// Replace the policy file (the running states keep the old one until
    /// a reload).
    pub fn rewrite_policy(&self, policy_text: &str) {
        write_policy(self.dir.path(), policy_text);
    }

    /// Lines the policy appended to `@DIR@/calls.txt`.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.txt"))
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, "GET", path, headers, b"").await
    }
}

fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.lua");
    let dir_text = dir.to_str().unwrap();
    std::fs::write(&path, text.replace("@DIR@", dir_text)).unwrap();
    path
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `Authorization: Basic base64(text)`.
pub fn basic(text: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413, 401) before reading the whole body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("response within 30 s")
        .ok();
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
