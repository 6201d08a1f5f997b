//! `require 'redis'`: `redis.open { node, ... }` and `conn:query(CMD, ...)`,
//! as KumoMTA documents them. A single node or a Redis Cluster (a list of
//! nodes, or `cluster = true`), behind a deadpool pool of at most
//! `pool_size` connections per distinct set of parameters, shared by every
//! Lua state of the process (policies call `redis.open` in each handler).
//! Every wait is bounded: connecting, waiting for a free connection, the
//! reply, the liveness check of a reused connection. The password never
//! appears in an error: it is masked out of every message.

use crate::cache_key::{update_field, CacheKey, KeyDigest};
use crate::lua_errors::{error_chain, lua_err, lua_message, require_runtime};
use crate::redis_values::{command_from_lua, reply_to_lua, ReplyError};
use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, RedisError};
use aaa::{redact, Secret};
use deadpool::managed::{self, Metrics, Pool, PoolError, RecycleError, TimeoutType};
use mlua::{Lua, MultiValue, UserData, UserDataMethods, Value};
use parking_lot::Mutex;
use policy::{deserialize_duration, from_lua_params, get_or_create_module};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Distinct parameter sets whose pools are kept; past it the oldest is
/// dropped from the registry (handles still holding it keep working).
pub const MAX_POOLS: usize = 64;

/// `redis.open { ... }`; also the `redis` table of the proxy's
/// `configure_shared_state`, so both open Redis the same way.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisParams {
    /// One `redis://` URL, or a list of them (a cluster).
    node: Nodes,
    /// Connections at most in the pool.
    #[serde(default = "default_pool_size")]
    pool_size: usize,
    /// Cluster: send reads to replicas.
    #[serde(default)]
    read_from_replicas: bool,
    /// Used when a node URL names no user.
    username: Option<String>,
    /// Used when a node URL holds no password.
    password: Option<String>,
    /// Bound on connecting (TCP and handshake).
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    connect_timeout: Duration,
    /// Bound on waiting for a free connection when all are in use.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    wait_timeout: Duration,
    /// Bound on each reply.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    response_timeout: Duration,
    /// Bound on the PING that checks a reused connection.
    #[serde(
        default = "default_recycle_timeout",
        deserialize_with = "deserialize_duration"
    )]
    recycle_timeout: Duration,
    /// Force (or refuse) the cluster client; default: cluster when more
    /// than one node is given.
    cluster: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Nodes {
    One(String),
    Many(Vec<String>),
}

fn default_pool_size() -> usize {
    10
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_recycle_timeout() -> Duration {
    Duration::from_secs(5)
}

impl RedisParams {
    /// Parse a `redis.open`-style table; the error names the key at fault
    /// and never holds a password, even one of the wrong type.
    pub fn from_lua(lua: &Lua, params: Value) -> Result<Self, String> {
        let early = Masker(Arc::new(secrets_in_lua_params(&params)));
        from_lua_params(lua, params).map_err(|err| early.mask(&lua_message(err)))
    }

    fn nodes(&self) -> Vec<String> {
        match &self.node {
            Nodes::One(node) => vec![node.clone()],
            Nodes::Many(nodes) => nodes.clone(),
        }
    }

    fn is_cluster(&self) -> bool {
        self.cluster.unwrap_or(self.nodes().len() > 1)
    }

    /// The secrets to mask in messages about these parameters.
    fn secrets(&self) -> Vec<Secret> {
        secrets(self.password.as_deref(), &self.nodes())
    }

    /// The registry key: a salted digest, as the parameters hold passwords.
    fn key(&self, digest: &KeyDigest) -> CacheKey {
        digest.key(|hasher| {
            for node in self.nodes() {
                update_field(hasher, node.as_bytes());
            }
            for text in [&self.username, &self.password] {
                update_field(hasher, text.as_deref().unwrap_or("\0none").as_bytes());
            }
            let numbers = [
                self.pool_size as u128,
                u128::from(self.read_from_replicas),
                u128::from(self.is_cluster()),
                self.connect_timeout.as_nanos(),
                self.wait_timeout.as_nanos(),
                self.response_timeout.as_nanos(),
                self.recycle_timeout.as_nanos(),
            ];
            for number in numbers {
                update_field(hasher, &number.to_le_bytes());
            }
        })
    }
}

/// The `password` key and the password inside each node URL, as written
/// and percent-decoded; longest first, so none is left half-masked.
fn secrets(password: Option<&str>, nodes: &[String]) -> Vec<Secret> {
    let mut secrets: Vec<String> = password.iter().map(|p| p.to_string()).collect();
    for node in nodes {
        if let Some(raw) = url::Url::parse(node)
            .ok()
            .and_then(|url| url.password().map(str::to_owned))
        {
            secrets.push(raw);
        }
        if let Some(decoded) = node
            .as_str()
            .into_connection_info()
            .ok()
            .and_then(|info| info.redis_settings().password().map(str::to_owned))
        {
            secrets.push(decoded);
        }
    }
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets.into_iter().map(Secret::new).collect()
}

/// The secrets in a `redis.open` table that did not parse, so that even
/// its error (which may quote a value) is masked.
fn secrets_in_lua_params(params: &Value) -> Vec<Secret> {
    let Value::Table(table) = params else {
        return Vec::new();
    };
    let text = |value: Value| match value {
        Value::String(s) => Some(s.to_string_lossy().to_string()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let password = table.raw_get::<Value>("password").ok().and_then(text);
    let nodes: Vec<String> = match table.raw_get::<Value>("node") {
        Ok(Value::Table(list)) => list
            .sequence_values::<Value>()
            .filter_map(|node| node.ok().and_then(text))
            .collect(),
        Ok(other) => text(other).into_iter().collect(),
        Err(_) => Vec::new(),
    };
    secrets(password.as_deref(), &nodes)
}

/// Removes secrets from text bound for Lua or a log.
#[derive(Clone)]
struct Masker(Arc<Vec<Secret>>);

impl Masker {
    fn mask(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |text, secret| redact(&text, secret))
    }
}

/// A node URL without its password, for messages.
fn display_node(node: &str) -> String {
    match url::Url::parse(node) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "(unparsable redis URL)".into(),
    }
}

enum RedisClient {
    Single(Client),
    Cluster(Box<ClusterClient>),
}

enum RedisConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    async fn send(&mut self, cmd: &Cmd) -> Result<::redis::Value, RedisError> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd).await,
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd).await,
        }
    }
}

