//! TLS configuration shared by every listener and client of the project:
//! a rustls server config from a PEM certificate chain and private key
//! (each a path or `{ key_data = ... }`), or a self-signed certificate
//! generated for a hostname; and client configs for speaking TLS to our own
//! listeners (SOCKS5 over TLS, STARTTLS). It knows nothing of sockets or
//! protocols beyond handing out acceptors and connectors.

use aaa::KeySource;
use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::Arc;

pub use rustls::pki_types::ServerName;
pub use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for a listener.
///
/// With both `certificate` and `private_key`, they are loaded and checked
/// against each other; with neither, a self-signed certificate for
/// `hostname` is generated; with only one, it is an error.
pub fn server_config(
    hostname: &str,
    certificate: Option<&KeySource>,
    private_key: Option<&KeySource>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let (chain, key) = match (certificate, private_key) {
        (Some(cert), Some(key)) => load_pair(cert, key)?,
        (None, None) => self_signed(hostname)?,
        (Some(_), None) => {
            bail!("tls_certificate is set but tls_private_key is not; give both or neither")
        }
        (None, Some(_)) => {
            bail!("tls_private_key is set but tls_certificate is not; give both or neither")
        }
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("selecting TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("building the TLS server configuration")?;
    Ok(Arc::new(config))
}

/// An acceptor for [`server_config`].
pub fn acceptor(
    hostname: &str,
    certificate: Option<&KeySource>,
    private_key: Option<&KeySource>,
) -> anyhow::Result<TlsAcceptor> {
    server_config(hostname, certificate, private_key).map(TlsAcceptor::from)
}

/// A listener's TLS keys as the policy gives them (`use_tls`, `hostname`,
/// `tls_certificate`, `tls_private_key`).
pub struct ListenerTlsKeys<'a> {
    /// Whether clients speak TLS first.
    pub use_tls: bool,
    /// CN/SAN of a generated certificate.
    pub hostname: &'a str,
    /// PEM certificate chain, if given.
    pub certificate: Option<&'a KeySource>,
    /// PEM private key, if given.
    pub private_key: Option<&'a KeySource>,
}

impl ListenerTlsKeys<'_> {
    /// The acceptor when `use_tls`, `None` otherwise; certificate keys
    /// without `use_tls` are an error. `listener` names the listener in
    /// every error (e.g. `http listener 127.0.0.1:8000`).
    pub fn acceptor(&self, listener: &str) -> anyhow::Result<Option<TlsAcceptor>> {
        if !self.use_tls {
            if self.certificate.is_some() || self.private_key.is_some() {
                bail!("{listener}: tls_certificate/tls_private_key are set but use_tls is false");
            }
            return Ok(None);
        }
        acceptor(self.hostname, self.certificate, self.private_key)
            .map(Some)
            .map_err(|err| err.context(listener.to_owned()))
    }
}

type CertAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_pair(cert_source: &KeySource, key_source: &KeySource) -> anyhow::Result<CertAndKey> {
    let cert_pem = cert_source
        .load()
        .with_context(|| format!("reading tls_certificate {}", cert_source.describe()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            anyhow::anyhow!(
                "tls_certificate {} is not valid PEM: {err}",
                cert_source.describe()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "tls_certificate {} holds no PEM certificate",
            cert_source.describe()
        );
    }
    let key_pem = key_source
        .load()
        .with_context(|| format!("reading tls_private_key {}", key_source.describe()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
        anyhow::anyhow!(
            "tls_private_key {} holds no usable PEM private key: {err}",
            key_source.describe()
        )
    })?;
    let mismatch = || {
        format!(
            "tls_private_key {} does not match tls_certificate {}",
            key_source.describe(),
            cert_source.describe()
        )
    };
    let certified = CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())
        .with_context(mismatch)?;
    certified.keys_match().with_context(mismatch)?;
    Ok((chain, key))
}

fn self_signed(hostname: &str) -> anyhow::Result<CertAndKey> {
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_owned()])
        .with_context(|| format!("generating a self-signed certificate for {hostname}"))?;
    let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der())
        .map_err(|err| anyhow::anyhow!("encoding the generated key: {err}"))?;
    Ok((vec![generated.cert.der().clone()], key))
}

/// Which server certificates a client accepts.
pub enum ClientTrust {
    /// Only certificates issued by these PEM roots (or that are them).
    Roots(Vec<u8>),
    /// Any certificate, without checking the chain or the name. For
    /// opportunistic TLS and for our own self-signed listeners in tests and
    /// benchmarks; handshake signatures are still verified.
    AcceptAny,
}

/// A client configuration.
pub fn client_config(trust: ClientTrust) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("selecting TLS protocol versions")?;
    let config = match trust {
        ClientTrust::Roots(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.map_err(|err| anyhow::anyhow!("invalid root PEM: {err}"))?)
                    .context("adding a root certificate")?;
            }
            if roots.is_empty() {
                bail!("no PEM certificate among the roots");
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ClientTrust::AcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A connector for [`client_config`].
pub fn connector(trust: ClientTrust) -> anyhow::Result<TlsConnector> {
    client_config(trust).map(TlsConnector::from)
}

/// The server name to present for `host` (a DNS name or an IP literal).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|err| anyhow::anyhow!("invalid TLS server name {host:?}: {err}"))
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
