//! Keeps one OpenReports `Report` per namespace equal to what the audit found (the leader
//! only): objects' results are kept as the audit judges them, namespaces whose results
//! changed are written together every few seconds, and nothing is written when the Report
//! in the cluster already says it. Without the `reports.openreports.io` CRD it logs once and
//! looks again every minute, so installing the CRD later starts the reports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;
use tracing::{info, warn};

use super::reports::{self, NAME, ObjectResults, namespace_report, same_content};

/// How long a missing CRD is believed missing.
const CRD_RECHECK: Duration = Duration::from_secs(60);

pub fn report_resource() -> ApiResource {
    ApiResource {
        group: "openreports.io".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: reports::API_VERSION.to_owned(),
        kind: reports::KIND.to_owned(),
        plural: "reports".to_owned(),
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
    crd: Crd,
}

impl std::fmt::Debug for ReportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportWriter")
            .field("namespaces", &self.objects.len())
            .field("dirty", &self.dirty)
            .field("crd", &self.crd)
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
        }
    }

    /// An object's results as just judged (its namespace's Report is rewritten only if they
    /// changed). A cluster-scoped object (a carrier kind's) has no namespace Report to go in:
    /// its violations are still Events and gauges, as `reports_of` leaves it out of the CLI's.
    pub fn put(&mut self, results: ObjectResults) {
        if results.namespace.is_empty() {
            return;
        }
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

    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &report_resource())
    }

    async fn crd_present(&mut self) -> bool {
        match self.crd {
            Crd::Present => return true,
            Crd::Absent(since) if since.elapsed() < CRD_RECHECK => return false,
            _ => {}
        }
        let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &report_resource());
        match all.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                if self.crd != Crd::Unknown {
                    info!("audit: the OpenReports CRD is installed now; writing reports");
                }
                self.crd = Crd::Present;
                true
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                if self.crd == Crd::Unknown {
                    info!(
                        "audit: the OpenReports CRD (reports.openreports.io) is not installed; no reports are written until it is"
                    );
                }
                self.crd = Crd::Absent(Instant::now());
                false
            }
            Err(e) => {
                warn!(error = %e, "audit: cannot tell whether the OpenReports CRD is installed");
                false
            }
        }
    }

    /// Writes the Reports of the namespaces whose results changed.
    pub async fn flush(&mut self) {
        if self.dirty.is_empty() || !self.crd_present().await {
            return;
        }
        for namespace in std::mem::take(&mut self.dirty) {
            if let Err(e) = self.write(&namespace).await {
                if let kube::Error::Api(status) = &e
                    && status.code == 404
                    && status.details.is_none()
                {
                    // The CRD went away: look again later.
                    self.crd = Crd::Unknown;
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