/// Makes and checks the pool's connections.
struct ClientManager {
    client: RedisClient,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl managed::Manager for ClientManager {
    type Type = RedisConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<RedisConnection, RedisError> {
        Ok(match &self.client {
            RedisClient::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.response_timeout));
                RedisConnection::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            RedisClient::Cluster(client) => {
                RedisConnection::Cluster(client.get_async_connection().await?)
            }
        })
    }

    async fn recycle(
        &self,
        conn: &mut RedisConnection,
        _: &Metrics,
    ) -> managed::RecycleResult<RedisError> {
        match conn.send(&::redis::cmd("PING")).await {
            Ok(_) => Ok(()),
            Err(err) => Err(RecycleError::Backend(err)),
        }
    }
}

/// A pool and what is needed to report its errors. What `redis.open`
/// returns to Lua, and what Rust callers (the proxy's fleet state) open
/// with [`RedisPool::open`].
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool<ClientManager>,
    nodes: Arc<str>,
    masker: Masker,
    params: Arc<PoolLimits>,
}

struct PoolLimits {
    pool_size: usize,
    connect_timeout: Duration,
    wait_timeout: Duration,
    response_timeout: Duration,
}

impl RedisPool {
    fn build(params: &RedisParams) -> Result<Self, String> {
        let nodes = params.nodes();
        if nodes.is_empty() {
            return Err("node: at least one redis URL is required".into());
        }
        if params.pool_size == 0 {
            return Err("pool_size must be at least 1".into());
        }
        let client = if params.is_cluster() {
            let mut builder = ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(params.connect_timeout)
                .response_timeout(params.response_timeout);
            if let Some(username) = &params.username {
                builder = builder.username(username);
            }
            if let Some(password) = &params.password {
                builder = builder.password(password);
            }
            if params.read_from_replicas {
                builder = builder
                    .read_routing_strategy(::redis::cluster_read_routing::RandomReplicaStrategy);
            }
            RedisClient::Cluster(Box::new(builder.build().map_err(|err| error_chain(&err))?))
        } else {
            RedisClient::Single(single_client(&nodes[0], params)?)
        };
        let manager = ClientManager {
            client,
            connect_timeout: params.connect_timeout,
            response_timeout: params.response_timeout,
        };
        let pool = Pool::builder(manager)
            .max_size(params.pool_size)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(params.wait_timeout))
            .create_timeout(Some(params.connect_timeout))
            .recycle_timeout(Some(params.recycle_timeout))
            .build()
            .map_err(|err| err.to_string())?;
        let shown: Vec<String> = nodes.iter().map(|node| display_node(node)).collect();
        Ok(RedisPool {
            pool,
            nodes: shown.join(", ").into(),
            masker: Masker(Arc::new(params.secrets())),
            params: Arc::new(PoolLimits {
                pool_size: params.pool_size,
                connect_timeout: params.connect_timeout,
                wait_timeout: params.wait_timeout,
                response_timeout: params.response_timeout,
            }),
        })
    }

    /// A pool for `params`, built the way `redis.open` builds one (no
    /// connection is made until the first query). The error is masked.
    pub fn open(params: &RedisParams) -> Result<Self, String> {
        Self::build(params).map_err(|err| Masker(Arc::new(params.secrets())).mask(&err))
    }

    /// The nodes, passwords masked, for messages.
    pub fn nodes(&self) -> &str {
        &self.nodes
    }

    /// Send `cmd` on a pooled connection; the error text is masked.
    pub async fn query(&self, cmd: &Cmd) -> Result<::redis::Value, String> {
        let limits = &self.params;
        let mut conn = self.pool.get().await.map_err(|err| match err {
            PoolError::Timeout(TimeoutType::Wait) => format!(
                "no connection to {} became free within {:?} (pool_size {})",
                self.nodes, limits.wait_timeout, limits.pool_size
            ),
            PoolError::Timeout(_) => format!(
                "connecting to {} took longer than {:?}",
                self.nodes, limits.connect_timeout
            ),
            PoolError::Backend(err) => {
                format!("connecting to {}: {}", self.nodes, redis_error_text(&err))
            }
            other => format!("connecting to {}: {other}", self.nodes),
        });
        let conn = match &mut conn {
            Ok(conn) => conn,
            Err(err) => return Err(self.masker.mask(err)),
        };
        match tokio::time::timeout(limits.response_timeout, conn.send(cmd)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if !err.is_timeout() => Err(self.masker.mask(&redis_error_text(&err))),
            // redis-rs enforces the same bound on the connection itself.
            Ok(Err(_)) | Err(_) => Err(format!(
                "{} did not reply within {:?}",
                self.nodes, limits.response_timeout
            )),
        }
    }
}

