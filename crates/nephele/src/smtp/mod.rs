//! SMTP delivery: pick an egress source (pool, source and path from the
//! policy, evaluated for every connection so a config epoch bump applies to
//! the next one), connect directly or through a SOCKS5 proxy, and run one
//! transaction, keeping the connection for the next message to the same
//! site ([`pool`]). Proxy failures and destination failures get distinct
//! response texts so the log records tell them apart; sources whose proxy
//! is down are skipped for a while ([`health`]).

pub mod client;
pub mod egress;
mod health;
pub mod mx;
mod pool;
mod proxy;
mod session;

use crate::delivery::Outcome;
use crate::logs::Response;
use crate::queue_config::QueueConfig;
use egress::{
    EgressPath, EgressSource, GET_EGRESS_PATH_CONFIG, GET_EGRESS_POOL, GET_EGRESS_SOURCE,
};
use message::Message;
use mx::MxAnswer;
use policy::PolicyPool;
use pool::{ConnectionPool, IdleConnection, PoolKey};
use session::{Failure, Sent, Session};
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

/// Where an attempt went, for the log record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via {
    /// The destination `ip:port` of the last connection tried.
    pub peer_address: Option<String>,
    /// The egress source's name.
    pub egress_source: Option<String>,
}

/// What SMTP delivery needs from the daemon.
pub struct SmtpDeliverer {
    policy: PolicyPool,
    tls: tls::TlsConnector,
    hostname: String,
    pool: ConnectionPool,
    resolver: hickory_resolver::TokioResolver,
    health: std::sync::Arc<health::SourceHealth>,
}

impl SmtpDeliverer {
    /// A deliverer asking `policy` for egress configuration and resolving
    /// MX records with `dns` (else the system's resolver); egress source
    /// health goes to `metrics`.
    pub fn new(
        policy: PolicyPool,
        dns: Option<&mx::ResolverParams>,
        metrics: std::sync::Arc<crate::metrics::NepheleMetrics>,
    ) -> anyhow::Result<Self> {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Ok(SmtpDeliverer {
            policy,
            // Opportunistic TLS cannot verify (as KumoMTA's default).
            tls: tls::connector(tls::ClientTrust::AcceptAny)?,
            hostname,
            pool: ConnectionPool::start(),
            resolver: mx::resolver(dns)?,
            health: health::SourceHealth::start(metrics),
        })
    }

    /// One delivery attempt of `message` to `hosts` (`host[:port]`).
    pub async fn deliver(
        &self,
        config: &QueueConfig,
        domain: &str,
        hosts: &[String],
        message: &Message,
    ) -> (Outcome, Via) {
        let mut via = Via::default();
        let outcome = self
            .attempt(config, domain, hosts, message, &mut via)
            .await
            .unwrap_or_else(|failed_early| failed_early);
        (outcome, via)
    }

    /// Egress source, destination hosts, egress path; then a pooled
    /// connection to the same site, else a new one. `Err` is an outcome
    /// reached before any connection was tried.
    async fn attempt(
        &self,
        config: &QueueConfig,
        domain: &str,
        hosts: &[String],
        message: &Message,
        via: &mut Via,
    ) -> Result<Outcome, Outcome> {
        let epoch = self.policy.epoch();
        let source = self
            .egress_source(config)
            .await
            .map_err(|text| transient((4, 3, 0), text))?;
        via.egress_source = Some(source.name.clone());
        let hosts = self.destination_hosts(domain, hosts).await?;
        let site = hosts.join(",");
        let path = self.egress_path(domain, &source, &site).await?;
        let key = PoolKey {
            epoch,
            source: source.name.clone(),
            site: site.clone(),
        };
        let ehlo_name = source.ehlo_domain.as_deref().unwrap_or(&self.hostname);
        let session = |addr| Session {
            source: &source,
            path: &path,
            tls: &self.tls,
            ehlo_name,
            host: hosts_host(&hosts, addr),
            health: &self.health,
        };
        while let Some(idle) = self.pool.take(&key) {
            via.peer_address = Some(idle.peer.to_string());
            if let Some(outcome) = self.send(&session(idle.peer), idle, &key, message).await {
                return Ok(outcome);
            }
        }
        let allowed = allowed_addresses(&self.resolver, &hosts, &path, &site).await?;
        Ok(self
            .send_over_new_connection(&allowed, session, &key, message, via)
            .await)
    }

