//! Issue 7: per-user authorization of CONNECT/BIND with `kumo.aaa`
//! (examples/proxy-acl.lua + .toml driven by raw SOCKS bytes and PySocks),
//! ACLs on the HTTP listener from AuthInfo groups and `get_acl_definition`,
//! and the accounting log read back from its zstd segments.

mod support;

use socks5::{Command, ReplyCode, TargetAddr};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command as Process;
use support::*;

const EXAMPLE_LUA: &str = include_str!("../../../examples/proxy-acl.lua");
const EXAMPLE_TOML: &str = include_str!("../../../examples/proxy-acl.toml");
const GOLD: (&str, &str) = ("gold", "gold-password");
const BASIC: (&str, &str) = ("basic", "basic-password");

/// The example on a free port, logging into `DIR/acct`.
fn start_example() -> RunningProxy {
    start_example_logging_to("@DIR@/acct")
}

/// The example on a free port, logging into `acct_dir`.
fn start_example_logging_to(acct_dir: &str) -> RunningProxy {
    let policy = EXAMPLE_LUA
        .replace("'127.0.0.1:1080'", "'127.0.0.1:0'")
        .replace("'/tmp/proxy-acl-acct'", &format!("'{acct_dir}'"))
        .replace("'1 minute'", "'1 hour'")
        // The destinations here are all on loopback: only the ACL decides.
        .replace(
            "require_auth = true,",
            "require_auth = true, prohibited_destinations = {},",
        );
    let cmd = ProxyCommand::with_policy(&policy);
    cmd.write_file("proxy-acl.toml", EXAMPLE_TOML);
    cmd.start()
}

fn bind(stream: &mut std::net::TcpStream, source: &str) -> u8 {
    let source: IpAddr = source.parse().unwrap();
    code(&request(
        stream,
        Command::Bind,
        &ip_target(SocketAddr::new(source, 0)),
    ))
}

/// Log in as `who`, BIND `source`, and if allowed CONNECT to a peer
/// reporter to see the source address really used.
fn bind_then_connect(proxy: &RunningProxy, who: (&str, &str), source: &str) -> Result<String, u8> {
    let reporter = spawn_peer_reporter("127.0.0.1:0");
    let mut stream = connect(proxy.addr);
    authenticate(&mut stream, Some(who));
    match bind(&mut stream, source) {
        0 => {}
        refused => return Err(refused),
    }
    let reply = request(&mut stream, Command::Connect, &ip_target(reporter));
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let seen = read_to_eof(&mut stream, "peer report");
    let seen = String::from_utf8(seen).unwrap();
    Ok(seen.trim().rsplit_once(':').unwrap().0.to_owned())
}

#[test]
fn example_bind_rules_raw_socks() {
    let proxy = start_example();
    assert_eq!(
        bind_then_connect(&proxy, GOLD, "127.0.0.2"),
        Ok("127.0.0.2".into())
    );
    assert_eq!(
        bind_then_connect(&proxy, GOLD, "127.0.0.1"),
        Ok("127.0.0.1".into())
    );
    assert_eq!(
        bind_then_connect(&proxy, BASIC, "127.0.0.1"),
        Ok("127.0.0.1".into())
    );
    assert_eq!(bind_then_connect(&proxy, BASIC, "127.0.0.2"), Err(0x02));
    assert_eq!(bind_then_connect(&proxy, GOLD, "127.0.0.3"), Err(0x02));
}

#[test]
fn example_connect_rules_raw_socks() {
    let proxy = start_example();
    // Port 25 anywhere in 127.0.0.64/26 is refused before any connection
    // is tried (nothing listens there, so a try would give 05, not 02).
    for host in ["127.0.0.64", "127.0.0.100", "127.0.0.127"] {
        for who in [GOLD, BASIC] {
            let mut stream = connect(proxy.addr);
            authenticate(&mut stream, Some(who));
            let target = ip_target(format!("{host}:25").parse().unwrap());
            let reply = request(&mut stream, Command::Connect, &target);
            assert_eq!(code(&reply), 0x02, "{who:?} CONNECT {host}:25");
        }
    }
    // Just outside the block, or another port inside it: not refused by
    // the ACL (nothing listens on 25, so the connection itself fails: 05).
    for target in ["127.0.0.63:25", "127.0.0.128:25"] {
        let mut stream = connect(proxy.addr);
        authenticate(&mut stream, Some(BASIC));
        let reply = request(
            &mut stream,
            Command::Connect,
            &ip_target(target.parse().unwrap()),
        );
        assert_eq!(code(&reply), 0x05, "CONNECT {target}");
    }
    let echo = spawn_echo_server("127.0.0.100:0");
    let (mut stream, _) = open_session(proxy.addr, Some(BASIC), &ip_target(echo));
    assert_echo_round_trip(&mut stream, b"allowed inside the block on another port");
    // A domain name is checked by name: not in the block, so allowed.
    let (mut stream, _) = open_session(
        proxy.addr,
        Some(GOLD),
        &TargetAddr::Domain("localhost".into(), spawn_echo_server("127.0.0.1:0").port()),
    );
    assert_echo_round_trip(&mut stream, b"by name");
}

