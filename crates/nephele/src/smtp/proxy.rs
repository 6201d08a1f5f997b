//! An egress source's SOCKS5 proxy: where it is (`socks5_proxy_server`, an
//! IP literal or a host name resolved at connect time), whether SOCKS5 runs
//! inside TLS (`socks5_proxy_tls`, verified against a CA), and opening a
//! tunnel through it. Failures say whether they mean the proxy is
//! unhealthy (for `suspend_when_proxy_unhealthy`).

use super::client::{SmtpConnection, SmtpStream};
use policy::KeySource;
use serde::{Deserialize, Deserializer};
use socks5::client::{socks5_handshake, Credentials, HandshakeError};
use socks5::TargetAddr;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// `socks5_proxy_server`: `ip:port`, `[v6]:port` or `host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAddress {
    /// An IP literal or a DNS name.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
}

impl ProxyAddress {
    /// Parse `text`; the port is required.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ProxyAddress {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let bad = |why: &str| format!("{text:?}: {why} (expected \"host:port\" or \"ip:port\")");
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63)
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            return Err(bad("not an IP address or host name"));
        }
        Ok(ProxyAddress {
            host: host.to_owned(),
            port,
        })
    }

    /// Its addresses: the literal, or every address the name resolves to
    /// now (the system resolver, so `/etc/hosts` applies).
    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect())
    }
}

impl std::fmt::Display for ProxyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Debug for ProxyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl<'de> Deserialize<'de> for ProxyAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ProxyAddress::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `socks5_proxy_tls = { ca_certificate = KEYSOURCE, server_name = '...' }`
/// or `{ insecure = true }`: speak SOCKS5 inside TLS to the proxy.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTls {
    /// PEM roots the proxy's certificate must chain to.
    #[serde(default)]
    pub ca_certificate: Option<KeySource>,
    /// The name the certificate must carry; defaults to the host of
    /// `socks5_proxy_server`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Skip certificate verification (tests only).
    #[serde(default)]
    pub insecure: bool,
    /// Built by [`ProxyTls::prepare`].
    #[serde(skip)]
    ready: Option<(tls::TlsConnector, tls::ServerName<'static>)>,
}

impl std::fmt::Debug for ProxyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyTls")
            .field("ca_certificate", &self.ca_certificate)
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl ProxyTls {
    /// Load the CA and build the connector, so a bad setting is an error of
    /// `make_egress_source` naming the key rather than of every delivery.
    pub fn prepare(&mut self, proxy: &ProxyAddress) -> Result<(), String> {
        let trust =
            match (&self.ca_certificate, self.insecure) {
                (Some(_), true) => {
                    return Err(
                        "socks5_proxy_tls: give ca_certificate or insecure = true, not both".into(),
                    )
                }
                (None, false) => return Err(
                    "socks5_proxy_tls.ca_certificate is required (or insecure = true, for tests)"
                        .into(),
                ),
                (None, true) => tls::ClientTrust::AcceptAny,
                (Some(ca), false) => {
                    let pem = ca.load().map_err(|err| {
                        format!("socks5_proxy_tls.ca_certificate ({}): {err}", ca.describe())
                    })?;
                    tls::ClientTrust::Roots(pem)
                }
            };
        let connector = tls::connector(trust).map_err(|err| {
            let ca = self.ca_certificate.as_ref().map(KeySource::describe);
            format!(
                "socks5_proxy_tls.ca_certificate ({}): {err:#}",
                ca.unwrap_or_default()
            )
        })?;
        let name = self.server_name.as_deref().unwrap_or(&proxy.host);
        let name = tls::server_name(name)
            .map_err(|err| format!("socks5_proxy_tls.server_name: {err:#}"))?;
        self.ready = Some((connector, name));
        Ok(())
    }
}

/// Why no tunnel was opened.
#[derive(Debug)]
pub struct ProxyFailure {
    /// The response text (never a password).
    pub text: String,
    /// The proxy is unreachable or refused BIND: counts toward
    /// `suspend_when_proxy_unhealthy`.
    pub unhealthy: bool,
}

impl ProxyFailure {
    fn unhealthy(text: String) -> Self {
        ProxyFailure {
            text,
            unhealthy: true,
        }
    }
    fn other(text: String) -> Self {
        ProxyFailure {
            text,
            unhealthy: false,
        }
    }
}

/// What one tunnel needs.
pub struct Tunnel<'a> {
    /// The proxy.
    pub proxy: &'a ProxyAddress,
    /// TLS to the proxy, prepared.
    pub tls: Option<&'a ProxyTls>,
    /// RFC 1929 login.
    pub credentials: Option<Credentials<'a>>,
    /// Address requested with BIND.
    pub bind: Option<SocketAddr>,
}

