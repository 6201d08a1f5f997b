//! Black-box support for the SMTP delivery tests: an aiosmtpd sink
//! (`tests/smtp_sink.py`), the real `proxy-server` binary, and policy
//! texts wiring nephele's egress to them. Everything listens on loopback,
//! port 0; readiness comes from the "listening on ADDR" lines.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bound for a helper process to report its address.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The proxy user the test proxies accept.
pub const PROXY_USER: &str = "mailer";
/// Its password.
pub const PROXY_PASSWORD: &str = "right-password";

/// A child killed when dropped, with the address it printed.
pub struct Helper {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_with_marker(mut command: Command, marker: &str, use_stderr: bool) -> Helper {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {command:?}: {err}"));
    let (tx, rx) = mpsc::channel();
    let out: Box<dyn Read + Send> = if use_stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Owned by the helper from here on, so a panic below still kills it.
    let mut helper = Helper {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        lines: rx,
    };
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = helper
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{command:?} never printed {marker:?}"));
        if let Some(rest) = line.split(marker).nth(1) {
            let text = rest.split_whitespace().next().unwrap_or("");
            helper.addr = text
                .parse()
                .unwrap_or_else(|_| panic!("no address in {line:?}"));
            return helper;
        }
    }
}

/// The aiosmtpd sink on `host`, writing into `dir`; `tls_files` (certificate
/// and key) make it offer STARTTLS.
fn spawn_sink(dir: &Path, host: &str, tls_files: &[PathBuf]) -> Helper {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
    let mut command = Command::new("/usr/bin/python3");
    command.arg(script).arg(dir).arg(host).args(tls_files);
    spawn_with_marker(command, "sink listening on ", false)
}

/// The aiosmtpd sink on `host`, writing into `dir`.
pub fn start_sink(dir: &Path, host: &str) -> Helper {
    std::fs::create_dir_all(dir).unwrap();
    spawn_sink(dir, host, &[])
}

/// The sink offering STARTTLS with a certificate generated for
/// `sink.test` (written into `dir`).
pub fn start_tls_sink(dir: &Path, host: &str) -> Helper {
    std::fs::create_dir_all(dir).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["sink.test".to_owned()])
        .expect("generate a certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    spawn_sink(dir, host, &[cert, key])
}

/// One message the sink received.
#[derive(Debug)]
pub struct Received {
    /// `mail_from`, `rcpt_tos`, `peer`, `tls`.
    pub envelope: serde_json::Value,
    /// The data, byte for byte.
    pub data: Vec<u8>,
}

/// Every message in the sink's directory, in arrival order.
pub fn received(dir: &Path) -> Vec<Received> {
    let mut out = Vec::new();
    for n in 1.. {
        let json = dir.join(format!("{n}.json"));
        let Ok(text) = std::fs::read_to_string(&json) else {
            break;
        };
        out.push(Received {
            envelope: serde_json::from_str(&text).expect("sink json"),
            data: std::fs::read(dir.join(format!("{n}.eml"))).expect("sink eml"),
        });
    }
    out
}

/// A proxy policy: one `require_auth` listener; the login handler appends
/// `username peer_address local_address` to `@DIR@/proxy_calls.txt` and
/// accepts [`PROXY_USER`]/[`PROXY_PASSWORD`]; its ACL refuses BIND to
/// 127.0.0.3 (reply 02). No verdict cache (`auth_cache_ttl = 0`): every
/// login reaches the handler, so the tests can count logins.
pub const PROXY_POLICY: &str = r#"
local kumo = require 'kumo'
local proxy = require 'proxy'
kumo.on('proxy_init', function()
  proxy.start_proxy_listener { listen = '127.0.0.1:0', require_auth = true, timeout = '10 seconds', prohibited_destinations = {}, auth_cache_ttl = 0 @LISTENER@ }
end)
kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)
  local f = assert(io.open('@DIR@/proxy_calls.txt', 'a'))
  f:write(username, ' ', tostring(conn_meta.peer_address), ' ',
    tostring(conn_meta.local_address), '\n')
  f:close()
  return username == 'mailer' and password == 'right-password'
end)
local deny_bind = kumo.aaa.make_access_control_list {
  { criteria = { Identity = { Any = {} } }, privilege = 'bind', access = 'Deny' },
}
kumo.on('get_acl_definition', function(resource)
  if resource:match('/source/127%.0%.0%.3$') then
    return deny_bind
  end
  return nil
end)
"#;

/// A `proxy-server` run in process through its library, on its own
/// runtime thread; stopped when dropped.
pub struct InProcessProxy {
    /// Its SOCKS listener.
    pub addr: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InProcessProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start the proxy with [`PROXY_POLICY`] (written to `DIR/proxy.lua`).
pub fn start_proxy(dir: &Path) -> InProcessProxy {
    start_proxy_with(dir, "")
}

/// Start the proxy with [`PROXY_POLICY`], its listener table getting the
/// further fields `listener` (Lua, starting with a comma), e.g. TLS keys.
pub fn start_proxy_with(dir: &Path, listener: &str) -> InProcessProxy {
    let path = dir.join("proxy.lua");
    let text = PROXY_POLICY
        .replace("@DIR@", dir.to_str().unwrap())
        .replace("@LISTENER@", listener);
    std::fs::write(&path, text).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (ready, bound) = mpsc::channel();
    let stop = shutdown.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let config = proxy_server::ProxyConfig::from_policy(&path).unwrap();
            let server = proxy_server::ProxyServer::bind(config, None).await.unwrap();
            ready.send(server.proxy_addrs()[0]).unwrap();
            server.run(stop).await.unwrap();
        });
    });
    let addr = bound
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the in-process proxy binds its listener");
    InProcessProxy {
        addr,
        shutdown,
        thread: Some(thread),
    }
}

/// The proxy's recorded logins: `username peer local` lines.
pub fn proxy_calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("proxy_calls.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// nephele's queue and egress policy: SMTP to `mx`, one-second retries,
/// the pool `pool` with one source `src` whose table fields are `source`
/// (Lua), and a path with no prohibited hosts.
pub fn smtp_policy(mx: &str, source: &str) -> String {
    format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '{mx}' }} }} }},
    egress_pool = 'pool',
    retry_interval = '1 second',
    max_retry_interval = '1 second',
  }}
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {{ name = name, entries = {{ {{ name = 'src', weight = 1 }} }} }}
end)
kumo.on('get_egress_source', function(name)
  return kumo.make_egress_source {{ name = name, {source} }}
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  return kumo.make_egress_path {{
    enable_tls = 'Opportunistic', prohibited_hosts = {{}}, connect_timeout = '5 seconds',
  }}
end)
"#
    )
}

/// Source fields for a proxied source with `password`.
pub fn proxied_source(proxy: SocketAddr, password: &str, bind: Option<&str>) -> String {
    let mut text = format!(
        "socks5_proxy_server = '{proxy}', socks5_proxy_username = '{PROXY_USER}', \
         socks5_proxy_password = {{ key_data = '{password}' }}"
    );
    if let Some(bind) = bind {
        text.push_str(&format!(", socks5_proxy_source_address = '{bind}'"));
    }
    text
}

/// The dnslib server of `tests/dns_server.py` serving `zone` (BIND format).
pub fn start_dns(dir: &Path, zone: &str) -> Helper {
    let path = dir.join("zone.txt");
    std::fs::write(&path, zone).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dns_server.py");
    let mut command = Command::new("/usr/bin/python3");
    command.arg(script).arg(path);
    spawn_with_marker(command, "dns listening on ", false)
}
