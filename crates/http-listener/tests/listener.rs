//! The listener in-process: real TCP on 127.0.0.1:0, a real policy file,
//! a raw HTTP/1.1 client.

mod support;

use serde_json::json;
use std::sync::Arc;
use support::*;
use tokio::io::AsyncReadExt;

const POLICY: &str = r#"
local kumo = require 'kumo'
local function record(line)
  local f = assert(io.open('@DIR@/calls.txt', 'a'))
  f:write(line, '\n')
  f:close()
end
kumo.on('http_server_validate_auth_basic', function(user, password)
  record(user .. ' ' .. (password == nil and 'nil' or ("'" .. password .. "'")))
  if user == 'raiser' then error('handler failed for password ' .. tostring(password)) end
  if user == 'stringer' then return 'yes' end
  if user == 'ops' then
    return { identities = { { identity = 'ops', context = 'HttpBasicAuth' } },
             groups = { 'kumomta:http-listener-trusted-ip' } }
  end
  if user == 'groupsonly' then return { groups = { 'kumomta:http-listener-trusted-ip' } } end
  if not password or password == '' then return false end
  local db = { scott = 'tiger' }
  return db[user] == password
end)
kumo.on('http_server_validate_auth_bearer', function(token)
  record('bearer')
  return token == 'good-token'
end)
"#;

fn auth(value: &str) -> [(&str, &str); 1] {
    [("Authorization", value)]
}

#[tokio::test]
async fn trusted_peer_without_credentials_reads_metrics_and_unknown_paths_are_404() {
    let listener = TestListener::start(POLICY, json!({})).await;
    let reply = listener.get("/metrics", &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("# EOF"), "{reply:?}");
    assert_eq!(listener.get("/metrics.json", &[]).await.status, 200);
    let doc = listener.get("/api-docs/openapi.json", &[]).await;
    assert_eq!(doc.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
    assert!(doc["paths"]["/api/admin/bump-config-epoch"].is_object());
    assert_eq!(listener.get("/nope", &[]).await.status, 404);
    assert_eq!(listener.get("/metrics/", &[]).await.status, 404);
    assert!(listener.calls().is_empty());
}

#[tokio::test]
async fn basic_login_outcomes() {
    let listener = TestListener::start(POLICY, json!({})).await;
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("scott:tiger")))
            .await
            .status,
        200
    );

    let refused = listener.get("/metrics", &auth(&basic("scott:bogus"))).await;
    assert_eq!(
        refused.status, 401,
        "trusted peers get 401 too: {refused:?}"
    );
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"nephele\"")
    );

    let raised = listener
        .get("/metrics", &auth(&basic("raiser:Sekrit-77")))
        .await;
    assert_eq!(raised.status, 500);
    assert!(!raised.body.contains("Sekrit-77") && !raised.body.contains("traceback"));
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("stringer:x")))
            .await
            .status,
        500
    );

    for bad in ["Basic", "Basic !!!", "Digest realm=x", "Bearer"] {
        let reply = listener.get("/metrics", &auth(bad)).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }

    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("scott:")))
            .await
            .status,
        401
    );
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("scott")))
            .await
            .status,
        401
    );
    let calls = listener.calls();
    assert!(calls.contains(&"scott ''".to_owned()), "{calls:?}");
    assert!(calls.contains(&"scott nil".to_owned()), "{calls:?}");
}

#[tokio::test]
async fn a_cached_credential_does_not_call_the_policy_again() {
    let listener = TestListener::start(POLICY, json!({})).await;
    for _ in 0..5 {
        assert_eq!(
            listener
                .get("/metrics", &auth(&basic("scott:tiger")))
                .await
                .status,
            200
        );
        assert_eq!(
            listener
                .get("/metrics", &auth(&basic("scott:bogus")))
                .await
                .status,
            401
        );
    }
    let calls = listener.calls();
    assert_eq!(calls, ["scott 'tiger'", "scott 'bogus'"], "{calls:?}");
    // Errors are not cached: each try asks again.
    listener.get("/metrics", &auth(&basic("raiser:x"))).await;
    listener.get("/metrics", &auth(&basic("raiser:x"))).await;
    assert_eq!(listener.calls().len(), 4);
}

#[tokio::test]
async fn untrusted_peer_is_authorized_by_the_default_acl() {
    let extra = axum::Router::new().route(
        "/proxy/status",
        axum::routing::get(|| async { "status ok\n" }),
    );
    let listener = TestListener::start_with(
        POLICY,
        json!({"trusted_hosts": ["10.0.0.0/8"]}),
        None,
        extra,
    )
    .await;
    let anonymous = listener.get("/metrics", &[]).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(anonymous.header("www-authenticate").is_some());
    assert!(
        anonymous.body.contains("GET") && anonymous.body.contains("/metrics"),
        "{anonymous:?}"
    );

    let scott = listener.get("/metrics", &auth(&basic("scott:tiger"))).await;
    assert_eq!(scott.status, 403, "{scott:?}");
    let expected = format!("scott may not GET http_listener/{}/metrics", listener.addr);
    assert!(scott.body.contains(&expected), "{scott:?}");

    let status = listener.get("/proxy/status", &[]).await;
    assert_eq!((status.status, status.body.as_str()), (200, "status ok\n"));

    // Groups from an AuthInfo result reach the ACL.
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("ops:x")))
            .await
            .status,
        200
    );
    // An AuthInfo without identities proves nothing.
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("groupsonly:x")))
            .await
            .status,
        401
    );

    let bearer = listener.get("/metrics", &auth("Bearer good-token")).await;
    assert_eq!(bearer.status, 403);
    assert!(
        bearer.body.contains("bearer-token may not GET"),
        "{bearer:?}"
    );
    assert!(!bearer.body.contains("good-token"));
    assert_eq!(
        listener
            .get("/metrics", &auth("Bearer bad-token"))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn repeated_failures_block_the_address_without_calling_the_policy() {
    let params = json!({
        "trusted_hosts": [],
        "auth_failure_limit": {"max_failures": 2, "period": "1 minute", "block_for": "1 minute"}
    });
    let listener = TestListener::start(POLICY, params).await;
    for n in 0..3 {
        let reply = listener
            .get("/metrics", &auth(&basic(&format!("scott:wrong{n}"))))
            .await;
        assert_eq!(reply.status, 401);
    }
    let blocked = listener.get("/metrics", &auth(&basic("scott:tiger"))).await;
    assert_eq!(blocked.status, 429, "{blocked:?}");
    let retry: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        listener.calls().len(),
        3,
        "blocked requests never reach Lua"
    );
    // Requests without credentials are not logins; ACL decides them.
    assert_eq!(listener.get("/proxy/status", &[]).await.status, 404);
    assert_eq!(listener.get("/metrics", &[]).await.status, 401);
}

