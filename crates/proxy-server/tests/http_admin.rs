//! The HTTP listener's endpoints against the real binary with curl: body
//! limit, policy reload, metrics that follow proxy sessions, the OpenAPI
//! document, the live log filter, and start-up errors. (HTTPS is in
//! `tls_http.rs`.)

mod support;

use support::*;

const LISTENER: &str = "listen = '127.0.0.1:0'";

#[test]
fn a_body_over_request_body_limit_is_413_also_after_decompression() {
    let listener = "listen = '127.0.0.1:0', request_body_limit = 4096";
    let proxy = RunningProxy::start(&http_policy(&[listener], SEED_HTTP_HANDLER));
    let addr = proxy.http_addr();
    let path = "/api/admin/set_diagnostic_log_filter/v1";
    let json = ["-H", "Content-Type: application/json"];

    let small = curl(
        addr,
        path,
        &[&json[..], &["--data-binary", r#"{"filter":"info"}"#]].concat(),
    );
    assert_eq!(small.status, 200, "{small:?}");

    let big = format!(r#"{{"filter":"info"{}}}"#, " ".repeat(8192));
    let big_file = proxy.dir().join("big.json");
    std::fs::write(&big_file, &big).unwrap();
    let at_big = format!("@{}", big_file.display());
    let reply = curl(
        addr,
        path,
        &[&json[..], &["--data-binary", &at_big]].concat(),
    );
    assert_eq!(reply.status, 413, "{reply:?}");

    // 1 MiB of spaces gzips to about 1 KiB: under the limit on the wire,
    // far over it once decompressed.
    let padded = format!(r#"{{"filter":"info"{}}}"#, " ".repeat(1 << 20));
    let gz_file = proxy.dir().join("big.json.gz");
    let gzip = require_tool("gzip");
    let out = run_tool(
        std::process::Command::new(gzip).args(["-c", "-9"]),
        Some(padded.into_bytes()),
    );
    out.assert_success("gzip");
    assert!(out.stdout.len() < 4096, "{} bytes", out.stdout.len());
    std::fs::write(&gz_file, &out.stdout).unwrap();
    let at_gz = format!("@{}", gz_file.display());
    let args = [
        &json[..],
        &["-H", "Content-Encoding: gzip", "--data-binary", &at_gz],
    ]
    .concat();
    let reply = curl(addr, path, &args);
    assert_eq!(reply.status, 413, "{reply:?}");
}

#[test]
fn bump_config_epoch_makes_an_edited_policy_take_effect_without_restart() {
    let command = ProxyCommand::with_policy(&http_policy(&[LISTENER], SEED_HTTP_HANDLER));
    let policy_path = command.dir().join("policy.lua");
    let proxy = command.start();
    let addr = proxy.http_addr();
    let bump = ["-X", "POST"];
    assert_eq!(
        curl(addr, "/metrics", &["-u", "alice:wonderland"]).status,
        401
    );

    let edited = http_policy(
        &[LISTENER],
        &SEED_HTTP_HANDLER.replace("['scott'] = 'tiger'", "['alice'] = 'wonderland'"),
    )
    .replace("@DIR@", proxy.dir().to_str().unwrap());
    std::fs::write(&policy_path, edited).unwrap();
    // Not before the reload.
    assert_eq!(
        curl(addr, "/metrics", &["-u", "alice:wonderland"]).status,
        401
    );
    let reply = curl(addr, "/api/admin/bump-config-epoch", &bump);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, r#"{"epoch":1}"#);
    assert_eq!(
        curl(addr, "/metrics", &["-u", "alice:wonderland"]).status,
        200
    );
    assert_eq!(curl(addr, "/metrics", &["-u", "scott:tiger"]).status, 401);

    // A policy that no longer loads is refused; the running one stays.
    std::fs::write(&policy_path, "this is not Lua at all").unwrap();
    let broken = curl(addr, "/api/admin/bump-config-epoch", &bump);
    assert_eq!(broken.status, 500, "{broken:?}");
    assert!(broken.body.contains("policy.lua"), "{broken:?}");
    assert!(!broken.body.contains("traceback"), "{broken:?}");
    assert_eq!(
        curl(addr, "/metrics", &["-u", "alice:wonderland"]).status,
        200
    );
}

#[test]
fn metrics_counters_move_when_proxy_sessions_run() {
    let proxy = RunningProxy::start(&http_policy(&[LISTENER], SEED_HTTP_HANDLER));
    let addr = proxy.http_addr();
    let accepted = |text: &str| -> u64 {
        let label = format!(
            "proxy_connections_accepted_total{{listener=\"{}\"}} ",
            proxy.addr
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&label))
            .map_or(0, |value| value.trim().parse().unwrap())
    };
    let before = accepted(&curl(addr, "/metrics", &[]).body);
    let echo = spawn_echo_server("127.0.0.1:0");
    for n in 0..3 {
        let (mut stream, _) = open_session(proxy.addr, None, &ip_target(echo));
        assert_echo_with_half_close(&mut stream, format!("session {n}").as_bytes());
    }
    let text = curl(addr, "/metrics", &[]).body;
    assert_eq!(accepted(&text), before + 3, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("proxy_bytes_client_to_dest_total") && !l.ends_with(" 0")),
        "{text}"
    );

    let json = curl(addr, "/metrics.json", &[]);
    assert_eq!(json.status, 200);
    let json: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let family = &json["proxy_connections_accepted"];
    assert_eq!(family["type"], "counter");
    assert_eq!(
        family["samples"][0]["labels"]["listener"],
        proxy.addr.to_string()
    );
    assert_eq!(family["samples"][0]["value"], (before + 3) as f64);
}

#[test]
fn the_openapi_document_is_served_and_dumped() {
    let proxy = RunningProxy::start(&http_policy(&[LISTENER], SEED_HTTP_HANDLER));
    let served = curl(proxy.http_addr(), "/api-docs/openapi.json", &[]);
    assert_eq!(served.status, 200);
    let served: serde_json::Value = serde_json::from_str(&served.body).unwrap();
    for path in [
        "/metrics",
        "/metrics.json",
        "/api-docs/openapi.json",
        "/api/admin/bump-config-epoch",
        "/api/admin/set_diagnostic_log_filter/v1",
        "/proxy/status",
    ] {
        assert!(
            served["paths"][path].is_object(),
            "{path} missing: {served}"
        );
    }
    let dumped = ProxyCommand::with_args(&["--dump-openapi-spec"]).run_to_exit();
    assert!(dumped.status.success(), "{dumped:?}");
    let dumped: serde_json::Value = serde_json::from_str(&dumped.stdout).unwrap();
    assert_eq!(dumped, served);

    let metadata = ProxyCommand::with_args(&["--dump-metric-metadata"]).run_to_exit();
    assert!(metadata.status.success(), "{metadata:?}");
    assert!(metadata.stdout.contains("proxy_connections_accepted_total"));
}

#[test]
fn set_diagnostic_log_filter_changes_what_is_logged() {
    let proxy = RunningProxy::start(&http_policy(&[LISTENER], SEED_HTTP_HANDLER));
    let addr = proxy.http_addr();
    let path = "/api/admin/set_diagnostic_log_filter/v1";
    let json = "Content-Type: application/json";
    assert_eq!(curl(addr, "/metrics", &[]).status, 200);
    assert!(
        !proxy.stderr().contains("access allowed"),
        "debug is off by default"
    );

    let set = |filter: &str| {
        let body = format!(r#"{{"filter":"{filter}"}}"#);
        curl(addr, path, &["-H", json, "--data-binary", &body])
    };
    assert_eq!(set("info,http_listener=debug").status, 200);
    assert_eq!(curl(addr, "/proxy/status", &[]).status, 200);
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while !proxy.stderr().contains("access allowed") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            proxy.output_dump()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let bad = set("info,[");
    assert_eq!(bad.status, 400, "{bad:?}");
    let unknown = curl(
        addr,
        path,
        &["-H", json, "--data-binary", r#"{"level":"x"}"#],
    );
    assert_eq!(unknown.status, 422, "{unknown:?}");
}

#[test]
fn unknown_listener_keys_and_calls_outside_proxy_init_stop_the_start() {
    let typo = ProxyCommand::with_policy(&http_policy(
        &["listen = '127.0.0.1:0', trusted_host = { '10.0.0.0/8' }"],
        "",
    ))
    .run_to_exit();
    assert!(!typo.status.success());
    assert!(typo.stderr.contains("trusted_host"), "{}", typo.stderr);

    let outside_init =
        "local proxy = require 'proxy'\nproxy.start_http_listener { listen = '127.0.0.1:0' }\n";
    let outside = ProxyCommand::with_policy(outside_init).run_to_exit();
    assert!(!outside.status.success());
    assert!(outside.stderr.contains("proxy_init"), "{}", outside.stderr);
}

#[test]
fn several_listeners_each_with_their_own_trusted_hosts() {
    let proxy = RunningProxy::start(&http_policy(
        &[LISTENER, "listen = '127.0.0.1:0', trusted_hosts = {}"],
        SEED_HTTP_HANDLER,
    ));
    let addrs = proxy.http_addrs(2);
    assert_eq!(curl(addrs[0], "/metrics", &[]).status, 200);
    assert_eq!(curl(addrs[1], "/metrics", &[]).status, 401);
    // Each keeps its own name in resource names.
    let denied = curl(addrs[1], "/metrics", &["-u", "scott:tiger"]);
    assert!(
        denied
            .body
            .contains(&format!("http_listener/{}/metrics", addrs[1])),
        "{denied:?}"
    );
}
