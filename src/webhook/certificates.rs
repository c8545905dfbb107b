//! Self-managed certificates, for installations without cert-manager: the server keeps a CA
//! and a serving certificate in a Secret of its namespace (created when missing, renewed
//! before expiry, shared by the replicas through the API server's optimistic concurrency),
//! writes them where the TLS loader reads them, and keeps the `caBundle` of its
//! ValidatingWebhookConfiguration equal to the CA. So the chart renders the same objects
//! every time, and rotation needs no restart (the reloader picks up the new files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use tracing::{info, warn};

const DAY: i64 = 24 * 3600;
/// The CA lives ten years and is replaced when a year is left; serving certificates live a
/// year and are replaced when thirty days are left.
const CA_LIFETIME: i64 = 3650 * DAY;
const CA_RENEW_BEFORE: i64 = 365 * DAY;
const LEAF_LIFETIME: i64 = 365 * DAY;
const LEAF_RENEW_BEFORE: i64 = 30 * DAY;

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Secret kept changing under us; will try again")]
    Contended,
}

/// What the Secret holds, PEM. `ca_bundle` is the current CA, followed by the previous one
/// while certificates it signed may still be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_bundle: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

impl Material {
    fn from_secret(secret: &Secret) -> Option<Material> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| {
            data.get(key)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        Some(Material {
            ca_bundle: text(CA_CERT)?,
            ca_key: text(CA_KEY)?,
            cert: text(TLS_CERT)?,
            key: text(TLS_KEY)?,
        })
    }

    fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT, &self.ca_bundle),
            (CA_KEY, &self.ca_key),
            (TLS_CERT, &self.cert),
            (TLS_KEY, &self.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }

    /// The current CA: the first certificate of the bundle.
    fn ca(&self) -> Option<String> {
        pem_blocks(&self.ca_bundle).into_iter().next()
    }
}

fn pem_blocks(bundle: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(len) = rest[start..].find("-----END CERTIFICATE-----") else {
            break;
        };
        let end = start + len + "-----END CERTIFICATE-----".len();
        blocks.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

/// Validity of a PEM certificate, as Unix times.
fn validity(pem: &str) -> Option<(i64, i64)> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

fn dns_names_of(pem: &str) -> Option<Vec<String>> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut names: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
            _ => None,
        })
        .collect();
    names.sort();
    Some(names)
}

fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let parse = |pem: &str| rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok();
    let (Some(cert), Some(ca)) = (parse(cert_pem), parse(ca_pem)) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(&cert),
        x509_parser::parse_x509_certificate(&ca),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// What to do with what the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// A new serving certificate from the same CA.
    RenewLeaf(&'static str),
    /// A new CA (and serving certificate); the old CA stays in the bundle while valid.
    NewCa(&'static str),
}

/// Pure: decides from the Secret's content, the wanted names and the time.
pub fn plan(existing: Option<&Material>, dns_names: &[String], now: i64) -> Plan {
    let Some(material) = existing else {
        return Plan::NewCa("no certificate yet");
    };
    let Some(ca) = material.ca() else {
        return Plan::NewCa("the CA cannot be read");
    };
    match validity(&ca) {
        None => return Plan::NewCa("the CA cannot be read"),
        Some((_, not_after)) if not_after - now < CA_RENEW_BEFORE => {
            return Plan::NewCa("the CA expires within a year");
        }
        Some(_) => {}
    }
    if KeyPair::from_pem(&material.ca_key).is_err() {
        return Plan::NewCa("the CA key cannot be read");
    }
    let mut wanted: Vec<String> = dns_names.to_vec();
    wanted.sort();
    match validity(&material.cert) {
        None => Plan::RenewLeaf("the serving certificate cannot be read"),
        Some((_, not_after)) if not_after - now < LEAF_RENEW_BEFORE => {
            Plan::RenewLeaf("the serving certificate expires within 30 days")
        }
        Some(_) if dns_names_of(&material.cert) != Some(wanted) => {
            Plan::RenewLeaf("the service names changed")
        }
        Some(_) if !issued_by(&material.cert, &ca) => {
            Plan::RenewLeaf("the serving certificate is not from the CA")
        }
        Some(_) if KeyPair::from_pem(&material.key).is_err() => {
            Plan::RenewLeaf("the serving key cannot be read")
        }
        Some(_) => Plan::Keep,
    }
}

fn at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Carries out a plan other than `Keep`.
pub fn issue(
    plan: &Plan,
    existing: Option<&Material>,
    dns_names: &[String],
    now: i64,
) -> Result<Material, CertificateError> {
    let (ca_pem, ca_key_pem, previous) = match (plan, existing) {
        (Plan::RenewLeaf(_), Some(material)) => (
            material.ca().unwrap_or_default(),
            material.ca_key.clone(),
            material.ca_bundle.clone(),
        ),
        _ => {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "asyncapi-guard webhook CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = at(now - DAY);
            params.not_after = at(now + CA_LIFETIME);
            let key = KeyPair::generate()?;
            let ca = params.self_signed(&key)?;
            // The old CA stays trusted while it is valid: replicas may still serve its certificates.
            let old = existing
                .and_then(Material::ca)
                .filter(|old| validity(old).is_some_and(|(_, not_after)| not_after > now))
                .unwrap_or_default();
            (ca.pem(), key.serialize_pem(), format!("{}{old}", ca.pem()))
        }
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&ca_key_pem)?)?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().map_or("asyncapi-guard", String::as_str),
    );
    params.not_before = at(now - DAY);
    params.not_after = at(now + LEAF_LIFETIME);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Material {
        ca_bundle: pem_blocks(&previous).concat(),
        ca_key: ca_key_pem,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The certificates' home in the cluster and on disk.
#[derive(Clone)]
pub struct SelfManaged {
    pub client: kube::Client,
    pub namespace: String,
    pub secret: String,
    pub webhook_configuration: Option<String>,
    pub dns_names: Vec<String>,
    pub dir: PathBuf,
}

impl std::fmt::Debug for SelfManaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfManaged")
            .field("namespace", &self.namespace)
            .field("secret", &self.secret)
            .field("webhook_configuration", &self.webhook_configuration)
            .field("dns_names", &self.dns_names)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl SelfManaged {
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(TLS_CERT)
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(TLS_KEY)
    }

    /// Makes the Secret hold valid certificates, writes them to disk, and makes the webhook
    /// configuration trust the CA. Safe to run from every replica at once.
    pub async fn reconcile(&self) -> Result<Material, CertificateError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut material = None;
        for _ in 0..3 {
            let current = secrets.get_opt(&self.secret).await?;
            let existing = current.as_ref().and_then(Material::from_secret);
            let plan = plan(existing.as_ref(), &self.dns_names, now());
            if plan == Plan::Keep {
                material = existing;
                break;
            }
            let fresh = issue(&plan, existing.as_ref(), &self.dns_names, now())?;
            let result = match current {
                None => {
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(self.secret.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/managed-by".to_owned(),
                                "asyncapi-guard".to_owned(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        type_: Some("kubernetes.io/tls".to_owned()),
                        data: Some(fresh.to_data()),
                        ..Secret::default()
                    };
                    secrets.create(&PostParams::default(), &secret).await
                }
                Some(mut secret) => {
                    // resourceVersion makes a concurrent writer's update fail with 409.
                    secret.data = Some(fresh.to_data());
                    secrets
                        .replace(&self.secret, &PostParams::default(), &secret)
                        .await
                }
            };
            match result {
                Ok(_) => {
                    info!(secret = %self.secret, ?plan, "self-managed certificate written");
                    material = Some(fresh);
                    break;
                }
                // Another replica got there first: read what it wrote.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let material = material.ok_or(CertificateError::Contended)?;
        write_atomically(&self.dir, TLS_CERT, &material.cert)?;
        write_atomically(&self.dir, TLS_KEY, &material.key)?;
        if let Some(name) = &self.webhook_configuration {
            self.sync_ca_bundle(name, &material.ca_bundle).await?;
        }
        Ok(material)
    }

    async fn sync_ca_bundle(&self, name: &str, bundle: &str) -> Result<(), CertificateError> {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let Some(mut configuration) = api.get_opt(name).await? else {
            warn!(
                webhook_configuration = name,
                "not found yet; its caBundle will be set when it exists"
            );
            return Ok(());
        };
        let wanted = ByteString(bundle.as_bytes().to_vec());
        let mut changed = false;
        for webhook in configuration.webhooks.iter_mut().flatten() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                webhook.client_config.ca_bundle = Some(wanted.clone());
                changed = true;
            }
        }
        if changed {
            api.replace(name, &PostParams::default(), &configuration)
                .await?;
            info!(webhook_configuration = name, "caBundle updated");
        }
        Ok(())
    }

    /// Re-checks every `every`; retries sooner after a failure.
    pub async fn run(self, every: Duration) {
        loop {
            let wait = match self.reconcile().await {
                Ok(_) => every,
                Err(e) => {
                    warn!(error = %e, "self-managed certificates: will retry");
                    Duration::from_secs(30).min(every)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Writes beside, then renames: the loader never reads half a file.
fn write_atomically(dir: &Path, name: &str, content: &str) -> Result<(), CertificateError> {
    let error = |source| CertificateError::Write {
        path: dir.join(name),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    let path = dir.join(name);
    if std::fs::read_to_string(&path).is_ok_and(|current| current == content) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).map_err(error)?;
    std::fs::rename(&tmp, &path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec![
            "guard.ns.svc".to_owned(),
            "guard.ns.svc.cluster.local".to_owned(),
        ]
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_new_ca_and_certificate_when_there_is_none() {
        assert_eq!(plan(None, &names(), NOW), Plan::NewCa("no certificate yet"));
        let material = issue(&Plan::NewCa("x"), None, &names(), NOW).unwrap();
        assert_eq!(plan(Some(&material), &names(), NOW), Plan::Keep);
        assert!(issued_by(&material.cert, &material.ca().unwrap()));
        assert_eq!(dns_names_of(&material.cert).unwrap(), names());
        assert_eq!(pem_blocks(&material.ca_bundle).len(), 1);
    }

    #[test]
    fn the_serving_certificate_is_renewed_before_expiry_with_the_same_ca() {
        let material = issue(&Plan::NewCa("x"), None, &names(), NOW).unwrap();
        let later = NOW + LEAF_LIFETIME - 10 * DAY;
        let plan = plan(Some(&material), &names(), later);
        assert!(matches!(plan, Plan::RenewLeaf(_)), "{plan:?}");
        let renewed = issue(&plan, Some(&material), &names(), later).unwrap();
        assert_eq!(renewed.ca_bundle, material.ca_bundle);
        assert_ne!(renewed.cert, material.cert);
        assert!(issued_by(&renewed.cert, &material.ca().unwrap()));
        assert_eq!(super::plan(Some(&renewed), &names(), later), Plan::Keep);
    }

    #[test]
    fn changed_names_or_a_foreign_certificate_renew_the_leaf() {
        let material = issue(&Plan::NewCa("x"), None, &names(), NOW).unwrap();
        assert!(matches!(
            plan(Some(&material), &["other.ns.svc".to_owned()], NOW),
            Plan::RenewLeaf(_)
        ));
        let foreign = issue(&Plan::NewCa("x"), None, &names(), NOW).unwrap();
        let mixed = Material {
            cert: foreign.cert,
            key: foreign.key,
            ..material
        };
        assert_eq!(
            plan(Some(&mixed), &names(), NOW),
            Plan::RenewLeaf("the serving certificate is not from the CA")
        );
    }

    #[test]
    fn an_ageing_ca_is_replaced_and_the_old_one_stays_trusted() {
        let material = issue(&Plan::NewCa("x"), None, &names(), NOW).unwrap();
        let late = NOW + CA_LIFETIME - 100 * DAY;
        let plan = plan(Some(&material), &names(), late);
        assert_eq!(plan, Plan::NewCa("the CA expires within a year"));
        let rotated = issue(&plan, Some(&material), &names(), late).unwrap();
        let bundle = pem_blocks(&rotated.ca_bundle);
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[1], material.ca().unwrap());
        assert!(issued_by(&rotated.cert, &bundle[0]));
    }

    #[test]
    fn garbage_is_replaced() {
        let garbage = Material {
            ca_bundle: "x".into(),
            ca_key: "y".into(),
            cert: "z".into(),
            key: "w".into(),
        };
        assert!(matches!(
            plan(Some(&garbage), &names(), NOW),
            Plan::NewCa(_)
        ));
    }
}
