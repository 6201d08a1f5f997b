//! Fleet state in Redis (`proxy.configure_shared_state { redis = {...} }`):
//! the login failure limiter and each identity's session and connect-rate
//! counts, shared by every proxy-server using the same Redis. Every
//! operation is one atomic script (or one command) bounded by `timeout`;
//! time is Redis's own clock (`TIME`), so the nodes' clocks do not matter.
//!
//! Sessions are leases: a member of the identity's sorted set scored by its
//! expiry, renewed while the tunnel lives, so a crashed node's sessions
//! stop counting one lease after its last renewal.
//!
//! When Redis fails, each caller falls back to this proxy's own counts for
//! `retry_after` (no Redis call meanwhile, so logins do not each wait for a
//! timeout); the fallback is counted and logged at most once per interval.

use crate::fleet_scripts as scripts;
use aaa::ClientKey;
use parking_lot::Mutex;
use policy_lib::{RedisParams, RedisPool};
use prometheus_client::metrics::counter::Counter;
use redis::Value;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// `proxy.configure_shared_state { ... }`.
pub struct SharedStateParams {
    /// The same table as `redis.open { ... }` (a list of nodes is a cluster).
    pub redis: RedisParams,
    /// Everything else.
    pub options: SharedStateOptions,
}

/// The keys of `configure_shared_state` besides `redis`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedStateOptions {
    /// Parsed apart by [`RedisParams::from_lua`], which masks passwords.
    #[allow(dead_code)]
    redis: serde::de::IgnoredAny,
    /// Prepended to every key. The default's `{...}` is a cluster hash tag:
    /// all keys live in one slot, as the scripts touch several at once.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How long a session counts after its proxy last renewed it (renewed
    /// every third of it).
    #[serde(
        default = "default_lease",
        deserialize_with = "policy::deserialize_duration"
    )]
    pub session_lease: Duration,
    /// Bound on each shared-state operation (on top of the redis timeouts).
    #[serde(
        default = "default_timeout",
        deserialize_with = "policy::deserialize_duration"
    )]
    pub timeout: Duration,
    /// After a failure, how long local counts are used before Redis is
    /// tried again.
    #[serde(
        default = "default_retry_after",
        deserialize_with = "policy::deserialize_duration"
    )]
    pub retry_after: Duration,
}

impl SharedStateParams {
    /// Parse the Lua table; errors name the key and never a password.
    pub fn from_lua(lua: &mlua::Lua, value: mlua::Value) -> Result<Self, String> {
        let mlua::Value::Table(table) = &value else {
            return Err(format!("expected a table, got {}", value.type_name()));
        };
        let redis = match table.raw_get::<mlua::Value>("redis") {
            Ok(mlua::Value::Nil) | Err(_) => {
                return Err("redis: a redis.open table is required".into())
            }
            Ok(redis) => redis,
        };
        let options: SharedStateOptions =
            policy::from_lua_params(lua, value.clone()).map_err(|err| err.to_string())?;
        let redis = RedisParams::from_lua(lua, redis).map_err(|err| format!("redis: {err}"))?;
        Ok(SharedStateParams { redis, options })
    }
}

fn default_prefix() -> String {
    "{nephele-proxy}:".into()
}
fn default_lease() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_after() -> Duration {
    Duration::from_secs(5)
}

impl SharedStateParams {
    /// Checks serde cannot express, then the pool (no connection yet).
    pub fn open(self) -> Result<Fleet, String> {
        let options = self.options;
        if options.session_lease < Duration::from_millis(300) {
            return Err("session_lease must be at least 300ms".into());
        }
        if options.timeout.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        let redis = RedisPool::open(&self.redis).map_err(|err| format!("redis: {err}"))?;
        let mut node = [0u8; 8];
        getrandom::fill(&mut node).map_err(|err| format!("no random node id: {err}"))?;
        Ok(Fleet {
            redis,
            prefix: options.key_prefix,
            node: data_encoding::HEXLOWER.encode(&node),
            lease: options.session_lease,
            timeout: options.timeout,
            retry_after: options.retry_after,
            down_until: Mutex::new(None),
            log: daemon::LogThrottle::new(Duration::from_secs(10)),
            fallbacks: Counter::default(),
            leases: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(0),
        })
    }
}

