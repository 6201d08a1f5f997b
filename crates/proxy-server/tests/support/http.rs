//! Helpers for the HTTP listener's black-box tests: policies that start a
//! SOCKS listener (the proxy needs one) plus HTTP listeners, readiness from
//! the `http listener on ADDR` line, and `curl` with status, headers and
//! body captured.

use crate::support::process::{RunningProxy, START_TIMEOUT};
use crate::support::tools::{require_tool, run_tool};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// The marker of the HTTP listener's bound-address log line.
pub const HTTP_LISTENER_MARKER: &str = "http listener on ";

/// The HTTP Basic handler of the seed, with the check every example must
/// have (`not password or password == ''`), recording each call as
/// `user TYPE LEN` in `@DIR@/http_calls.txt` (the password itself is not
/// written).
pub const SEED_HTTP_HANDLER: &str = r#"
kumo.on('http_server_validate_auth_basic', function(user, password)
  local f = assert(io.open('@DIR@/http_calls.txt', 'a'))
  f:write(user, ' ', type(password), ' ', password and #password or -1, '\n')
  f:close()
  if not password or password == '' then
    return false
  end
  local password_database = { ['scott'] = 'tiger' }
  return password_database[user] == password
end)
"#;

/// A policy whose `proxy_init` starts a SOCKS listener on `127.0.0.1:0`
/// and one HTTP listener per entry of `http_listeners` (the Lua fields of
/// its table, `listen` included), followed by `handlers` (Lua code at top
/// level, typically `kumo.on(...)`).
pub fn http_policy(http_listeners: &[&str], handlers: &str) -> String {
    let mut text = String::from(
        "local kumo = require 'kumo'\n\
         local proxy = require 'proxy'\n\
         kumo.on('proxy_init', function()\n  \
           proxy.start_proxy_listener { listen = '127.0.0.1:0', timeout = '5 seconds', prohibited_destinations = {} }\n",
    );
    for keys in http_listeners {
        text.push_str(&format!("  proxy.start_http_listener {{ {keys} }}\n"));
    }
    text.push_str("end)\n");
    text.push_str(handlers);
    text
}

/// The address in an `http listener on ADDR` line, if this is one.
pub fn parse_http_listener_line(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(HTTP_LISTENER_MARKER)? + HTTP_LISTENER_MARKER.len()..];
    let addr: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

impl RunningProxy {
    /// Wait until the proxy has logged `count` `http listener on ADDR`
    /// lines and return those addresses in log order.
    pub fn http_addrs(&self, count: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let addrs: Vec<SocketAddr> = self
                .stderr()
                .lines()
                .filter_map(parse_http_listener_line)
                .collect();
            if addrs.len() >= count {
                return addrs;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not log {count} '{HTTP_LISTENER_MARKER}ADDR' line(s)\n{}",
                self.output_dump()
            );
            // The line is written right after the SOCKS listener's; poll
            // the captured log, never a fixed sleep.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addrs(1)[0]
    }

    /// Lines the seed handler appended to `@DIR@/http_calls.txt`.
    pub fn http_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("http_calls.txt"))
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// What curl got.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Headers of the final response (after any `100 Continue`).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Run `curl ARGS URL` (URL is `http://ADDR{path}`) and capture the status,
/// the final headers and the body. Fails the test if curl itself fails.
pub fn curl(addr: SocketAddr, path: &str, args: &[&str]) -> HttpReply {
    let curl = require_tool("curl");
    let dir = tempfile::tempdir().expect("temp dir for curl output");
    let headers_path = dir.path().join("headers");
    let body_path = dir.path().join("body");
    let url = format!("http://{addr}{path}");
    let out = run_tool(
        Command::new(curl)
            .args(["-sS", "--max-time", "30", "-D"])
            .arg(&headers_path)
            .arg("-o")
            .arg(&body_path)
            .args(["-w", "%{http_code}"])
            .args(args)
            .arg(&url),
        None,
    );
    out.assert_success(&format!("curl {args:?} {url}"));
    let status = out
        .stdout_text()
        .trim()
        .parse()
        .expect("curl printed a status");
    let raw_headers = std::fs::read_to_string(&headers_path).unwrap_or_default();
    // Keep the last header block: a `100 Continue` may precede it.
    let last_block = raw_headers
        .split("\r\n\r\n")
        .filter(|block| !block.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last_block
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = std::fs::read(&body_path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    HttpReply {
        status,
        headers,
        body,
    }
}

/// `Authorization: Basic base64(text)` as a curl `-H` argument.
pub fn basic_header(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Authorization: Basic {out}")
}

impl RunningProxy {
    /// The value of the proxy-listener counter or gauge `name` (e.g.
    /// `proxy_connections_rejected_total`) for the first SOCKS listener,
    /// read from `GET /metrics` of the first HTTP listener (0 if absent).
    pub fn listener_metric(&self, name: &str) -> u64 {
        let reply = curl(self.http_addr(), "/metrics", &[]);
        assert_eq!(reply.status, 200, "GET /metrics: {reply:?}");
        let prefix = format!("{name}{{listener=\"{}\"}} ", self.addr);
        reply
            .body
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |value| {
                value
                    .trim()
                    .parse::<f64>()
                    .unwrap_or_else(|err| panic!("metric {name} value {value:?}: {err}"))
                    as u64
            })
    }
}
