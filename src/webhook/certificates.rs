//! Self-managed certificates, for installations without cert-manager: the server keeps a CA
//! and a serving certificate in a Secret of its namespace (created when missing, renewed
//! before expiry, shared by the replicas through the API server's optimistic concurrency),
//! writes them where the TLS loader reads them, and keeps the `caBundle` of its
//! ValidatingWebhookConfiguration equal to the CA. So the chart renders the same objects
//! every time, and rotation needs no restart (the reloader picks up the new files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use rcgen::KeyPair;
use tracing::{info, warn};

use super::pki::{self, Authority, issued_by};

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
    pki::read_pem(pem, pki::validity).map(|v| (v.not_before, v.not_after))
}

/// The subject alternative names of a certificate, as the flag spells them: DNS names, and IP
/// addresses (which `rcgen` makes of names that parse as one) in their canonical form.
fn names_of(pem: &str) -> Option<Vec<String>> {
    pki::read_pem(pem, |cert| {
        let san = cert.subject_alternative_name().ok()??;
        let mut names: Vec<String> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => ip_of(bytes),
                _ => None,
            })
            .collect();
        names.sort();
        Some(names)
    })
    .flatten()
}

fn ip_of(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

/// The wanted names as [`names_of`] reads them back: `::0:1` and `::1` are one address.
fn canonical_names(names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => name.clone(),
        })
        .collect();
    names.sort();
    names.dedup();
    names
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
    let wanted = canonical_names(dns_names);
    match validity(&material.cert) {
        None => Plan::RenewLeaf("the serving certificate cannot be read"),
        Some((_, not_after)) if not_after - now < LEAF_RENEW_BEFORE => {
            Plan::RenewLeaf("the serving certificate expires within 30 days")
        }
        Some(_) if names_of(&material.cert).map(|n| canonical_names(&n)) != Some(wanted) => {
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

/// Carries out a plan other than `Keep`.
pub fn issue(
    plan: &Plan,
    existing: Option<&Material>,
    dns_names: &[String],
    now: i64,
) -> Result<Material, CertificateError> {
    let (ca, bundle) = match (plan, existing) {
        (Plan::RenewLeaf(_), Some(material)) => (
            Authority::from_pem(&material.ca().unwrap_or_default(), &material.ca_key)?,
            material.ca_bundle.clone(),
        ),
        _ => {
            let ca = Authority::new(
                "asyncapi-guard webhook CA",
                pki::Validity {
                    not_before: now - DAY,
                    not_after: now + CA_LIFETIME,
                },
            )?;
            // The old CA stays trusted while it is valid: replicas may still serve its certificates.
            let old = existing
                .and_then(Material::ca)
                .filter(|old| validity(old).is_some_and(|(_, not_after)| not_after > now))
                .unwrap_or_default();
            let bundle = format!("{}{old}", ca.cert_pem);
            (ca, bundle)
        }
    };
    let leaf = ca.issue(
        dns_names,
        pki::Validity {
            not_before: now - DAY,
            not_after: now + LEAF_LIFETIME,
        },
    )?;
    Ok(Material {
        ca_bundle: pem_blocks(&bundle).concat(),
        ca_key: ca.key_pem,
        cert: leaf.cert_pem,
        key: leaf.key_pem,
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
    /// The Secret's owner (the server's Deployment): uninstalling deletes it.
    pub owner: Option<OwnerReference>,
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
        let material = self.reconcile_secret().await?;
        if let Some(name) = &self.webhook_configuration {
            let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
            match api.get_opt(name).await? {
                Some(configuration) => {
                    inject_ca_bundle(&api, &configuration, &material.ca_bundle).await?;
                }
                None => warn!(
                    webhook_configuration = name.as_str(),
                    "not found yet; its caBundle will be set as soon as it is created"
                ),
            }
        }
        Ok(material)
    }

    /// The Secret part of [`reconcile`](Self::reconcile): valid certificates in the Secret
    /// and on disk.
    async fn reconcile_secret(&self) -> Result<Material, CertificateError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let mut material = None;
        for _ in 0..3 {
            let current = secrets.get_opt(&self.secret).await?;
            let existing = current.as_ref().and_then(Material::from_secret);
            let plan = plan(existing.as_ref(), &self.dns_names, now());
            // A Secret an earlier version made has no owner: it gets one, so that an
            // uninstall deletes it.
            let unowned = |secret: &Secret| {
                self.owner.as_ref().is_some_and(|owner| {
                    !secret
                        .metadata
                        .owner_references
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|o| o.uid == owner.uid)
                })
            };
            if plan == Plan::Keep {
                if let Some(mut secret) = current.filter(|s| unowned(s)) {
                    secret.metadata.owner_references = self.owner.clone().map(|o| vec![o]);
                    match secrets.replace(&self.secret, &params, &secret).await {
                        Ok(_) => {
                            info!(secret = %self.secret, "the certificate Secret is owned by the Deployment now")
                        }
                        Err(kube::Error::Api(status)) if status.code == 409 => continue,
                        Err(e) => warn!(error = %e, "cannot give the certificate Secret its owner"),
                    }
                }
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
                            owner_references: self.owner.clone().map(|o| vec![o]),
                            ..ObjectMeta::default()
                        },
                        type_: Some("kubernetes.io/tls".to_owned()),
                        data: Some(fresh.to_data()),
                        ..Secret::default()
                    };
                    secrets.create(&params, &secret).await
                }
                Some(mut secret) => {
                    // resourceVersion makes a concurrent writer's update fail with 409.
                    secret.data = Some(fresh.to_data());
                    if unowned(&secret) {
                        secret.metadata.owner_references = self.owner.clone().map(|o| vec![o]);
                    }
                    secrets.replace(&self.secret, &params, &secret).await
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
        Ok(material)
    }

    /// For the life of the server: renews the certificates every `every` (sooner after a
    /// failure), and keeps the webhook configuration's `caBundle` equal to the CA by
    /// watching it, as cert-manager's cainjector does. A configuration created after the
    /// server started, or replaced without its `caBundle` (`kubectl replace`, an Argo CD
    /// Replace sync, delete and re-apply), is set within seconds: until then the API server
    /// cannot call the webhook, and with `failurePolicy: Fail` it refuses every guarded
    /// object. Every replica does it; the write is idempotent.
    pub async fn run(self, every: Duration, current: Material) {
        let (bundle, bundle_changed) = tokio::sync::watch::channel(current.ca_bundle);
        let renew = async {
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                wait = match self.reconcile_secret().await {
                    Ok(material) => {
                        bundle.send_if_modified(|held| {
                            let changed = *held != material.ca_bundle;
                            if changed {
                                held.clone_from(&material.ca_bundle);
                            }
                            changed
                        });
                        every
                    }
                    Err(e) => {
                        warn!(error = %e, "self-managed certificates: will retry");
                        Duration::from_secs(30).min(every)
                    }
                };
            }
        };
        match &self.webhook_configuration {
            Some(name) => {
                tokio::join!(renew, self.keep_ca_bundle(name, bundle_changed));
            }
            None => renew.await,
        }
    }

    /// Watches the named configuration and sets its `caBundle` whenever it differs.
    async fn keep_ca_bundle(&self, name: &str, mut bundle: tokio::sync::watch::Receiver<String>) {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = watcher(api.clone(), config).default_backoff().boxed();
        let mut observed: Option<ValidatingWebhookConfiguration> = None;
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object))) => {
                        observed = Some(object);
                    }
                    Some(Ok(watcher::Event::Delete(_))) => {
                        info!(webhook_configuration = name, "deleted; its caBundle will be set when it is created again");
                        observed = None;
                        continue;
                    }
                    Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => continue,
                    // The watcher backs off and resumes on its own.
                    Some(Err(e)) => {
                        warn!(webhook_configuration = name, error = %e, "watch error");
                        continue;
                    }
                    None => return,
                },
                changed = bundle.changed() => if changed.is_err() { return },
            }
            let Some(configuration) = &observed else {
                continue;
            };
            let mut wanted = bundle.borrow_and_update().clone();
            if !trusts(configuration, &wanted) {
                // Another replica may have rotated the CA since this one last looked: the
                // Secret is the one truth, so replicas never fight over the caBundle.
                match self.reconcile_secret().await {
                    Ok(material) => wanted = material.ca_bundle,
                    Err(e) => {
                        warn!(error = %e, "self-managed certificates: cannot read the Secret")
                    }
                }
            }
            if let Err(e) = inject_ca_bundle(&api, configuration, &wanted).await {
                // The next event (or the watcher's relist) tries again.
                warn!(webhook_configuration = name, error = %e, "cannot set the caBundle; will retry");
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Ok(Some(fresh)) = api.get_opt(name).await {
                    observed = Some(fresh);
                }
            }
        }
    }
}

