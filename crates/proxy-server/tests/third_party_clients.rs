//! Real clients against the real binary: curl (`--socks5`,
//! `--socks5-hostname`, with and without `user:pass@`), ncat
//! (`--proxy-type socks5 --proxy-auth`) and PySocks (Debian's
//! `python3-socks`), plus multi-megabyte transfers with and without splice.

mod support;

use std::process::Command;
use support::*;

const UPLOAD_SIZE: usize = 6 * 1024 * 1024 + 12_345;

fn curl() -> Command {
    let mut command = Command::new(require_tool("curl"));
    command.args(["--silent", "--show-error", "--max-time", "30"]);
    command
}

/// `user:pass@127.0.0.1:PORT` or `127.0.0.1:PORT`.
fn proxy_spec(proxy: &RunningProxy, credentials: Option<(&str, &str)>) -> String {
    match credentials {
        Some((user, pass)) => format!("{user}:{pass}@{}", proxy.addr),
        None => proxy.addr.to_string(),
    }
}

fn curl_get(flag: &str, proxy: &str, url: &str) -> ToolOutput {
    run_tool(curl().args([flag, proxy, url]), None)
}

#[test]
fn curl_socks5_without_auth() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let http = HttpServer::start();
    let out = curl_get("--socks5", &proxy_spec(&proxy, None), &http.url("/"));
    out.assert_success("curl --socks5 without auth");
    assert_eq!(out.stdout_text(), HELLO_BODY);
}

#[test]
fn curl_socks5_hostname_without_auth() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let http = HttpServer::start();
    let out = curl_get(
        "--socks5-hostname",
        &proxy_spec(&proxy, None),
        &http.localhost_url("/"),
    );
    out.assert_success("curl --socks5-hostname without auth");
    assert_eq!(out.stdout_text(), HELLO_BODY);
}

#[test]
fn curl_socks5_with_user_pass() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let http = HttpServer::start();
    let out = curl_get(
        "--socks5",
        &proxy_spec(&proxy, Some((USER, PASSWORD))),
        &http.url("/"),
    );
    out.assert_success("curl --socks5 user:pass@");
    assert_eq!(out.stdout_text(), HELLO_BODY);
    assert_eq!(recorded_calls(proxy.dir()).len(), 1, "the policy decided");
}

#[test]
fn curl_socks5_hostname_with_user_pass() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let http = HttpServer::start();
    let out = curl_get(
        "--socks5-hostname",
        &proxy_spec(&proxy, Some((USER, PASSWORD))),
        &http.localhost_url("/"),
    );
    out.assert_success("curl --socks5-hostname user:pass@");
    assert_eq!(out.stdout_text(), HELLO_BODY);
}

#[test]
fn curl_with_wrong_password_fails() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let http = HttpServer::start();
    for flag in ["--socks5", "--socks5-hostname"] {
        let out = curl_get(
            flag,
            &proxy_spec(&proxy, Some((USER, "wrong"))),
            &http.url("/"),
        );
        out.assert_failure(&format!("curl {flag} with a wrong password"));
        assert!(out.stdout.is_empty(), "no body: {}", out.stdout_text());
    }
}

#[test]
fn curl_without_credentials_fails_when_auth_is_required() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let http = HttpServer::start();
    let out = curl_get("--socks5", &proxy_spec(&proxy, None), &http.url("/"));
    out.assert_failure("curl without credentials against require_auth");
    assert!(out.stdout.is_empty(), "no body: {}", out.stdout_text());
}

#[test]
fn curl_to_a_refused_port_fails() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let url = format!("http://{}/", closed_port());
    let out = curl_get("--socks5", &proxy_spec(&proxy, None), &url);
    out.assert_failure("curl to a closed port through the proxy");
}

fn ncat(proxy: &RunningProxy, auth: Option<(&str, &str)>, target: std::net::SocketAddr) -> Command {
    let mut command = Command::new(require_tool("ncat"));
    command.args(["--proxy", &proxy.addr.to_string(), "--proxy-type", "socks5"]);
    if let Some((user, pass)) = auth {
        command.args(["--proxy-auth", &format!("{user}:{pass}")]);
    }
    command.args([&target.ip().to_string(), &target.port().to_string()]);
    command
}

