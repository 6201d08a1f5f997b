//! MX resolution for queues without `mx_list`: the domain's MX records by
//! preference (an implicit MX on the domain itself when it has none), as
//! host names for the connection code (which adds the path's `smtp_port`);
//! a null MX or a name that does not exist is final. The resolver is the
//! system's, or the name servers given to `kumo.dns.configure_resolver`.

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use serde::Deserialize;
use std::net::SocketAddr;

/// `kumo.dns.configure_resolver { name_servers = { 'ip:port', ... } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverParams {
    /// Name servers to ask (UDP then TCP) instead of the system's.
    pub name_servers: Vec<SocketAddr>,
}

/// Build the resolver: `params`' name servers, else the system config.
pub fn resolver(params: Option<&ResolverParams>) -> anyhow::Result<TokioResolver> {
    let provider = TokioConnectionProvider::default();
    let builder = match params {
        Some(params) => {
            anyhow::ensure!(!params.name_servers.is_empty(), "name_servers is empty");
            let mut group = NameServerConfigGroup::new();
            for server in &params.name_servers {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[server.ip()],
                    server.port(),
                    true,
                ));
            }
            let config = ResolverConfig::from_parts(None, vec![], group);
            TokioResolver::builder_with_config(config, provider)
        }
        None => TokioResolver::builder(provider)
            .map_err(|err| anyhow::anyhow!("reading the system resolver config: {err}"))?,
    };
    Ok(builder.build())
}

/// What the DNS says about where `domain`'s mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Hosts to try, best preference first (the domain itself when it has
    /// no MX records, RFC 5321 5.1).
    Hosts(Vec<String>),
    /// The MX is `.` (RFC 7505): the domain accepts no mail.
    NullMx,
    /// The name does not exist (NXDOMAIN): no retry can change that.
    NoSuchDomain,
}

/// Look up `domain`'s MX records. `Err` holds a text for a transient
/// failure (timeouts, SERVFAIL, unreachable name servers).
pub async fn lookup(resolver: &TokioResolver, domain: &str) -> Result<MxAnswer, String> {
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(found) => {
            let mut records: Vec<(u16, String)> = found
                .iter()
                .map(|mx| {
                    let host = mx.exchange().to_utf8();
                    (mx.preference(), host.trim_end_matches('.').to_owned())
                })
                .collect();
            records.sort();
            let hosts: Vec<String> = records
                .into_iter()
                .filter(|(_, host)| !host.is_empty())
                .map(|(_, host)| host)
                .collect();
            Ok(if hosts.is_empty() {
                MxAnswer::NullMx
            } else {
                MxAnswer::Hosts(hosts)
            })
        }
        Err(err) if err.is_nx_domain() => Ok(MxAnswer::NoSuchDomain),
        // The name exists without MX records: the domain itself.
        Err(err) if err.is_no_records_found() => Ok(MxAnswer::Hosts(vec![domain.to_owned()])),
        Err(err) => Err(format!("MX lookup for {domain} failed: {err}")),
    }
}