/// The field manager of everything the certificate code writes, so that `managedFields`
/// says who set the `caBundle`.
pub const FIELD_MANAGER: &str = "asyncapi-guard-certificates";

/// Whether every webhook of `configuration` already has `bundle` as its caBundle.
fn trusts(configuration: &ValidatingWebhookConfiguration, bundle: &str) -> bool {
    let wanted = ByteString(bundle.as_bytes().to_vec());
    configuration
        .webhooks
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|webhook| webhook.client_config.ca_bundle.as_ref() == Some(&wanted))
}

/// Sets `bundle` as the `caBundle` of every webhook of `configuration` that does not have
/// it, without owning the entries: Helm, `kubectl apply --server-side`, Argo CD or Flux own
/// them (as cert-manager's cainjector leaves them to their owner).
///
/// - The write is an update (a strategic merge patch keyed by entry name), which owns only
///   the `caBundle` it changes. A server-side apply would own each entry (`.` and `name`):
///   when Helm stopped applying an entry, the entry would stay with only `name` and
///   `caBundle`, fail validation, and fail the upgrade (kubernetes/kubernetes#108081).
///   An update's ownership goes with the entry.
/// - The patch carries the resourceVersion it was made from: an entry removed meanwhile
///   makes it fail (409) rather than come back half; the watch tries again.
/// - Ownership taken by an apply of an earlier version is released first
///   ([`release_entries`]).
async fn inject_ca_bundle(
    api: &Api<ValidatingWebhookConfiguration>,
    configuration: &ValidatingWebhookConfiguration,
    bundle: &str,
) -> Result<(), CertificateError> {
    let name = configuration.metadata.name.clone().unwrap_or_default();
    let released = match release_entries(configuration) {
        Some(patch) => {
            api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
                .await?;
            info!(webhook_configuration = %name, "ownership of the webhook entries released to their owner");
            true
        }
        None => false,
    };
    if trusts(configuration, bundle) {
        return Ok(());
    }
    let wanted = ByteString(bundle.as_bytes().to_vec());
    let webhooks = configuration.webhooks.as_deref().unwrap_or_default();
    let mut patch = serde_json::json!({
        "webhooks": webhooks
            .iter()
            .filter(|webhook| webhook.client_config.ca_bundle.as_ref() != Some(&wanted))
            .map(|webhook| serde_json::json!({
                "name": webhook.name,
                "clientConfig": {"caBundle": wanted},
            }))
            .collect::<Vec<_>>(),
    });
    // The release above changed the resourceVersion: that write is ours, not a change to
    // the entries, so only a configuration read before it needs no precondition.
    if !released {
        patch["metadata"] =
            serde_json::json!({"resourceVersion": configuration.metadata.resource_version});
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Strategic(&patch)).await?;
    info!(webhook_configuration = %name, "caBundle set");
    Ok(())
}