/// Every other spelling of a denied address is judged as the address it
/// resolves to: numeric forms the resolver accepts, IPv4-mapped IPv6, and
/// names that resolve to it.
#[test]
fn denied_addresses_are_refused_in_every_spelling() {
    let proxy = start_example();
    let spellings = [
        TargetAddr::Domain("127.100".into(), 25),
        TargetAddr::Domain("2130706532".into(), 25),
        TargetAddr::Domain("0x7f000064".into(), 25),
        TargetAddr::Domain("127.0.0.0144".into(), 25),
        TargetAddr::Domain("::ffff:127.0.0.100".into(), 25),
        TargetAddr::Domain("127.0.0.100.".into(), 25),
        ip_target("[::ffff:127.0.0.100]:25".parse().unwrap()),
    ];
    for target in spellings {
        let mut stream = connect(proxy.addr);
        authenticate(&mut stream, Some(GOLD));
        let reply = request(&mut stream, Command::Connect, &target);
        assert_eq!(code(&reply), 0x02, "CONNECT {target}");
    }
}

const PYSOCKS_CONNECT: &str = r#"
import socket, sys, socks
proxy_port, user, password, host, port = sys.argv[1:6]
s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
s.set_proxy(socks.SOCKS5, '127.0.0.1', int(proxy_port), rdns=False,
            username=user, password=password)
s.settimeout(20)
try:
    s.connect((host, int(port)))
except socks.ProxyError as e:
    sys.stderr.write('%s: %s\n' % (type(e).__name__, e))
    sys.exit(3)
s.sendall(b'hello')
s.shutdown(socket.SHUT_WR)
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.buffer.write(data)
"#;

fn pysocks(proxy: &RunningProxy, who: (&str, &str), target: SocketAddr) -> ToolOutput {
    require_pysocks();
    run_tool(
        Process::new(SYSTEM_PYTHON).args([
            "-c",
            PYSOCKS_CONNECT,
            &proxy.addr.port().to_string(),
            who.0,
            who.1,
            &target.ip().to_string(),
            &target.port().to_string(),
        ]),
        None,
    )
}

#[test]
fn example_connect_rules_pysocks() {
    let proxy = start_example();
    let out = pysocks(&proxy, GOLD, "127.0.0.70:25".parse().unwrap());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // PySocks names reply 02 "Connection not allowed by ruleset".
    assert!(
        out.stderr.contains("0x02") || out.stderr.contains("ruleset"),
        "{}",
        out.stderr
    );
    let echo = spawn_echo_server("127.0.0.1:0");
    let out = pysocks(&proxy, GOLD, echo);
    out.assert_success("PySocks CONNECT allowed by the ACL");
    assert!(
        out.stdout_text().starts_with("hello"),
        "{}",
        out.stdout_text()
    );
}

/// Every JSON record in every zstd segment under `dir`.
fn accounting_records(dir: &Path) -> (Vec<serde_json::Value>, String) {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no accounting segment in {}",
        dir.display()
    );
    let mut all = String::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.len() >= 15
                && name.as_bytes()[8] == b'-'
                && name[..8].bytes().all(|b| b.is_ascii_digit()),
            "segment name {name}"
        );
        let mut text = String::new();
        zstd::Decoder::new(std::fs::File::open(path).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        all.push_str(&text);
    }
    let records = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (records, all)
}

#[test]
fn accounting_log_records_logins_and_denials_without_secrets() {
    // Outlives the proxy's own directory, which goes with it.
    let acct = tempfile::tempdir().unwrap();
    let dir = acct.path().join("segments");
    let proxy = start_example_logging_to(dir.to_str().unwrap());
    // A failed login.
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[2]), [5, 2]);
    assert_eq!(
        login(&mut stream, b"gold", b"not-the-gold-password"),
        [1, 1]
    );
    // A successful one, then a denied CONNECT.
    let mut stream = connect(proxy.addr);
    authenticate(&mut stream, Some(GOLD));
    let reply = request(
        &mut stream,
        Command::Connect,
        &ip_target("127.0.0.99:25".parse().unwrap()),
    );
    assert_eq!(code(&reply), 0x02);
    drop(stream);
    // SIGTERM finishes the open segment.
    let finished = proxy.terminate();
    assert!(finished.status.success(), "{}", finished.stderr);
    let (records, text) = accounting_records(&dir);
    for secret in ["gold-password", "not-the-gold-password", "basic-password"] {
        assert!(
            !text.contains(secret),
            "{secret} in the accounting log:\n{text}"
        );
    }
    let authn: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "Authentication")
        .collect();
    assert_eq!(authn.len(), 2, "{text}");
    assert_eq!(authn[0]["success"], false);
    assert_eq!(authn[0]["attempted_identity"]["identity"], "gold");
    assert_eq!(
        authn[0]["attempted_identity"]["context"],
        "ProxyAuthRfc1929"
    );
    assert_eq!(authn[1]["success"], true);
    assert_eq!(authn[1]["auth_info"]["groups"][0], "premium-tier");
    assert_eq!(authn[1]["auth_info"]["peer_address"], "127.0.0.1");
    let denial = records
        .iter()
        .find(|r| r["type"] == "Authorization" && r["access"] == "Deny")
        .unwrap_or_else(|| panic!("no denial in {text}"));
    assert_eq!(denial["privilege"], "connect");
    assert!(denial["target_resource"]
        .as_str()
        .unwrap()
        .ends_with("/destination/127.0.0.99:25"));
    assert!(denial["matching_resource"]
        .as_str()
        .unwrap()
        .ends_with("/destination/127.0.0.99:25"));
    assert_eq!(denial["rule"]["access"], "Deny");
    assert_eq!(denial["auth_info"]["identities"][0]["identity"], "gold");
    assert!(!denial["considered_resources"]
        .as_array()
        .unwrap()
        .is_empty());
}