#[test]
fn ncat_with_proxy_auth() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let echo = spawn_echo_server("127.0.0.1:0");
    let input = b"hello through ncat\n".to_vec();
    let out = run_tool(
        &mut ncat(&proxy, Some((USER, PASSWORD)), echo),
        Some(input.clone()),
    );
    out.assert_success("ncat --proxy-type socks5 --proxy-auth");
    let mut expected = input;
    expected.extend_from_slice(EOF_TRAILER);
    assert_eq!(out.stdout_text(), String::from_utf8(expected).unwrap());
    assert_eq!(recorded_calls(proxy.dir()).len(), 1, "the policy decided");
}

#[test]
fn ncat_without_auth() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let echo = spawn_echo_server("127.0.0.1:0");
    let input = b"ncat, no auth\n".to_vec();
    let out = run_tool(&mut ncat(&proxy, None, echo), Some(input.clone()));
    out.assert_success("ncat --proxy-type socks5");
    let mut expected = input;
    expected.extend_from_slice(EOF_TRAILER);
    assert_eq!(out.stdout, expected);
}

#[test]
fn ncat_with_wrong_password_fails() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let echo = spawn_echo_server("127.0.0.1:0");
    let out = run_tool(
        &mut ncat(&proxy, Some((USER, "wrong")), echo),
        Some(b"should not pass\n".to_vec()),
    );
    out.assert_failure("ncat with a wrong password");
    assert!(out.stdout.is_empty(), "no echo: {}", out.stdout_text());
}

/// Connect through the proxy with PySocks, send the payload from argv,
/// half-close, print what comes back. Exit 3 with the exception's class
/// name on stderr on a SOCKS error.
const PYSOCKS_CLIENT: &str = r#"
import socket, sys, socks
proxy_port, user, password, host, port, rdns, payload = sys.argv[1:8]
s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
s.set_proxy(socks.SOCKS5, '127.0.0.1', int(proxy_port), rdns=(rdns == '1'),
            username=user or None, password=password or None)
s.settimeout(20)
try:
    s.connect((host, int(port)))
except socks.ProxyError as e:
    sys.stderr.write('%s: %s\n' % (type(e).__name__, e))
    sys.exit(3)
s.sendall(payload.encode())
s.shutdown(socket.SHUT_WR)
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.buffer.write(data)
"#;

fn pysocks(
    proxy: &RunningProxy,
    auth: Option<(&str, &str)>,
    host: &str,
    port: u16,
    rdns: bool,
    payload: &str,
) -> ToolOutput {
    require_pysocks();
    let (user, pass) = auth.unwrap_or(("", ""));
    run_tool(
        Command::new(SYSTEM_PYTHON).args([
            "-c",
            PYSOCKS_CLIENT,
            &proxy.addr.port().to_string(),
            user,
            pass,
            host,
            &port.to_string(),
            if rdns { "1" } else { "0" },
            payload,
        ]),
        None,
    )
}

fn expected_echo(payload: &str) -> String {
    format!("{payload}{}", String::from_utf8_lossy(EOF_TRAILER))
}

#[test]
fn pysocks_with_user_pass() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let echo = spawn_echo_server("127.0.0.1:0");
    let out = pysocks(
        &proxy,
        Some((USER, PASSWORD)),
        "127.0.0.1",
        echo.port(),
        false,
        "py",
    );
    out.assert_success("PySocks with user/pass");
    assert_eq!(out.stdout_text(), expected_echo("py"));
}

#[test]
fn pysocks_without_auth() {
    let proxy = RunningProxy::start(&seed_policy(""));
    let echo = spawn_echo_server("127.0.0.1:0");
    let out = pysocks(&proxy, None, "127.0.0.1", echo.port(), false, "py no auth");
    out.assert_success("PySocks without auth");
    assert_eq!(out.stdout_text(), expected_echo("py no auth"));
}

#[test]
fn pysocks_remote_dns_with_user_pass() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let echo = spawn_echo_server("127.0.0.1:0");
    let out = pysocks(
        &proxy,
        Some((USER, PASSWORD)),
        "localhost",
        echo.port(),
        true,
        "rdns",
    );
    out.assert_success("PySocks rdns=True (domain sent to the proxy)");
    assert_eq!(out.stdout_text(), expected_echo("rdns"));
}

