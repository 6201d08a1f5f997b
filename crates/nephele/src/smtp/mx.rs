//! MX resolution for queues without `mx_list`: the domain's MX records by
//! preference (an implicit MX on the domain itself when it has none), as
//! host names for the connection code (which adds the path's `smtp_port`). The resolver is the
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

/// The MX hosts of `domain`, best preference first. `Err`
/// holds a text for a transient failure; a domain whose MX is `.` (null
/// MX, RFC 7505) is `Ok(vec![])`.
pub async fn lookup(resolver: &TokioResolver, domain: &str) -> Result<Vec<String>, String> {
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
            Ok(records
                .into_iter()
                .filter(|(_, host)| !host.is_empty())
                .map(|(_, host)| host)
                .collect())
        }
        // No MX (or no such name): the domain itself, RFC 5321 5.1.
        Err(err) if err.is_no_records_found() => Ok(vec![domain.to_owned()]),
        Err(err) => Err(format!("MX lookup for {domain} failed: {err}")),
    }
}