    /// The configured `hosts`, else the domain's MX hosts; a null MX or a
    /// domain that does not exist bounces.
    async fn destination_hosts<'h>(
        &self,
        domain: &str,
        hosts: &'h [String],
    ) -> Result<Cow<'h, [String]>, Outcome> {
        if !hosts.is_empty() {
            return Ok(Cow::Borrowed(hosts));
        }
        match mx::lookup(&self.resolver, domain).await {
            Ok(MxAnswer::Hosts(found)) => Ok(Cow::Owned(found)),
            Ok(MxAnswer::NullMx) => Err(Outcome::Permanent(Response::new(
                556,
                (5, 1, 10),
                format!("{domain} accepts no mail (null MX)"),
            ))),
            Ok(MxAnswer::NoSuchDomain) => Err(Outcome::Permanent(Response::new(
                550,
                (5, 1, 2),
                format!("{domain} does not exist (NXDOMAIN)"),
            ))),
            Err(text) => Err(transient((4, 4, 4), text)),
        }
    }

    /// `get_egress_path_config(domain, source, site)`, or the defaults.
    async fn egress_path(
        &self,
        domain: &str,
        source: &EgressSource,
        site: &str,
    ) -> Result<EgressPath, Outcome> {
        let args = (domain.to_owned(), source.name.clone(), site.to_owned());
        match self.policy.call(&GET_EGRESS_PATH_CONFIG, args).await {
            Ok(Some(Some(path))) => Ok(path.0),
            Ok(_) => Ok(EgressPath::default()),
            Err(err) => {
                let text = crate::policy_error_text(&err);
                Err(transient(
                    (4, 3, 0),
                    format!("get_egress_path_config failed: {text}"),
                ))
            }
        }
    }

    /// Try each address in turn until one connects and its transaction
    /// ends; a connection-level failure moves on to the next address.
    async fn send_over_new_connection<'s>(
        &self,
        addresses: &[SocketAddr],
        session: impl Fn(SocketAddr) -> Session<'s>,
        key: &PoolKey,
        message: &Message,
        via: &mut Via,
    ) -> Outcome {
        let mut last = None;
        for &addr in addresses {
            via.peer_address = Some(addr.to_string());
            let session = session(addr);
            match session.open(addr).await {
                Err(Failure::Connect(response)) => {
                    last = Some(response);
                    // A proxy found unhealthy fails every address alike.
                    let source = &session.source.name;
                    if self.health.suspended_for(source, Instant::now()).is_some() {
                        break;
                    }
                }
                Err(Failure::Transaction(outcome)) => return outcome,
                Ok(conn) => {
                    let idle = IdleConnection {
                        conn,
                        peer: addr,
                        deliveries: 0,
                        expires: Instant::now(),
                    };
                    let outcome = self.send(&session, idle, key, message).await;
                    return outcome.unwrap_or_else(|| {
                        transient((4, 4, 2), format!("{addr} closed the new connection"))
                    });
                }
            }
        }
        let response = last.expect("at least one address was tried");
        Outcome::Transient(response)
    }

    /// Send over `idle`, keeping it in the pool when it may carry more;
    /// `None` when it turned out dead before anything was sent.
    async fn send(
        &self,
        session: &Session<'_>,
        mut idle: IdleConnection,
        key: &PoolKey,
        message: &Message,
    ) -> Option<Outcome> {
        let (outcome, reusable) = match session.send(&mut idle.conn, idle.peer, message).await {
            Sent::Stale => return None,
            Sent::Delivered(response) => (Outcome::Delivered(response), true),
            Sent::Failed { failure, reusable } => match failure {
                Failure::Connect(response) => (Outcome::Transient(response), reusable),
                Failure::Transaction(outcome) => (outcome, reusable),
            },
        };
        idle.deliveries += 1;
        if reusable && idle.deliveries < session.path.max_deliveries_per_connection {
            let now = Instant::now();
            idle.expires = now.checked_add(session.path.idle_timeout).unwrap_or(now);
            self.pool.put(key.clone(), idle);
        } else {
            idle.conn.quit().await;
        }
        Some(outcome)
    }

    async fn egress_source(&self, config: &QueueConfig) -> Result<EgressSource, String> {
        let Some(pool_name) = &config.egress_pool else {
            return Ok(EgressSource::unspecified());
        };
        let pool = match self.policy.call(&GET_EGRESS_POOL, pool_name.clone()).await {
            Ok(Some(Some(pool))) => pool.0,
            Ok(_) => return Err(format!("get_egress_pool({pool_name:?}) returned nothing")),
            Err(err) => {
                let text = crate::policy_error_text(&err);
                return Err(format!("get_egress_pool failed: {text}"));
            }
        };
        let entry = self.pick_source(&pool, pool_name)?;
        match self
            .policy
            .call(&GET_EGRESS_SOURCE, entry.name.clone())
            .await
        {
            Ok(Some(Some(source))) => Ok(source.0),
            Ok(_) => Err(format!(
                "get_egress_source({:?}) returned nothing",
                entry.name
            )),
            Err(err) => {
                let text = crate::policy_error_text(&err);
                Err(format!("get_egress_source failed: {text}"))
            }
        }
    }
}