impl Tunnel<'_> {
    /// A connection to `dest` through the proxy, or why not, all within
    /// `deadline`.
    pub async fn open(
        &self,
        dest: SocketAddr,
        deadline: Instant,
    ) -> Result<SmtpConnection, ProxyFailure> {
        let proxy = self.proxy;
        let late = || format!("proxy {proxy}: no tunnel to {dest} within connect_timeout");
        let tcp = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| ProxyFailure::unhealthy(late()))??;
        let mut stream: Box<dyn SmtpStream> = match self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let (connector, name) = tls.ready.as_ref().ok_or_else(|| {
                    ProxyFailure::other("socks5_proxy_tls was not prepared".into())
                })?;
                let handshake = connector.connect(name.clone(), tcp);
                let stream = tokio::time::timeout_at(deadline, handshake)
                    .await
                    .map_err(|_| ProxyFailure::other(late()))?
                    .map_err(|err| {
                        ProxyFailure::other(format!("proxy {proxy}: TLS handshake failed: {err}"))
                    })?;
                Box::new(stream)
            }
        };
        let target = TargetAddr::Ip(dest);
        let handshake = socks5_handshake(&mut stream, &target, self.credentials, self.bind);
        let connected = tokio::time::timeout_at(deadline, handshake)
            .await
            .map_err(|_| ProxyFailure::other(late()))?
            .map_err(|err| self.handshake_failure(&err, dest))?;
        Ok(SmtpConnection::new(stream, connected.pending))
    }

    /// TCP to the first of the proxy's addresses that accepts.
    async fn connect(&self) -> Result<TcpStream, ProxyFailure> {
        let proxy = self.proxy;
        let addrs =
            self.proxy.resolve().await.map_err(|err| {
                ProxyFailure::unhealthy(format!("resolving proxy {proxy}: {err}"))
            })?;
        connect_first(&addrs)
            .await
            .map_err(|err| ProxyFailure::unhealthy(format!("connecting to proxy {proxy}: {err}")))
    }

    /// The response text for a failed SOCKS5 handshake: a refused login, a
    /// refused request and an unreachable destination read differently.
    /// A proxy that drops the greeting or refuses BIND is unhealthy.
    fn handshake_failure(&self, err: &HandshakeError, dest: SocketAddr) -> ProxyFailure {
        let proxy = self.proxy;
        let user = self.credentials.map(|c| c.user).unwrap_or("");
        match err {
            HandshakeError::AuthRejected => {
                ProxyFailure::other(format!("proxy {proxy} refused the login for user {user:?}"))
            }
            HandshakeError::Refused { command, code } => {
                let text = format!(
                    "proxy {proxy} refused the {command} request for {dest} (reply code {:02})",
                    code.code()
                );
                if *command == "BIND" {
                    ProxyFailure::unhealthy(text)
                } else {
                    ProxyFailure::other(text)
                }
            }
            HandshakeError::DestinationUnreachable(code) => ProxyFailure::other(format!(
                "destination {dest} refused or unreachable through proxy {proxy} (reply code {:02})",
                code.code()
            )),
            HandshakeError::Io { stage, .. } | HandshakeError::Closed { stage }
                if matches!(*stage, "greeting" | "method selection") =>
            {
                ProxyFailure::unhealthy(format!("proxy {proxy}: {err}"))
            }
            other => ProxyFailure::other(format!("proxy {proxy}: {other}")),
        }
    }
}

/// TCP to the first of `addrs` that accepts; else every address's error.
async fn connect_first(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut errors = Vec::new();
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => errors.push(format!("{addr}: {err}")),
        }
    }
    if errors.is_empty() {
        errors.push("the name has no address".into());
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_address_forms() {
        let parse = |text| ProxyAddress::parse(text).map(|a| a.to_string());
        assert_eq!(parse("127.0.0.1:1080").unwrap(), "127.0.0.1:1080");
        assert_eq!(parse("[::1]:1080").unwrap(), "[::1]:1080");
        assert_eq!(parse("localhost:5000").unwrap(), "localhost:5000");
        assert_eq!(
            parse("proxy.example.com:5000").unwrap(),
            "proxy.example.com:5000"
        );
        for bad in ["localhost", "localhost:99999", ":1080", "a b:1", "x..y:1"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn tls_settings_are_checked() {
        let proxy = ProxyAddress::parse("localhost:1080").unwrap();
        let tls = |json: &str| serde_json::from_str::<ProxyTls>(json);
        let mut insecure = tls(r#"{"insecure":true}"#).unwrap();
        insecure.prepare(&proxy).unwrap();
        let err = tls(r#"{}"#).unwrap().prepare(&proxy).unwrap_err();
        assert!(err.contains("ca_certificate is required"), "{err}");
        let err = tls(r#"{"insecure":true,"ca_certificate":{"key_data":"x"}}"#)
            .unwrap()
            .prepare(&proxy)
            .unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = tls(r#"{"ca_certificate":"/nonexistent/ca.pem"}"#)
            .unwrap()
            .prepare(&proxy)
            .unwrap_err();
        assert!(err.contains("socks5_proxy_tls.ca_certificate"), "{err}");
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let err = tls(r#"{"ca_certificate":{"key_data":"not pem"}}"#)
            .unwrap()
            .prepare(&proxy)
            .unwrap_err();
        assert!(err.contains("socks5_proxy_tls.ca_certificate"), "{err}");
        let err = tls(r#"{"insecure":true,"server_name":"bad name!"}"#)
            .unwrap()
            .prepare(&proxy)
            .unwrap_err();
        assert!(err.contains("socks5_proxy_tls.server_name"), "{err}");
        let err = tls(r#"{"insecure":true,"verify":false}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("verify"), "{err}");
    }

    #[tokio::test]
    async fn every_resolved_address_is_tried() {
        // A port with nothing listening, then a live listener: the tunnel's
        // TCP step moves past the refusal.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = [closed, live.local_addr().unwrap()];
        let stream = connect_first(&addrs).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addrs[1]);
        let err = connect_first(&addrs[..1]).await.unwrap_err();
        assert!(err.contains(&closed.to_string()), "{err}");
    }
}