#[test]
fn pysocks_with_wrong_password_gets_an_auth_error() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let echo = spawn_echo_server("127.0.0.1:0");
    let out = pysocks(
        &proxy,
        Some((USER, "wrong")),
        "127.0.0.1",
        echo.port(),
        false,
        "x",
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // PySocks wraps the `01 01` status as "SOCKS5 authentication failed".
    assert!(
        out.stderr.to_lowercase().contains("authentication failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn pysocks_without_auth_against_require_auth_is_refused() {
    let proxy = RunningProxy::start(&seed_policy("require_auth = true"));
    let echo = spawn_echo_server("127.0.0.1:0");
    let out = pysocks(&proxy, None, "127.0.0.1", echo.port(), false, "x");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // PySocks reports a `05 FF` selection as "All offered authentication
    // methods were rejected".
    assert!(out.stderr.contains("rejected"), "{}", out.stderr);
}

fn upload_through(listener_keys: &str) {
    let proxy = RunningProxy::start(&seed_policy(listener_keys));
    let http = HttpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    let data = pattern_bytes(UPLOAD_SIZE);
    std::fs::write(&file, &data).unwrap();
    let out = run_tool(
        curl().args([
            "--socks5",
            &proxy_spec(&proxy, Some((USER, PASSWORD))),
            "--data-binary",
            &format!("@{}", file.display()),
            "-H",
            "Content-Type: application/octet-stream",
            &http.url("/upload"),
        ]),
        None,
    );
    out.assert_success(&format!("curl upload with {{ {listener_keys} }}"));
    assert_eq!(out.stdout_text(), upload_answer(&data), "server's view");
    let uploads = http.uploads();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0] == data, "uploaded bytes differ");
}

fn download_through(listener_keys: &str) {
    let proxy = RunningProxy::start(&seed_policy(listener_keys));
    let http = HttpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("download.bin");
    let out = run_tool(
        curl().args([
            "--socks5-hostname",
            &proxy_spec(&proxy, Some((USER, PASSWORD))),
            "--output",
            file.to_str().unwrap(),
            &http.localhost_url(&format!("/bytes/{UPLOAD_SIZE}")),
        ]),
        None,
    );
    out.assert_success(&format!("curl download with {{ {listener_keys} }}"));
    let got = std::fs::read(&file).unwrap();
    assert_eq!(got.len(), UPLOAD_SIZE);
    assert!(got == pattern_bytes(UPLOAD_SIZE), "downloaded bytes differ");
}

#[test]
fn upload_of_several_mb_arrives_byte_identical_with_splice() {
    upload_through("use_splice = true");
}

#[test]
fn upload_of_several_mb_arrives_byte_identical_without_splice() {
    upload_through("use_splice = false");
}

#[test]
fn download_of_several_mb_arrives_byte_identical_with_splice() {
    download_through("use_splice = true");
}

#[test]
fn download_of_several_mb_arrives_byte_identical_without_splice() {
    download_through("use_splice = false");
}

/// `examples/proxy.lua` with its `listen` address moved to port 0.
fn example_policy_on_port_zero() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/proxy.lua");
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read the example policy {path}: {err}"));
    let mut out = String::new();
    let mut rest = text.as_str();
    let mut replaced = 0;
    while let Some(start) = rest.find("listen = ") {
        let value_start = start + "listen = ".len();
        let quote = rest[value_start..].chars().next().expect("listen value");
        assert!(quote == '\'' || quote == '"', "listen value is a string");
        let value_end =
            rest[value_start + 1..].find(quote).expect("closing quote") + value_start + 1;
        out.push_str(&rest[..value_start]);
        out.push_str("'127.0.0.1:0'");
        rest = &rest[value_end + 1..];
        replaced += 1;
    }
    out.push_str(rest);
    assert!(
        replaced >= 1,
        "the example policy has a listen key:\n{text}"
    );
    out
}

#[test]
fn example_policy_works_with_curl_and_the_seed_credentials() {
    let shipped = example_policy_on_port_zero();
    // As shipped, the example refuses loopback destinations (the default),
    // and the test's server is on loopback.
    let strict = RunningProxy::start(&shipped);
    let http = HttpServer::start();
    let out = curl_get(
        "--socks5",
        &proxy_spec(&strict, Some((USER, PASSWORD))),
        &http.url("/"),
    );
    out.assert_failure("examples/proxy.lua to a loopback destination");
    let policy = shipped.replacen(
        "require_auth = true,",
        "require_auth = true, prohibited_destinations = {},",
        1,
    );
    let proxy = RunningProxy::start(&policy);
    let out = curl_get(
        "--socks5",
        &proxy_spec(&proxy, Some((USER, PASSWORD))),
        &http.url("/"),
    );
    out.assert_success("curl --socks5 proxyuser:secretpassword@ with examples/proxy.lua");
    assert_eq!(out.stdout_text(), HELLO_BODY);
    let out = curl_get(
        "--socks5",
        &proxy_spec(&proxy, Some((USER, "nope"))),
        &http.url("/"),
    );
    out.assert_failure("examples/proxy.lua with a wrong password");
}
