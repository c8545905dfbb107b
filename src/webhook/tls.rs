//! TLS for the admission port: rustls with TLS 1.2 and 1.3 only, certificate and key from
//! files (reloaded by `reload`), optional verification of the API server's client
//! certificate, or a self-signed certificate made at start for local use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path}: {what}")]
    ClientCa { path: PathBuf, what: String },
    #[error("self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.client_ca.as_deref());
        paths
    }
}

/// A server configuration and when its certificate expires.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// Unix time of the leaf certificate's notAfter.
    pub expires_at: i64,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("not a PEM certificate chain: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no certificate in the file".to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the files and builds the server configuration; any problem leaves the caller's
/// current configuration in place.
pub fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let chain = certificates(&files.cert, &read(&files.cert)?)?;
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: files.key.clone(),
        what: format!("not a PEM private key: {e}"),
    })?;
    let client_ca = match &files.client_ca {
        Some(path) => Some((path.clone(), certificates(path, &read(path)?)?)),
        None => None,
    };
    build(chain, key, client_ca)
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<(PathBuf, Vec<CertificateDer<'static>>)>,
) -> Result<Loaded, TlsError> {
    let expires_at = chain.first().map_or(0, |leaf| not_after(leaf));
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((path, cas)) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in cas {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    what: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path,
                    what: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        expires_at,
    })
}

fn not_after(certificate: &CertificateDer<'_>) -> i64 {
    super::pki::read_der(certificate, super::pki::validity).map_or(0, |v| v.not_after)
}

/// A throwaway CA and a certificate it signs for `localhost`, `127.0.0.1` and `::1`.
#[derive(Debug)]
pub struct SelfSigned {
    pub loaded: Loaded,
    /// The CA certificate, PEM, for clients to trust (written to a file by the caller).
    pub ca_pem: String,
}

pub fn self_signed() -> Result<SelfSigned, TlsError> {
    // For local use: valid from yesterday (clock skew) for 90 days.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = super::pki::Validity {
        not_before: now - 24 * 3600,
        not_after: now + 90 * 24 * 3600,
    };
    let ca = super::pki::Authority::new("asyncapi-guard local CA", validity)?;
    let leaf = ca.issue(
        &[
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ],
        validity,
    )?;
    let key = PrivateKeyDer::try_from(leaf.key_der).map_err(|e| TlsError::Pem {
        path: PathBuf::from("<generated>"),
        what: e.to_owned(),
    })?;
    Ok(SelfSigned {
        loaded: build(vec![leaf.cert_der], key, None)?,
        ca_pem: ca.cert_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_material_builds_and_expires_in_the_future() {
        let generated = self_signed().unwrap();
        assert!(generated.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(generated.loaded.expires_at > now);
        assert!(generated.loaded.expires_at < now + 91 * 24 * 3600);
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let files = TlsFiles {
            cert: cert.clone(),
            key,
            client_ca: None,
        };
        let err = load(&files).unwrap_err().to_string();
        assert!(err.contains("tls.crt"), "{err}");
        let missing = TlsFiles {
            cert: dir.path().join("nope"),
            ..files
        };
        assert!(
            load(&missing)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }
}