/// Earlier versions wrote the caBundle by server-side apply, and so owned every entry: a
/// JSON patch that rewrites `managedFields` (guarded by the resourceVersion) to keep only
/// the caBundles, under an update, releases the entries to their owner. `None` when there is
/// nothing to release.
fn release_entries(configuration: &ValidatingWebhookConfiguration) -> Option<json_patch::Patch> {
    let managed = configuration.metadata.managed_fields.as_deref()?;
    if !managed.iter().any(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply")
    }) {
        return None;
    }
    let mut fields = serde_json::Map::new();
    for webhook in configuration.webhooks.as_deref().unwrap_or_default() {
        if webhook.client_config.ca_bundle.is_some() {
            let key = format!("k:{}", serde_json::json!({"name": webhook.name}));
            fields.insert(
                key,
                serde_json::json!({"f:clientConfig": {"f:caBundle": {}}}),
            );
        }
    }
    let mut entries: Vec<serde_json::Value> = managed
        .iter()
        .filter(|e| {
            !(e.manager.as_deref() == Some(FIELD_MANAGER)
                && e.operation.as_deref() == Some("Apply"))
        })
        .filter(|e| {
            !(e.manager.as_deref() == Some(FIELD_MANAGER)
                && e.operation.as_deref() == Some("Update"))
        })
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    if !fields.is_empty() {
        entries.push(serde_json::json!({
            "manager": FIELD_MANAGER,
            "operation": "Update",
            "apiVersion": "admissionregistration.k8s.io/v1",
            "time": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:webhooks": fields},
        }));
    }
    serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": configuration.metadata.resource_version},
        {"op": "replace", "path": "/metadata/managedFields", "value": entries},
    ]))
    .ok()
}

/// Writes beside, then renames: the loader never reads half a file. Everything is written
/// 0600 (the key must be; the certificate loses nothing by it): only this server reads them.
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
    // A leftover from a crash may have other permissions: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(error)?;
    std::io::Write::write_all(&mut file, content.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    drop(file);
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
        assert_eq!(names_of(&material.cert).unwrap(), names());
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
    fn ip_names_become_ip_sans_and_an_unchanged_certificate_is_kept() {
        let wanted = vec![
            "127.0.0.1".to_owned(),
            "guard.ns.svc".to_owned(),
            "::1".to_owned(),
        ];
        let material = issue(&Plan::NewCa("x"), None, &wanted, NOW).unwrap();
        assert_eq!(
            names_of(&material.cert).unwrap(),
            ["127.0.0.1", "::1", "guard.ns.svc"]
        );
        // Re-issuing it on every restart of every replica would make each replica's
        // certificate unknown to the others' caBundle until the next write.
        assert_eq!(plan(Some(&material), &wanted, NOW), Plan::Keep);
        let spelled_otherwise = vec![
            "0:0:0:0:0:0:0:1".to_owned(),
            "guard.ns.svc".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        assert_eq!(plan(Some(&material), &spelled_otherwise, NOW), Plan::Keep);
        assert_eq!(
            plan(Some(&material), &["guard.ns.svc".to_owned()], NOW),
            Plan::RenewLeaf("the service names changed")
        );
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