impl SmtpDeliverer {
    /// A weighted random entry of `pool` among the sources not suspended.
    fn pick_source<'p>(
        &self,
        pool: &'p egress::EgressPool,
        pool_name: &str,
    ) -> Result<&'p egress::EgressPoolEntry, String> {
        let roll = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let now = Instant::now();
        let usable = |name: &str| self.health.suspended_for(name, now).is_none();
        pool.pick(roll, usable).ok_or_else(|| {
            let wait = pool
                .entries
                .iter()
                .filter_map(|e| self.health.suspended_for(&e.name, now))
                .min();
            match wait {
                Some(wait) => format!(
                    "every source of egress pool {pool_name:?} is suspended \
                     (proxy unhealthy) for at least {}s more",
                    wait.as_secs()
                ),
                None => format!("egress pool {pool_name:?} has no usable entry"),
            }
        })
    }
}

fn transient(enhanced: (u8, u16, u16), text: impl Into<String>) -> Outcome {
    Outcome::Transient(Response::new(451, enhanced, text))
}

/// The host name of the entry `addr` came from (for TLS SNI), else its IP.
fn hosts_host(hosts: &[String], addr: SocketAddr) -> String {
    for host in hosts {
        let (name, _) = split_host_port(host, 25);
        if name.parse::<std::net::IpAddr>().is_err() {
            return name.to_owned();
        }
    }
    addr.ip().to_string()
}

/// `host:port`, `[v6]:port`, `v6` or `host` (`default_port`).
fn split_host_port(entry: &str, default_port: u16) -> (&str, u16) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            return (host, port.parse().unwrap_or(default_port));
        }
        return (rest.trim_end_matches(']'), default_port);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().unwrap_or(default_port)),
        _ => (entry, default_port),
    }
}

/// The addresses of `hosts`, in order (names through `resolver`).
async fn resolve(
    resolver: &hickory_resolver::TokioResolver,
    hosts: &[String],
    default_port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let mut addresses = Vec::new();
    let mut errors = Vec::new();
    for entry in hosts {
        let (host, port) = split_host_port(entry, default_port);
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            addresses.push(SocketAddr::new(ip, port));
            continue;
        }
        match resolver
            .lookup_ip(format!("{}.", host.trim_end_matches('.')))
            .await
        {
            Ok(found) => addresses.extend(found.iter().map(|ip| SocketAddr::new(ip, port))),
            Err(err) => errors.push(format!("{entry}: {err}")),
        }
    }
    if addresses.is_empty() {
        return Err(format!(
            "resolving {}: {}",
            hosts.join(","),
            errors.join("; ")
        ));
    }
    Ok(addresses)
}

/// The addresses of `hosts` outside the path's `prohibited_hosts`; none
/// left bounces.
async fn allowed_addresses(
    resolver: &hickory_resolver::TokioResolver,
    hosts: &[String],
    path: &EgressPath,
    site: &str,
) -> Result<Vec<SocketAddr>, Outcome> {
    let addresses = resolve(resolver, hosts, path.smtp_port)
        .await
        .map_err(|text| transient((4, 4, 4), text))?;
    let allowed: Vec<SocketAddr> = addresses
        .iter()
        .copied()
        .filter(|addr| !path.is_prohibited(addr.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(Outcome::Permanent(Response::new(
            550,
            (5, 4, 4),
            format!("every destination of {site} is in prohibited_hosts: {addresses:?}"),
        )));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("127.0.0.1:2525", 25), ("127.0.0.1", 2525));
        assert_eq!(split_host_port("mx.example", 587), ("mx.example", 587));
        assert_eq!(split_host_port("[::1]:26", 25), ("::1", 26));
        assert_eq!(split_host_port("::1", 25), ("::1", 25));
    }
}
