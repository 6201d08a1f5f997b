//! `kumo.http` against real servers the tests start on loopback: the
//! Python login/echo service, a TLS server with a self-signed certificate
//! (rustls, in-process), and peers that refuse or never answer.

#[path = "support/backends.rs"]
mod backends;
#[path = "support/lua_state.rs"]
mod lua_state;
#[path = "support/upstream_examples.rs"]
mod upstream_examples;

use backends::{free_port, AuthService};
use lua_state::{run, state_with};
use mlua::Lua;
use policy_lib::PolicyLibrary;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn state() -> Lua {
    state_with(&PolicyLibrary::new())
}

#[tokio::test]
async fn the_upstream_examples_run_with_only_the_url_changed() {
    let service = AuthService::start(&[]);
    let lua = state();
    let echo = format!("http://{}/echo", service.addr);
    let example = upstream_examples::with_addresses(upstream_examples::HTTP_CLIENT, "", &echo);
    run(&lua, &example).await.unwrap();
    let printed: Vec<String> = lua.globals().get("printed").unwrap();
    assert_eq!(printed[0], "200\tOK");
    assert!(printed.contains(&"Header\tx-auth-service\tnephele-test".to_string()));
    assert!(printed.last().unwrap().starts_with("GET\n"), "{printed:?}");
    run(&lua, upstream_examples::HTTP_BUILD_URL).await.unwrap();
}

#[tokio::test]
async fn requests_carry_headers_credentials_and_bodies() {
    let service = AuthService::start(&[("scott", "tiger")]);
    let lua = state();
    lua.globals()
        .set("base", format!("http://{}", service.addr))
        .unwrap();
    run(
        &lua,
        r#"
        local http = require 'kumo.http'
        local client = http.build_client { user_agent = 'policy-test/1', timeout = '10 seconds' }
        local req = client:post(base .. '/echo')
        req:header('X-One', '1'):headers { ['X-Two'] = '2' }
        req:basic_auth('scott', 'tiger'):body('raw body')
        local text = req:send():text()
        assert(text:find('^POST\n'), text)
        assert(text:find('x-one: 1', 1, true) and text:find('x-two: 2', 1, true), text)
        assert(text:find('user-agent: policy-test/1', 1, true), text)
        assert(text:find('authorization: Basic c2NvdHQ6dGlnZXI=', 1, true), text)
        assert(text:find('\n\nraw body$'), text)

        local bearer = client:put(base .. '/echo'):bearer_auth('tok-123'):send():text()
        assert(bearer:find('^PUT\n') and bearer:find('authorization: Bearer tok-123', 1, true), bearer)

        local ok = client:post(base .. '/auth')
        ok:form_url_encoded { user = 'scott', password = 'tiger' }
        local response = ok:send()
        assert(response:status_code() == 200 and response:status_is_success())
        assert(response:status_reason() == 'OK')
        assert(response:headers()['X-AUTH-SERVICE'] == 'nephele-test')
        assert(response:content_length() == 3)
        assert(response:bytes() == 'yes')
        local again, err = pcall(response.text, response)
        assert(not again and tostring(err):find('kumo.http: text: the body was already read', 1, true), err)

        local refused = client:post(base .. '/auth')
        refused:form_url_encoded { user = 'scott', password = 'lion' }
        local no = refused:send()
        assert(no:status_code() == 403 and no:status_is_client_error() and not no:status_is_success())
        assert(no:status_reason() == 'Forbidden')
        "#,
    )
    .await
    .unwrap();
    assert_eq!(service.calls(), 2);
}

#[tokio::test]
async fn errors_name_the_function_and_never_show_a_url_password() {
    let closed = free_port();
    let lua = state();
    let cases = [
        (
            format!("kumo.http.build_client({{}}):post('http://127.0.0.1:{closed}/auth'):send()"),
            format!("kumo.http: send: POST http://127.0.0.1:{closed}/auth: error sending request"),
        ),
        (
            format!("kumo.http.build_client({{}}):get('http://user:hunter2@127.0.0.1:{closed}/'):send()"),
            format!("kumo.http: send: GET http://user:****@127.0.0.1:{closed}/: "),
        ),
        (
            "kumo.http.build_client({}):get('not a url')".into(),
            "kumo.http: get: \"not a url\": relative URL without a base".into(),
        ),
        (
            "kumo.http.build_client({ colour = 'red' })".into(),
            "kumo.http: build_client: invalid parameters".into(),
        ),
        (
            "kumo.http.build_client({}):get('http://x/'):header('bad header', 'v')".into(),
            "kumo.http: header: invalid header name \"bad header\"".into(),
        ),
        (
            "kumo.http.build_client({}):get('http://x/'):header('X-Secret', 'hunter2\\n')".into(),
            "kumo.http: header: invalid header value".into(),
        ),
        (
            "kumo.http.build_client({}):get('http://x/'):body({})".into(),
            "kumo.http: body: expected a string, got table".into(),
        ),
        (
            "kumo.http.build_client({}):get('http://x/'):timeout('soon')".into(),
            "kumo.http: timeout: invalid duration".into(),
        ),
        (
            "local c = kumo.http.build_client({}) c:close() c:get('http://x/')".into(),
            "kumo.http: get: the client was closed".into(),
        ),
        (
            format!(
                "local r = kumo.http.build_client({{}}):get('http://127.0.0.1:{closed}/') \
                 pcall(r.send, r) r:send()"
            ),
            "kumo.http: send: the request was already sent".into(),
        ),
    ];
    for (code, expected) in &cases {
        let err = run(&lua, code).await.unwrap_err().to_string();
        assert!(err.contains(expected.as_str()), "{code}: {err}");
        assert!(!err.contains("hunter2"), "{code} leaked: {err}");
    }
}

#[tokio::test]
async fn a_silent_server_is_cut_off_by_the_request_timeout() {
    // Accepts TCP (the kernel's backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lua = state();
    lua.globals()
        .set("url", format!("http://{}/", silent.local_addr().unwrap()))
        .unwrap();
    let started = Instant::now();
    let err = run(
        &lua,
        "kumo.http.build_client({}):get(url):timeout('300ms'):send()",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("kumo.http: send: GET ") && err.contains("timed out"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// One HTTPS response per connection, from a self-signed certificate.
async fn spawn_tls_server() -> std::net::SocketAddr {
    let acceptor = tls::acceptor("localhost", None, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_verifies_certificates_unless_told_not_to() {
    let addr = spawn_tls_server().await;
    let lua = state();
    lua.globals()
        .set("url", format!("https://localhost:{}/", addr.port()))
        .unwrap();
    run(
        &lua,
        "local r = kumo.http.build_client({ accept_invalid_certs = true }):get(url):send() \
         assert(r:status_code() == 200 and r:text() == 'secure')",
    )
    .await
    .unwrap();
    let err = run(&lua, "kumo.http.build_client({}):get(url):send()")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kumo.http: send: GET https://localhost:"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}