/// A session's lease in Redis; released when the tunnel ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    identity: String,
    member: String,
}

/// The fleet's shared state, reached through one Redis pool.
pub struct Fleet {
    redis: RedisPool,
    prefix: String,
    /// Random per process: lease members and failure entries are unique.
    node: String,
    lease: Duration,
    timeout: Duration,
    retry_after: Duration,
    /// Set after a failure: local counts until then.
    down_until: Mutex<Option<Instant>>,
    log: daemon::LogThrottle,
    fallbacks: Counter,
    /// Live leases by identity, renewed together.
    leases: Mutex<HashMap<String, HashSet<String>>>,
    serial: AtomicU64,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("redis", &self.redis.nodes())
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Why an operation fell back (for the log; never holds a password).
type Unavailable = String;

impl Fleet {
    /// Count fallbacks in `counter` (a registered metric) from now on.
    pub fn count_fallbacks_in(mut self, counter: Counter) -> Self {
        self.fallbacks = counter;
        self
    }

    /// The session lease length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    fn unique(&self) -> String {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        format!("{}-{serial}", self.node)
    }

    /// Run `op` unless Redis is known down; `None` means "use local counts".
    async fn run<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = Result<T, Unavailable>>,
    ) -> Option<T> {
        if self
            .down_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
        {
            self.fallbacks.inc();
            return None;
        }
        let outcome = match tokio::time::timeout(self.timeout, op).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match outcome {
            Ok(value) => {
                if self.down_until.lock().take().is_some() {
                    info!(redis = %self.redis.nodes(), "shared state reachable again");
                }
                Some(value)
            }
            Err(err) => {
                *self.down_until.lock() = Instant::now().checked_add(self.retry_after);
                self.fallbacks.inc();
                if let Some(held_back) = self.log.allow() {
                    warn!(redis = %self.redis.nodes(), operation = what, error = %err, held_back,
                        "shared state unavailable: using this proxy's own counts");
                }
                None
            }
        }
    }

    async fn eval(
        &self,
        script: &str,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, Unavailable> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        self.query(&cmd).await
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, Unavailable> {
        match self.redis.query(cmd).await? {
            Value::ServerError(err) => Err(format!("{err:?}")),
            value => Ok(value),
        }
    }

    /// How long `ip` stays blocked fleet-wide (`Some(None)`: not blocked).
    pub async fn login_blocked(&self, ip: std::net::IpAddr) -> Option<Option<Duration>> {
        let key = self.key("block", &ClientKey::from(ip).to_string());
        self.run("check block", async {
            let ttl = integer(self.query(redis::cmd("PTTL").arg(&key)).await?)?;
            Ok((ttl > 0).then(|| Duration::from_millis(ttl as u64)))
        })
        .await
    }

    /// Count a failed login of `ip`; `Some(true)` when it blocks the client.
    pub async fn record_failure(
        &self,
        ip: std::net::IpAddr,
        limit: &aaa::FailureThresholds,
    ) -> Option<bool> {
        let client = ClientKey::from(ip).to_string();
        let keys = [
            self.key("fail", &client),
            self.key("block", &client),
            self.key("blocked", "index"),
        ];
        let args = [
            limit.max_failures.to_string(),
            limit.period.as_millis().max(1).to_string(),
            limit.block_for.as_millis().max(1).to_string(),
            client,
            self.unique(),
        ];
        self.run("record failure", async {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            Ok(integer(self.eval(scripts::RECORD_FAILURE, &keys, &args).await?)? == 1)
        })
        .await
    }

    /// Lift the fleet-wide block of `ip`'s client; `Some(true)` if it was blocked.
    pub async fn unblock(&self, ip: std::net::IpAddr) -> Option<bool> {
        let client = ClientKey::from(ip).to_string();
        let keys = [
            self.key("block", &client),
            self.key("blocked", "index"),
            self.key("fail", &client),
        ];
        self.run("unblock", async {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            Ok(integer(
                self.eval(scripts::UNBLOCK, &keys, std::slice::from_ref(&client))
                    .await?,
            )? > 0)
        })
        .await
    }

    /// The clients blocked fleet-wide and how long each stays blocked.
    pub async fn blocked(&self) -> Option<Vec<(String, Duration)>> {
        let index = self.key("blocked", "index");
        self.run("list blocks", async {
            let reply = self.eval(scripts::LIST_BLOCKED, &[&index], &[]).await?;
            let pairs: Vec<(String, i64)> =
                redis::from_redis_value(reply).map_err(|err| err.to_string())?;
            Ok(pairs
                .into_iter()
                .map(|(client, ms)| (client, Duration::from_millis(ms.max(0) as u64)))
                .collect())
        })
        .await
    }

    /// Take one of `identity`'s `max` session slots fleet-wide:
    /// `Some(Some(lease))`, `Some(None)` when all are taken.
    pub async fn acquire_session(&self, identity: &str, max: u32) -> Option<Option<Lease>> {
        let key = self.key("sessions", identity);
        let member = self.unique();
        let args = [
            member.clone(),
            max.to_string(),
            self.lease.as_millis().to_string(),
        ];
        let granted = self
            .run("acquire session", async {
                Ok(integer(self.eval(scripts::ACQUIRE_SESSION, &[&key], &args).await?)? == 1)
            })
            .await?;
        if !granted {
            return Some(None);
        }
        let mut leases = self.leases.lock();
        leases
            .entry(identity.to_owned())
            .or_default()
            .insert(member.clone());
        Some(Some(Lease {
            identity: identity.to_owned(),
            member,
        }))
    }

    /// Give `lease` back (the tunnel ended). A failure leaves it to expire.
    pub async fn release(&self, lease: Lease) {
        {
            let mut leases = self.leases.lock();
            if let Some(members) = leases.get_mut(&lease.identity) {
                members.remove(&lease.member);
                if members.is_empty() {
                    leases.remove(&lease.identity);
                }
            }
        }
        let key = self.key("sessions", &lease.identity);
        self.run("release session", async {
            self.query(redis::cmd("ZREM").arg(&key).arg(&lease.member))
                .await
        })
        .await;
    }

    /// Whether one more CONNECT of `identity` fits `rate` fleet-wide.
    pub async fn connect_allowed(
        &self,
        identity: &str,
        rate: &crate::identity_limits::ConnectRate,
    ) -> Option<bool> {
        let key = self.key("rate", identity);
        let args = [rate.count.to_string(), rate.period.as_millis().to_string()];
        self.run("connect rate", async {
            Ok(integer(self.eval(scripts::CONNECT_RATE, &[&key], &args).await?)? == 1)
        })
        .await
    }

    /// Renew every live lease of this proxy (one script per identity).
    async fn renew_all(&self) {
        let snapshot: Vec<(String, Vec<String>)> = self
            .leases
            .lock()
            .iter()
            .map(|(identity, members)| (identity.clone(), members.iter().cloned().collect()))
            .collect();
        for (identity, members) in snapshot {
            let key = self.key("sessions", &identity);
            let mut args = vec![self.lease.as_millis().to_string()];
            args.extend(members);
            let renewed = self
                .run(
                    "renew leases",
                    self.eval(scripts::RENEW_SESSIONS, &[&key], &args),
                )
                .await;
            if renewed.is_none() {
                // Redis is down: the rest would fail the same way.
                return;
            }
        }
    }

    /// Renew leases every third of a lease until `shutdown`.
    pub async fn run_renewals(self: Arc<Self>, shutdown: CancellationToken) {
        let period = self.lease / 3;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => self.renew_all().await,
            }
        }
    }
}

fn integer(value: Value) -> Result<i64, Unavailable> {
    redis::from_redis_value(value).map_err(|err| format!("unexpected reply: {err}"))
}
