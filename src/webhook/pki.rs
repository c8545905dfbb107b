//! Certificates, in one place: a certificate authority and the serving certificates it
//! signs (the self-signed mode's throwaway CA for localhost, the self-managed mode's CA kept
//! in a Secret), and reading a PEM or DER certificate.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use x509_parser::certificate::X509Certificate;

/// When a certificate is valid, as Unix times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

fn at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A CA: its certificate and key, PEM, and what signs with them.
pub struct Authority {
    pub cert_pem: String,
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl Authority {
    /// A new CA named `common_name`, valid over `validity`, that may sign leaf certificates
    /// only (no intermediate CA).
    pub fn new(common_name: &str, validity: Validity) -> Result<Authority, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(validity.not_before);
        params.not_after = at(validity.not_after);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA of a certificate and key kept earlier.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, rcgen::Error> {
        let issuer = Issuer::from_ca_cert_pem(cert_pem, KeyPair::from_pem(key_pem)?)?;
        Ok(Authority {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// A serving certificate for `names` (DNS names; IP addresses become IP SANs), named
    /// after the first.
    pub fn issue(&self, names: &[String], validity: Validity) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("asyncapi-guard", String::as_str),
        );
        params.not_before = at(validity.not_before);
        params.not_after = at(validity.not_after);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }
}

/// Reads the first certificate of `pem` and gives it to `read`; `None` when there is none
/// or it does not parse.
pub fn read_pem<T>(pem: &str, read: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    read_der(&der, read)
}

/// As [`read_pem`], for a DER certificate.
pub fn read_der<T>(der: &[u8], read: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(read(&cert))
}

/// When a certificate is valid.
pub fn validity(cert: &X509Certificate<'_>) -> Validity {
    Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// Whether `cert_pem` was signed by the CA `ca_pem`.
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let Some(ca_der) = CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok() else {
        return false;
    };
    read_pem(cert_pem, |cert| {
        read_der(&ca_der, |ca| {
            cert.verify_signature(Some(ca.public_key())).is_ok()
        })
        .unwrap_or(false)
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_certificates_it_verifies_and_others_do_not() {
        let validity = Validity {
            not_before: 1_800_000_000,
            not_after: 1_900_000_000,
        };
        let ca = Authority::new("test CA", validity).unwrap();
        let leaf = ca.issue(&["guard.ns.svc".into()], validity).unwrap();
        assert!(issued_by(&leaf.cert_pem, &ca.cert_pem));
        let other = Authority::new("other CA", validity).unwrap();
        assert!(!issued_by(&leaf.cert_pem, &other.cert_pem));
        assert_eq!(read_pem(&leaf.cert_pem, validity_of), Some(validity));
        let again = Authority::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let renewed = again.issue(&["guard.ns.svc".into()], validity).unwrap();
        assert!(issued_by(&renewed.cert_pem, &ca.cert_pem));
        assert_eq!(read_pem("not pem", validity_of), None);
    }

    fn validity_of(cert: &X509Certificate<'_>) -> Validity {
        validity(cert)
    }
}