/// An error as redis-cli shows a server's (`WRONGTYPE Operation against
/// ...`), or the whole cause chain for the client's own errors.
fn redis_error_text(err: &RedisError) -> String {
    match (err.code(), err.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => error_chain(err),
    }
}

/// A single-node client; `username`/`password` fill in what the URL lacks.
fn single_client(node: &str, params: &RedisParams) -> Result<Client, String> {
    let shown = display_node(node);
    let info = node
        .into_connection_info()
        .map_err(|err| format!("node {shown}: {}", error_chain(&err)))?;
    let mut settings = info.redis_settings().clone();
    if let (Some(username), None) = (&params.username, settings.username()) {
        settings = settings.set_username(username);
    }
    if let (Some(password), None) = (&params.password, settings.password()) {
        settings = settings.set_password(password);
    }
    Client::open(info.set_redis_settings(settings))
        .map_err(|err| format!("node {shown}: {}", error_chain(&err)))
}

/// Every pool of the process, by (digested) parameters.
#[derive(Default)]
pub(crate) struct RedisPools {
    pools: Mutex<HashMap<CacheKey, (u64, RedisPool)>>,
    opened: std::sync::atomic::AtomicU64,
    digest: KeyDigest,
}

impl RedisPools {
    fn get_or_build(&self, params: &RedisParams) -> Result<RedisPool, String> {
        let key = params.key(&self.digest);
        let mut pools = self.pools.lock();
        if let Some((_, pool)) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let pool = RedisPool::build(params)?;
        if pools.len() >= MAX_POOLS {
            let oldest = pools.iter().min_by_key(|(_, (n, _))| *n).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                pools.remove(&oldest);
            }
        }
        let serial = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pools.insert(key, (serial, pool.clone()));
        Ok(pool)
    }
}

impl UserData for RedisPool {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("query", |lua, this, args: MultiValue| {
            // A handle of its own, so that the userdata is not borrowed
            // while the query waits (other coroutines may use it too).
            let this = this.clone();
            async move { this.query_lua(&lua, args).await }
        });
    }
}

impl RedisPool {
    async fn query_lua(&self, lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
        require_runtime("redis: query")?;
        let cmd = command_from_lua(args).map_err(|err| lua_err("redis: query", err))?;
        let reply = self
            .query(&cmd)
            .await
            .map_err(|err| lua_err("redis: query", err))?;
        reply_to_lua(lua, reply).map_err(|err| match err {
            ReplyError::Server(message) => lua_err("redis: query", self.masker.mask(&message)),
            ReplyError::Lua(err) => err,
        })
    }
}

/// Install `require 'redis'`.
pub(crate) fn register(lua: &Lua, pools: &Arc<RedisPools>) -> mlua::Result<()> {
    let pools = pools.clone();
    let open = lua.create_function(move |lua, params: Value| {
        let params =
            RedisParams::from_lua(lua, params).map_err(|err| lua_err("redis: open", err))?;
        let masker = Masker(Arc::new(params.secrets()));
        pools
            .get_or_build(&params)
            .map_err(|err| lua_err("redis: open", masker.mask(&err)))
    })?;
    get_or_create_module(lua, "redis")?.set("open", open)
}
