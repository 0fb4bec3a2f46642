//! TLS settings: the flags, and the rustls configurations they load, for the listener (every
//! client connection) and for the link to an upstream broker.
//!
//! rustls with the ring provider, named explicitly rather than taken from the process default,
//! so that no other crate in the build can change it (and aws-lc, which needs cmake and a C
//! toolchain, is never built). The certificate files are read once, at start: a missing or
//! unreadable file stops the broker before it listens, rather than failing every handshake.
//!
//! The protocol inside TLS is the same newline-delimited JSON; the bytes are encrypted in the
//! connection's own task (`transport`), never written through from a publisher's thread.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The TLS flags of one broker. With none given, nothing is TLS.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsConfig {
    /// Serve every client connection over TLS with this certificate chain (PEM, leaf first);
    /// needs --tls-key. Clients that do not speak TLS are refused.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Require every client to present a certificate signed by a CA in this file (PEM);
    /// needs --tls-cert. A client without one fails the handshake.
    #[arg(long, value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,

    /// Link to --upstream over TLS, trusting the CA certificates in this file (PEM) for the
    /// upstream's certificate.
    #[arg(long, value_name = "PATH")]
    pub upstream_tls_ca: Option<PathBuf>,

    /// The name the upstream's certificate must carry [default: the IP address of --upstream,
    /// which its certificate must then list as an IP subject alternative name].
    #[arg(long, value_name = "NAME")]
    pub upstream_tls_name: Option<String>,

    /// A client certificate for the link to present (PEM), for an upstream that requires one
    /// (--tls-client-ca); needs --upstream-tls-key and --upstream-tls-ca.
    #[arg(long, value_name = "PATH")]
    pub upstream_tls_cert: Option<PathBuf>,

    /// The private key of --upstream-tls-cert (PEM).
    #[arg(long, value_name = "PATH")]
    pub upstream_tls_key: Option<PathBuf>,
}

/// Why the TLS settings could not be loaded.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{flag} needs {needs}")]
    Needs {
        flag: &'static str,
        needs: &'static str,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} holds no private key", .0.display())]
    NoKey(PathBuf),
    #[error("{} is refused: {source}", path.display())]
    Refused {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the client CA in {}: {source}", path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("--upstream-tls-name {name:?} is not a DNS name or an IP address")]
    BadName { name: String },
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The link's TLS: how to connect, and the name the upstream's certificate must carry.
#[derive(Clone)]
pub struct LinkTls {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls").field("name", &self.name).finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The first flag given without one it needs, as an error: `(given, flag, present, needs)`.
fn check(pairs: &[(bool, &'static str, bool, &'static str)]) -> Result<(), TlsError> {
    let missing = pairs
        .iter()
        .find(|(given, _, present, _)| *given && !*present);
    match missing {
        Some(&(_, flag, _, needs)) => Err(TlsError::Needs { flag, needs }),
        None => Ok(()),
    }
}

/// The acceptor for client connections, when `--tls-cert` is given.
pub fn acceptor(config: &TlsConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let (cert, key) = (&config.tls_cert, &config.tls_key);
    let client_ca = config.tls_client_ca.is_some();
    check(&[
        (cert.is_some(), "--tls-cert", key.is_some(), "--tls-key"),
        (key.is_some(), "--tls-key", cert.is_some(), "--tls-cert"),
        (client_ca, "--tls-client-ca", cert.is_some(), "--tls-cert"),
    ])?;
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| refused(cert, source))?;
    let builder = match &config.tls_client_ca {
        Some(ca) => {
            let roots = Arc::new(roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|source| TlsError::ClientCa {
                    path: ca.clone(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let server = builder
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|source| refused(cert, source))?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// The link's TLS, when `--upstream-tls-ca` is given for an `--upstream` at `upstream`.
pub fn link(
    config: &TlsConfig,
    upstream: Option<&crate::address::HostPort>,
) -> Result<Option<LinkTls>, TlsError> {
    let (cert, key) = (&config.upstream_tls_cert, &config.upstream_tls_key);
    let ca = &config.upstream_tls_ca;
    let (has_ca, has_cert, has_key) = (ca.is_some(), cert.is_some(), key.is_some());
    let has_name = config.upstream_tls_name.is_some();
    let up = upstream.is_some();
    check(&[
        (has_ca, "--upstream-tls-ca", up, "--upstream"),
        (has_name, "--upstream-tls-name", has_ca, "--upstream-tls-ca"),
        (
            has_cert,
            "--upstream-tls-cert",
            has_key,
            "--upstream-tls-key",
        ),
        (
            has_key,
            "--upstream-tls-key",
            has_cert,
            "--upstream-tls-cert",
        ),
        (has_cert, "--upstream-tls-cert", has_ca, "--upstream-tls-ca"),
    ])?;
    let (Some(ca), Some(upstream)) = (ca, upstream) else {
        return Ok(None);
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| refused(ca, source))?
        .with_root_certificates(roots(ca)?);
    let client = match (cert, key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|source| refused(cert, source))?,
        _ => builder.with_no_client_auth(),
    };
    let name = match &config.upstream_tls_name {
        Some(name) => ServerName::try_from(name.clone())
            .map_err(|_| TlsError::BadName { name: name.clone() })?,
        // Without --upstream-tls-name, the certificate must name what --upstream names.
        None => match upstream.ip() {
            Some(ip) => ServerName::IpAddress(ip.into()),
            None => ServerName::try_from(upstream.host.clone()).map_err(|_| TlsError::BadName {
                name: upstream.host.clone(),
            })?,
        },
    };
    Ok(Some(LinkTls {
        connector: TlsConnector::from(Arc::new(client)),
        name,
    }))
}

fn refused(path: &Path, source: rustls::Error) -> TlsError {
    TlsError::Refused {
        path: path.to_path_buf(),
        source,
    }
}

fn read_error(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Every certificate in a PEM file, in order; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(path.to_path_buf()),
        source => read_error(path)(source),
    })
}

/// The CA certificates in a PEM file, as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|source| refused(path, source))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_given_is_no_tls_and_a_flag_without_one_it_needs_is_named() {
        let hub: crate::address::HostPort = "127.0.0.1:4243".parse().unwrap();
        assert!(acceptor(&TlsConfig::default()).unwrap().is_none());
        assert!(link(&TlsConfig::default(), Some(&hub)).unwrap().is_none());
        let refusal = |config: TlsConfig, upstream| {
            let server = acceptor(&config).err().map(|e| e.to_string());
            server.or_else(|| link(&config, upstream).err().map(|e| e.to_string()))
        };
        let client_ca = TlsConfig {
            tls_client_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            refusal(client_ca, None).as_deref(),
            Some("--tls-client-ca needs --tls-cert")
        );
        let ca = TlsConfig {
            upstream_tls_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            refusal(ca, None).as_deref(),
            Some("--upstream-tls-ca needs --upstream")
        );
        let name = TlsConfig {
            upstream_tls_name: Some("hub".into()),
            ..Default::default()
        };
        assert_eq!(
            refusal(name, Some(&hub)).as_deref(),
            Some("--upstream-tls-name needs --upstream-tls-ca")
        );
        let key = TlsConfig {
            upstream_tls_key: Some("leaf.key".into()),
            ..Default::default()
        };
        assert_eq!(
            refusal(key, Some(&hub)).as_deref(),
            Some("--upstream-tls-key needs --upstream-tls-cert")
        );
    }
}
