//! `require 'redis'` against real `redis-server` processes the tests start
//! on loopback: a single node, a node with a password, a three-node
//! cluster. Timeouts run on the real clock (the waits are real network
//! I/O, which tokio's paused clock would skip past), kept short.

#[path = "support/backends.rs"]
mod backends;
#[path = "support/lua_state.rs"]
mod lua_state;
#[path = "support/upstream_examples.rs"]
mod upstream_examples;

use backends::{free_port, RedisCluster, RedisServer};
use lua_state::{run, state_with};
use mlua::Lua;
use policy_lib::PolicyLibrary;
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_upstream_examples_run_with_only_the_address_changed() {
    let server = RedisServer::start();
    let lua = state_with(&PolicyLibrary::new());
    let example = upstream_examples::with_addresses(upstream_examples::REDIS, &server.url(), "");
    run(&lua, &example).await.unwrap();
    let printed: Vec<String> = lua.globals().get("printed").unwrap();
    assert_eq!(printed, ["1", "2"]);
    assert_eq!(server.cli(&["GET", "my-key"]).trim(), "2");
}

#[tokio::test]
async fn replies_become_lua_values() {
    let server = RedisServer::start();
    let lua = state_with(&PolicyLibrary::new());
    lua.globals().set("url", server.url()).unwrap();
    run(
        &lua,
        r#"
        local conn = require('redis').open { node = url }
        assert(conn:query('PING') == 'PONG')
        assert(conn:query('SET', 'k', 'v\0\255') == true)
        assert(conn:query('GET', 'k') == 'v\0\255')
        assert(conn:query('GET', 'missing') == nil)
        assert(conn:query('HSET', 'user:scott', { password = 'tiger', quota = 5 }) == 2)
        assert(conn:query('HGET', 'user:scott', 'password') == 'tiger')
        local quota = conn:query('HINCRBY', 'user:scott', 'quota', 1)
        assert(quota == 6 and math.type(quota) == 'integer')
        local values = conn:query('MGET', 'k', 'missing', 'k')
        assert(values[1] == 'v\0\255' and values[2] == nil and values[3] == 'v\0\255')
        conn:query('RPUSH', 'list', { 'a', 'b', 'c' })
        local list = conn:query('LRANGE', 'list', 0, -1)
        assert(#list == 3 and list[3] == 'c')
        assert(conn:query('EXISTS', 'k', 'missing') == 1)
        assert(conn:query('SET', 'flag', true) and conn:query('GET', 'flag') == '1')
        assert(conn:query('INCRBYFLOAT', 'f', 1.5) == '1.5')
        "#,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn errors_name_the_function() {
    let server = RedisServer::start();
    let closed = free_port();
    let lua = state_with(&PolicyLibrary::new());
    lua.globals().set("url", server.url()).unwrap();
    run(
        &lua,
        "conn = require('redis').open { node = url } conn:query('SET', 'k', 'v')",
    )
    .await
    .unwrap();
    let cases = [
        (
            "conn:query('LPUSH', 'k', 'x')",
            "redis: query: WRONGTYPE Operation against a key".to_string(),
        ),
        ("conn:query('NOSUCHCOMMAND')", "redis: query: ".to_string()),
        (
            "conn:query(42)",
            "redis: query: expected a command name, got integer".to_string(),
        ),
        (
            "conn:query('GET', print)",
            "redis: query: argument #2: a function cannot be sent to redis".to_string(),
        ),
        (
            "require('redis').open 'redis://127.0.0.1'",
            "redis: open: invalid parameters".to_string(),
        ),
        (
            "require('redis').open { node = url, colour = 'red' }",
            "unknown field `colour`".to_string(),
        ),
        (
            "require('redis').open { node = 'http://127.0.0.1/' }",
            "redis: open: node http://127.0.0.1/: ".to_string(),
        ),
        (
            "require('redis').open { node = url, pool_size = 0 }",
            "redis: open: pool_size must be at least 1".to_string(),
        ),
        (
            &*format!(
                "require('redis').open {{ node = 'redis://127.0.0.1:{closed}' }}:query('PING')"
            ),
            format!("redis: query: connecting to redis://127.0.0.1:{closed}: Connection refused"),
        ),
    ];
    for (code, expected) in &cases {
        let err = run(&lua, code).await.unwrap_err().to_string();
        assert!(err.contains(expected.as_str()), "{code}: {err}");
    }
}

#[tokio::test]
async fn the_password_is_used_and_never_shown() {
    const PASSWORD: &str = "s3cret-Redis-pw";
    let server = RedisServer::start_with_password(PASSWORD);
    let lua = state_with(&PolicyLibrary::new());
    let port = server.port;
    let good = format!(
        "local c = require('redis').open {{ node = 'redis://:{PASSWORD}@127.0.0.1:{port}' }} \
         assert(c:query('PING') == 'PONG') \
         local k = require('redis').open {{ node = 'redis://127.0.0.1:{port}', password = '{PASSWORD}' }} \
         assert(k:query('PING') == 'PONG')"
    );
    run(&lua, &good).await.unwrap();
    let refused = "redis: query: connecting to redis://";
    let cases = [
        (
            format!("require('redis').open {{ node = 'redis://:wrong-{PASSWORD}@127.0.0.1:{port}' }}:query('PING')"),
            "Password authentication failed",
        ),
        (
            format!("require('redis').open {{ node = 'redis://127.0.0.1:{port}', password = 'wrong-{PASSWORD}' }}:query('PING')"),
            "Password authentication failed",
        ),
        (
            format!("require('redis').open {{ node = 'redis://:{PASSWORD}@127.0.0.1:{port}', password = 123456789 }}"),
            "redis: open: invalid parameters",
        ),
    ];
    for (code, expected) in &cases {
        let err = run(&lua, code).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{code}: {err}");
        assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    }
    let err = run(&lua, &cases[0].0).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("{refused}:****@127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn every_wait_is_bounded() {
    let server = RedisServer::start();
    let lua = state_with(&PolicyLibrary::new());
    lua.globals().set("url", server.url()).unwrap();

    // A reply that does not come: the server is paused.
    run(&lua, "conn = require('redis').open { node = url, response_timeout = '300ms', pool_size = 1 } conn:query('PING')")
        .await
        .unwrap();
    server.cli(&["CLIENT", "PAUSE", "3000", "ALL"]);
    let started = Instant::now();
    let err = run(&lua, "conn:query('GET', 'k')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not reply within 300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    server.cli(&["CLIENT", "UNPAUSE"]);

    // All connections busy: the second caller waits at most wait_timeout.
    run(
        &lua,
        "busy = require('redis').open { node = url, pool_size = 1, wait_timeout = '200ms' }",
    )
    .await
    .unwrap();
    let holding = run(&lua, "busy:query('BLPOP', 'nothing', 1.5)");
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        run(&lua, "busy:query('PING')").await
    };
    let (held, waited) = tokio::join!(holding, waiting);
    held.unwrap();
    let err = waited.unwrap_err().to_string();
    assert!(
        err.contains("became free within 200ms (pool_size 1)"),
        "{err}"
    );

    // A peer that accepts TCP but never speaks Redis.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://{}", silent.local_addr().unwrap());
    lua.globals().set("silent", silent_url).unwrap();
    let started = Instant::now();
    let err = run(
        &lua,
        "require('redis').open { node = silent, connect_timeout = '300ms' }:query('PING')",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("redis: query: connecting to"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pool_per_parameters_shared_by_states_and_bounded_by_pool_size() {
    let server = RedisServer::start();
    let library = PolicyLibrary::new();
    let states: Vec<Lua> = (0..4).map(|_| state_with(&library)).collect();
    let open = format!(
        "conn = require('redis').open {{ node = '{}', pool_size = 2 }}",
        server.url()
    );
    for lua in &states {
        run(lua, &open).await.unwrap();
    }
    let mut queries = tokio::task::JoinSet::new();
    for lua in &states {
        let lua = lua.clone();
        queries.spawn(async move {
            run(
                &lua,
                "for i = 1, 5 do conn:query('BLPOP', 'nothing', 0.05) end",
            )
            .await
        });
    }
    while let Some(outcome) = queries.join_next().await {
        outcome.unwrap().unwrap();
    }
    let clients = server.cli(&["INFO", "clients"]);
    let connected: u64 = clients
        .lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients");
    // The pool's two connections plus this redis-cli.
    assert!(connected <= 3, "{connected} clients connected");
    assert_eq!(server.calls("blpop"), 20);
}

#[tokio::test]
async fn a_cluster_serves_keys_on_every_node() {
    let cluster = RedisCluster::start();
    let lua = state_with(&PolicyLibrary::new());
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("'{u}'")).collect();
    let code = format!(
        "local conn = require('redis').open {{ node = {{ {} }} }}
         for i = 1, 30 do assert(conn:query('SET', 'user:' .. i, 'pw' .. i) == true) end
         for i = 1, 30 do assert(conn:query('GET', 'user:' .. i) == 'pw' .. i) end
         local one = require('redis').open {{ node = {}, cluster = true }}
         assert(one:query('GET', 'user:7') == 'pw7')",
        nodes.join(", "),
        nodes[0]
    );
    run(&lua, &code).await.unwrap();
    // The keys are spread over the nodes: every node stored some.
    for port in &cluster.ports {
        let keys: u64 = backends::redis_cli(*port, &["DBSIZE"])
            .trim()
            .parse()
            .unwrap();
        assert!(keys > 0, "node {port} holds no key");
    }
    assert!(cluster.calls("get") >= 31);
}
