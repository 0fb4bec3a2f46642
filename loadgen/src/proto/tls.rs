//! TLS to a broker, for every protocol that has it: the options (`--tls-ca`, `--tls-name`,
//! `--tls-cert`, `--tls-key`), the client configuration they make (once, shared by every
//! connection), the handshake on a connected socket, and what a failed handshake means in
//! words.
//!
//! rustls with the `ring` provider, chosen explicitly rather than through the process-wide
//! default, so that another crate in the build enabling a second provider cannot make the
//! choice ambiguous. Where in a protocol the handshake happens is the session's business
//! ([`super::dial`]): hubbub, Redis and MQTT speak TLS from the first byte, NATS after its
//! plain-text INFO.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Proto, ProtoError};

/// The TLS options of every command that connects to a broker. Paths, not loaded files, so a
/// coordinator can hand them to its worker processes as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Serialize, Deserialize)]
pub struct TlsOpts {
    /// Speak TLS to the broker(s), trusting the CA certificate(s) in this PEM file: hubbub,
    /// Redis (its tls-port), NATS (upgraded after INFO) and MQTT alike. Each connection's
    /// handshake counts in its connect latency.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// The name the broker's certificate must carry (default: the target's IP address).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_name: Option<String>,
    /// A client certificate chain (PEM) to present, for a broker that asks for one.
    #[arg(long, value_name = "PATH", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsOpts {
    /// TLS trusting the CA at `ca`, with no other option.
    pub fn trusting(ca: impl Into<PathBuf>) -> Self {
        TlsOpts {
            tls_ca: Some(ca.into()),
            ..TlsOpts::default()
        }
    }

    /// The client configuration these options make: `None` without `--tls-ca` (plain TCP).
    pub fn client(&self) -> Result<Option<Tls>, TlsError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        Tls::new(ca, self.tls_name.as_deref(), identity).map(Some)
    }
}

/// A TLS option that cannot be used, said with the option's name.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} from {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no {what} (PEM)", path.display())]
    Empty { what: &'static str, path: PathBuf },
    #[error("--tls-ca {}: not a CA certificate rustls accepts: {error}", path.display())]
    Ca { path: PathBuf, error: rustls::Error },
    #[error("--tls-name {0:?} is neither a DNS name nor an IP address")]
    Name(String),
    #[error("--tls-cert with --tls-key: {0}")]
    Identity(rustls::Error),
    #[error("the TLS configuration: {0}")]
    Config(rustls::Error),
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// A client configuration, made once and shared (cloning is an `Arc`'s).
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    /// `--tls-name`; without it each connection asks for its target's IP address.
    name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl Tls {
    /// Trusts the certificates in the PEM file `ca`; expects `name` on the server's
    /// certificate (default: the address connected to); presents `identity` (certificate
    /// chain, key) when given.
    pub fn new(
        ca: &Path,
        name: Option<&str>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca, "CA certificate")? {
            roots.add(cert).map_err(|error| TlsError::Ca {
                path: ca.to_path_buf(),
                error,
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => {
                let chain = certificates(cert, "certificate")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::Read {
                    what: "a private key",
                    path: key.to_path_buf(),
                    error,
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsError::Identity)?
            }
            None => builder.with_no_client_auth(),
        };
        let name = name
            .map(|n| ServerName::try_from(n.to_string()).map_err(|_| TlsError::Name(n.into())))
            .transpose()?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The name the certificate of the server at `addr` must carry.
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        self.name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }

    /// The TLS handshake on `tcp`, connected to the `proto` server at `peer`. A failure is a
    /// [`ProtoError::Tls`], which says why in words ([`explain`]).
    pub async fn handshake(
        &self,
        proto: Proto,
        peer: SocketAddr,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, ProtoError> {
        self.connector
            .connect(self.server_name(peer), tcp)
            .await
            .map_err(|error| ProtoError::Tls { proto, error })
    }
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |error| TlsError::Read {
        what,
        path: path.to_path_buf(),
        error,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Why a handshake failed, as the rest of a sentence about the server ("… failed the TLS
/// handshake: {this}"): the two mistakes a user makes most (the wrong CA, the wrong name) in
/// words with the option that fixes them, anything else as rustls or the socket says it.
pub fn explain(error: &io::Error) -> String {
    let certificate = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .and_then(|e| match e {
            rustls::Error::InvalidCertificate(c) => Some(c),
            _ => None,
        });
    match certificate {
        Some(CertificateError::UnknownIssuer) => "its certificate is not signed by a CA loadgen \
             trusts (--tls-ca; rustls: invalid peer certificate: UnknownIssuer)"
            .into(),
        Some(c) if format!("{c:?}").starts_with("NotValidForName") => format!(
            "its certificate is not valid for the name loadgen expected (--tls-name, by default \
             the target's IP address; rustls: {error})"
        ),
        _ if error.kind() == io::ErrorKind::UnexpectedEof => {
            "closed the connection during it (does that port speak TLS?)".into()
        }
        _ => error.to_string(),
    }
}