#[tokio::test]
async fn trusted_peers_are_exempt_from_the_failure_limit() {
    let params = json!({"auth_failure_limit": {"max_failures": 1}});
    let listener = TestListener::start(POLICY, params).await;
    for n in 0..4 {
        let reply = listener
            .get("/metrics", &auth(&basic(&format!("scott:w{n}"))))
            .await;
        assert_eq!(reply.status, 401);
    }
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("scott:tiger")))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn missing_handler_is_an_error_not_a_grant() {
    let listener = TestListener::start("local kumo = require 'kumo'\n", json!({})).await;
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("scott:tiger")))
            .await
            .status,
        500
    );
    assert_eq!(
        listener.get("/metrics", &auth("Bearer t")).await.status,
        500
    );
    assert_eq!(listener.get("/metrics", &[]).await.status, 200);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let captured = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let sink = captured.clone();
    let setter: http_listener::LogFilterSetter = Arc::new(move |filter: &str| {
        if filter.contains('[') {
            anyhow::bail!("unbalanced directive");
        }
        sink.lock().push(filter.to_owned());
        Ok(())
    });
    let listener = TestListener::start_with(
        POLICY,
        json!({"request_body_limit": 1024}),
        Some(setter),
        axum::Router::new(),
    )
    .await;
    let path = "/api/admin/set_diagnostic_log_filter/v1";
    let json_type = [("Content-Type", "application/json")];
    let small = request(
        listener.addr,
        "POST",
        path,
        &json_type,
        br#"{"filter":"debug"}"#,
    )
    .await;
    assert_eq!(small.status, 200, "{small:?}");
    assert_eq!(*captured.lock(), ["debug"]);
    let bad = request(
        listener.addr,
        "POST",
        path,
        &json_type,
        br#"{"filter":"x["}"#,
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let unknown = request(listener.addr, "POST", path, &json_type, br#"{"level":"x"}"#).await;
    assert!(unknown.status >= 400 && unknown.status < 500, "{unknown:?}");

    let padding = " ".repeat(2000);
    let big = format!(r#"{{"filter":"info"{padding}}}"#);
    let reply = request(listener.addr, "POST", path, &json_type, big.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
}

#[tokio::test]
async fn connections_past_max_connections_are_closed_at_once() {
    let listener = TestListener::start(POLICY, json!({"max_connections": 1})).await;
    // Hold the only slot with an idle connection.
    let held = tokio::net::TcpStream::connect(listener.addr).await.unwrap();
    // The accept loop needs a moment to take the slot; retry until the
    // second connection is closed without an answer.
    let mut closed = false;
    for _ in 0..50 {
        let mut extra = tokio::net::TcpStream::connect(listener.addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(200), extra.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the second connection should be closed at once");
    drop(held);
    // Once the slot is free, requests are served again.
    let mut served = false;
    for _ in 0..50 {
        if listener.get("/metrics", &[]).await.status == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(served);
}

#[tokio::test]
async fn bump_config_epoch_reloads_the_policy() {
    let listener = TestListener::start(POLICY, json!({})).await;
    let admin = "/api/admin/bump-config-epoch";
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("newbie:pw")))
            .await
            .status,
        401
    );

    listener.rewrite_policy(&POLICY.replace(
        "local db = { scott = 'tiger' }",
        "local db = { newbie = 'pw' }",
    ));
    let reply = request(listener.addr, "POST", admin, &[], b"").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, r#"{"epoch":1}"#);
    // The old verdict was cached under the old epoch: asked again now.
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("newbie:pw")))
            .await
            .status,
        200
    );

    listener.rewrite_policy("this is not lua");
    let broken = request(listener.addr, "POST", admin, &[], b"").await;
    assert_eq!(broken.status, 500, "{broken:?}");
    assert!(broken.body.contains("policy.lua"), "{broken:?}");
    assert!(!broken.body.contains("traceback"), "{broken:?}");
    assert_eq!(listener.policy.epoch(), 1);
    assert_eq!(
        listener
            .get("/metrics", &auth(&basic("newbie:pw2")))
            .await
            .status,
        401
    );
    // A GET is not what the route serves.
    assert_eq!(listener.get(admin, &[]).await.status, 405);
}
