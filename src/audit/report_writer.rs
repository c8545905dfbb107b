//! Keeps one OpenReports `Report` per namespace, and one `ClusterReport` for cluster-scoped
//! objects, equal to what the audit found (the leader only): objects' results are kept as
//! the audit judges them, namespaces whose results changed are written together every few
//! seconds, and nothing is written when the report in the cluster already says it. Without
//! a report's CRD it logs once and looks again every minute, so installing the CRD later
//! starts the reports. Below, the namespace `""` stands for the ClusterReport.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;
use tracing::{info, warn};

use super::reports::{self, NAME, ObjectResults, namespace_report, same_content};
use super::resources::resource_name;

/// How long a missing CRD is believed missing.
const CRD_RECHECK: Duration = Duration::from_secs(60);

pub fn report_resource() -> ApiResource {
    openreports_resource(reports::KIND, "reports")
}

pub fn cluster_report_resource() -> ApiResource {
    openreports_resource(reports::CLUSTER_KIND, "clusterreports")
}

/// The ClusterReport's resource for `cluster`, the Report's otherwise.
fn resource_of(cluster: bool) -> ApiResource {
    if cluster {
        cluster_report_resource()
    } else {
        report_resource()
    }
}

fn openreports_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "openreports.io".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: reports::API_VERSION.to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crd {
    Unknown,
    Present,
    Absent(Instant),
}

pub struct ReportWriter {
    client: Client,
    field_manager: &'static str,
    /// By namespace, by object uid.
    objects: HashMap<String, BTreeMap<String, ObjectResults>>,
    dirty: BTreeSet<String>,
    /// What this leader wrote or found, by namespace; `Value::Null` for "none there".
    written: HashMap<String, Value>,
    /// Whether `reports.openreports.io` is installed.
    crd: Crd,
    /// Whether `clusterreports.openreports.io` is: installed with the other as a rule, but a
    /// CRD of its own.
    cluster_crd: Crd,
}

impl std::fmt::Debug for ReportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportWriter")
            .field("namespaces", &self.objects.len())
            .field("dirty", &self.dirty)
            .field("crd", &self.crd)
            .field("cluster_crd", &self.cluster_crd)
            .finish_non_exhaustive()
    }
}

impl ReportWriter {
    pub fn new(client: Client, field_manager: &'static str) -> Self {
        ReportWriter {
            client,
            field_manager,
            objects: HashMap::new(),
            dirty: BTreeSet::new(),
            written: HashMap::new(),
            crd: Crd::Unknown,
            cluster_crd: Crd::Unknown,
        }
    }

    /// An object's results as just judged (its namespace's Report is rewritten only if they
    /// changed); a cluster-scoped object's, in the ClusterReport.
    pub fn put(&mut self, results: ObjectResults) {
        let namespace = results.namespace.clone();
        let objects = self.objects.entry(namespace.clone()).or_default();
        if objects.get(&results.uid) != Some(&results) {
            objects.insert(results.uid.clone(), results);
            self.dirty.insert(namespace);
        }
    }

    /// An object that is gone, or that no longer carries a guarded document.
    pub fn remove(&mut self, namespace: &str, uid: &str) {
        if let Some(objects) = self.objects.get_mut(namespace)
            && objects.remove(uid).is_some()
        {
            self.dirty.insert(namespace.to_owned());
        }
    }

    /// The API of the report `namespace`'s results go in: `""` is the ClusterReport's.
    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        let resource = resource_of(namespace.is_empty());
        if namespace.is_empty() {
            Api::all_with(self.client.clone(), &resource)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        }
    }

    fn crd_of(&mut self, cluster: bool) -> &mut Crd {
        if cluster {
            &mut self.cluster_crd
        } else {
            &mut self.crd
        }
    }

    /// Whether the CRD of the Report (or, `cluster`, of the ClusterReport) is installed.
    async fn crd_present(&mut self, cluster: bool) -> bool {
        let known = *self.crd_of(cluster);
        match known {
            Crd::Present => return true,
            Crd::Absent(since) if since.elapsed() < CRD_RECHECK => return false,
            _ => {}
        }
        let resource = resource_of(cluster);
        let crd = resource_name(&resource);
        let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let now = match all.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                if known != Crd::Unknown {
                    info!(crd = %crd, "audit: an OpenReports CRD is installed now; writing its reports");
                }
                Crd::Present
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                if known == Crd::Unknown {
                    info!(crd = %crd, "audit: an OpenReports CRD is not installed; its reports are not written until it is");
                }
                Crd::Absent(Instant::now())
            }
            Err(e) => {
                warn!(crd = %crd, error = %e, "audit: cannot tell whether an OpenReports CRD is installed");
                return false;
            }
        };
        *self.crd_of(cluster) = now;
        now == Crd::Present
    }

    /// Writes the reports whose results changed.
    pub async fn flush(&mut self) {
        for namespace in std::mem::take(&mut self.dirty) {
            let cluster = namespace.is_empty();
            if !self.crd_present(cluster).await {
                // Kept: written once the CRD is there.
                self.dirty.insert(namespace);
                continue;
            }
            if let Err(e) = self.write(&namespace).await {
                if let kube::Error::Api(status) = &e
                    && status.code == 404
                    && status.details.is_none()
                {
                    // The CRD went away: look again later.
                    *self.crd_of(cluster) = Crd::Unknown;
                }
                warn!(namespace = %namespace, error = %e, "audit: cannot write the report; will retry");
                self.dirty.insert(namespace);
            }
        }
    }

    async fn write(&mut self, namespace: &str) -> Result<(), kube::Error> {
        let desired = self
            .objects
            .get(namespace)
            .filter(|objects| !objects.is_empty())
            .map(|objects| namespace_report(namespace, objects.values()));
        let api = self.api(namespace);
        if !self.written.contains_key(namespace) {
            // A new leader: what is there already may be what it would write.
            let current = api
                .get_opt(NAME)
                .await?
                .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            self.written.insert(namespace.to_owned(), current);
        }
        let written = self.written.get(namespace).unwrap_or(&Value::Null);
        match desired {
            None if written.is_null() => {}
            None => {
                match api.delete(NAME, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => return Err(e),
                }
                self.written.insert(namespace.to_owned(), Value::Null);
            }
            Some(desired) if same_content(written, &desired) => {}
            Some(desired) => {
                let params = PatchParams::apply(self.field_manager).force();
                api.patch(NAME, &params, &Patch::Apply(&desired)).await?;
                self.written.insert(namespace.to_owned(), desired);
            }
        }
        Ok(())
    }
}
