//! The in-cluster audit (`serve --audit`): one replica at a time holds a Lease and does the
//! writing. It watches ConfigMaps, AsyncAPI resources and the configured carrier kinds,
//! writes the `SecurityCompliant` condition of each AsyncAPI resource, emits an Event on
//! each other non-compliant object and on each unguarded ConfigMap, and exports the
//! violations as gauges. It writes only what changed, backs off on API errors, and never
//! stands in the way of admission: it runs beside it and only retries.
//!
//! Watches keep a small summary per object, not the objects: a cluster's ConfigMaps can be
//! large, and the webhook's memory should not grow with them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event as EventObject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{info, warn};

use super::list::namespace_labels;
use super::report_writer::ReportWriter;
use super::reports::ObjectResults;
use super::resources::{
    AuditedResource, audited_resources, built_in, resource_name, still_configured,
};
use super::status::{desired_condition, object_event};
use super::{Audited, NamespaceLabels, asyncapi_resource};
use crate::engine::finding::RuleId;
use crate::kubernetes::raw_object::RawObject;
use crate::service::metrics::ViolationLabels;
use crate::service::state::ActiveConfig;
use crate::service::{Shared, Shutdown};

/// The Events' reporting controller: a new leader finds its predecessor's by it.
const REPORTING_CONTROLLER: &str = "asyncapi-guard";
/// The Lease lasts this long without renewal, and is renewed this long before it ends. A
/// follower waits at most the duration after a release: short enough for a handover within
/// seconds of a SIGTERM, long enough that a renewal every two seconds is no load.
const LEASE_SECONDS: u64 = 4;
const LEASE_GRACE_SECONDS: u64 = 2;
/// How often changed reports are written.
const REPORT_FLUSH: Duration = Duration::from_secs(2);

pub const FIELD_MANAGER: &str = "asyncapi-guard-audit";

#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The Lease, in `namespace`, that elects the replica that writes.
    pub lease: String,
    pub namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// Everything is re-judged this often, and whenever the configuration changes.
    pub resync: Duration,
    /// Keep an OpenReports `Report` per namespace and a `ClusterReport` (when their CRDs are
    /// installed).
    pub reports: bool,
}

/// Runs the audit on a thread of its own for the life of the server: its retries against an
/// unreachable API server can never take time from admission requests. The thread ends once
/// `shutdown` is cancelled and the Lease is released.
pub fn spawn(
    config: kube::Config,
    state: Shared,
    settings: AuditSettings,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("audit".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return warn!(error = %e, "audit: cannot start its runtime"),
            };
            runtime.block_on(async move {
                match Client::try_from(config) {
                    Ok(client) => run(client, state, settings, shutdown).await,
                    Err(e) => warn!(error = %e, "audit: cannot make a Kubernetes client"),
                }
            });
        })
}

/// Leads when this replica holds the Lease; waits otherwise. On shutdown it stops, and
/// releases the Lease so that another replica takes over at once rather than when it expires.
pub async fn run(client: Client, state: Shared, settings: AuditSettings, shutdown: Shutdown) {
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &settings.lease)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(e) => {
                warn!(error = %e, "audit: cannot set up the lease; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(10)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    let (mut leading, lease_task) = manager.watch().await;
    'terms: loop {
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { break 'terms },
                () = shutdown.cancelled() => break 'terms,
            }
        }
        info!(identity = %settings.identity, "audit: this replica holds the lease and audits the cluster");
        let mut auditor = Auditor::new(client.clone(), state.clone(), &settings);
        let stopping = tokio::select! {
            () = auditor.lead(&settings) => false,
            () = async { while *leading.borrow_and_update() { if leading.changed().await.is_err() { break; } } } => false,
            () = shutdown.cancelled() => true,
        };
        auditor.forget_all();
        if stopping {
            break;
        }
        info!("audit: lease lost; another replica audits");
    }
    // The lease task releases the Lease when its last receiver is gone.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(3), lease_task).await {
        Ok(Ok(Ok(_))) => info!("audit: lease released"),
        Ok(Ok(Err(e))) => warn!(error = %e, "audit: cannot release the lease; it will expire"),
        Ok(Err(_)) | Err(_) => warn!("audit: the lease was not released in time; it will expire"),
    }
}

/// What the audit remembers of one object.
#[derive(Debug, Default, Clone)]
struct Summary {
    namespace: String,
    violations: Vec<RuleId>,
    /// The note of the last Event emitted for it, so that an unchanged verdict is not repeated.
    last_event: Option<String>,
    /// Not seen again since the watch restarted: deleted while no one was watching.
    stale: bool,
}

pub struct Auditor {
    client: Client,
    state: Shared,
    namespaces: NamespaceLabels,
    /// The last Event note asyncapi-guard emitted per object uid, as found at the start of
    /// the leadership: a new leader does not repeat its predecessor's Events.
    emitted: HashMap<String, String>,
    reports: Option<ReportWriter>,
    recorder: Recorder,
    /// By resource (its plural and group, [`resource_name`]) and object uid.
    objects: HashMap<(String, String), Summary>,
    counts: BTreeMap<(String, RuleId), i64>,
    /// What the last discovery found: what is watched when the next one fails.
    discovered: Vec<AuditedResource>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("objects", &self.objects.len())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    pub fn new(client: Client, state: Shared, settings: &AuditSettings) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance: Some(settings.identity.clone()),
        };
        let reports = settings
            .reports
            .then(|| ReportWriter::new(client.clone(), FIELD_MANAGER));
        Auditor {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            state,
            namespaces: NamespaceLabels::default(),
            emitted: HashMap::new(),
            reports,
            objects: HashMap::new(),
            counts: BTreeMap::new(),
            discovered: built_in(),
        }
    }

    /// The Events asyncapi-guard already emitted, newest last: what a new leader must not
    /// emit again while the verdict stays the same.
    pub async fn remember_emitted_events(&mut self) {
        let api: Api<EventObject> = Api::all(self.client.clone());
        let mut params = ListParams::default().limit(500);
        let mut found: HashMap<String, (Option<Timestamp>, String)> = HashMap::new();
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(e) => {
                    warn!(error = %e, "audit: cannot list past Events; unchanged verdicts may be reported again");
                    return;
                }
            };
            for event in &page.items {
                if event.reporting_controller.as_deref() != Some(REPORTING_CONTROLLER) {
                    continue;
                }
                let (Some(uid), Some(note)) = (
                    event.regarding.as_ref().and_then(|r| r.uid.clone()),
                    event.note.clone(),
                ) else {
                    continue;
                };
                let when = event
                    .series
                    .as_ref()
                    .map(|s| s.last_observed_time.0)
                    .or(event.event_time.as_ref().map(|t| t.0))
                    .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
                match found.get(&uid) {
                    Some((seen, _)) if *seen >= when => {}
                    _ => {
                        found.insert(uid, (when, note));
                    }
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        self.emitted = found
            .into_iter()
            .map(|(uid, (_, note))| (uid, note))
            .collect();
    }

    /// Watches and judges until the lease is lost (the caller drops this future).
    async fn lead(&mut self, settings: &AuditSettings) {
        self.remember_emitted_events().await;
        loop {
            let config = self.state.config.load_full();
            match namespace_labels(&self.client, None, 500).await {
                Ok(labels) => self.namespaces = labels,
                Err(e) => {
                    warn!(error = %e, "audit: cannot list namespaces; their last known labels apply")
                }
            }
            // Carriers are discovered again at every re-audit: a CRD installed after the
            // server started is audited from the next one.
            let resources = match audited_resources(&self.client, &config.kubernetes).await {
                Ok(found) => {
                    for reason in &found.skipped {
                        warn!(reason = %reason, "audit: a configured kind is not audited");
                    }
                    self.discovered = found.resources.clone();
                    found.resources
                }
                Err(e) => {
                    warn!(error = %e, "audit: cannot discover the configured kinds; auditing the kinds found last until the next re-audit");
                    still_configured(&self.discovered, &config.kubernetes)
                }
            };
            // What is no longer watched (a kind taken out of the configuration, a CRD gone)
            // leaves the gauges and reports now, not never.
            let watched: HashSet<String> = resources.iter().map(|r| r.name()).collect();
            let unwatched: Vec<_> = self
                .objects
                .keys()
                .filter(|(of, _)| !watched.contains(of))
                .cloned()
                .collect();
            for key in unwatched {
                self.forget(&key);
            }
            let objects = resources.into_iter().map(|audited| {
                let resource = audited.resource;
                let api: Api<RawObject> = Api::all_with(self.client.clone(), &resource);
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .map(move |event| (resource.clone(), event))
                    .boxed()
            });
            let mut events = futures::stream::select_all(objects);
            let namespace_api: Api<Namespace> = Api::all(self.client.clone());
            let mut namespace_events = watcher(namespace_api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let deadline = tokio::time::sleep(settings.resync);
            tokio::pin!(deadline);
            let mut config_check = tokio::time::interval(Duration::from_secs(5));
            // Reports are written in batches: one write per namespace per change burst.
            let mut report_flush = tokio::time::interval(REPORT_FLUSH);
            loop {
                tokio::select! {
                    next = events.next() => match next {
                        Some((resource, Ok(event))) => self.on_event(&config, &resource, event).await,
                        // The watcher backs off and resumes on its own.
                        Some((resource, Err(e))) => warn!(resource = %resource_name(&resource), error = %e, "audit: watch error"),
                        None => break,
                    },
                    next = namespace_events.next() => match next {
                        Some(Ok(watcher::Event::Apply(namespace) | watcher::Event::InitApply(namespace))) => {
                            // New labels can change the mode of every object of the namespace.
                            if self.namespaces.insert(&namespace) {
                                info!(namespace = %namespace.name_any(), "audit: namespace labels changed; re-auditing");
                                break;
                            }
                        }
                        Some(Ok(watcher::Event::Delete(namespace))) => self.namespaces.remove(&namespace.name_any()),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => warn!(error = %e, "audit: namespace watch error"),
                        None => break,
                    },
                    () = &mut deadline => {
                        info!("audit: periodic re-audit");
                        break;
                    }
                    _ = report_flush.tick() => {
                        if let Some(reports) = &mut self.reports {
                            reports.flush().await;
                        }
                    }
                    _ = config_check.tick() => {
                        if !Arc::ptr_eq(&config, &self.state.config.load_full()) {
                            info!("audit: configuration changed; re-auditing");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One event of a watch: judges what was applied, forgets what was deleted, and after a
    /// relist forgets what did not come back.
    pub async fn on_event(
        &mut self,
        config: &ActiveConfig,
        resource: &ApiResource,
        event: watcher::Event<RawObject>,
    ) {
        match event {
            watcher::Event::Init => {
                let name = resource_name(resource);
                for ((of, _), summary) in &mut self.objects {
                    if *of == name {
                        summary.stale = true;
                    }
                }
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                self.audit(config, resource, &object).await;
            }
            watcher::Event::Delete(object) => {
                let key = (resource_name(resource), object.uid().unwrap_or_default());
                self.forget(&key);
            }
            watcher::Event::InitDone => {
                let name = resource_name(resource);
                let stale: Vec<_> = self
                    .objects
                    .iter()
                    .filter(|((of, _), s)| *of == name && s.stale)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in stale {
                    self.forget(&key);
                }
            }
        }
    }

    /// Judges one object and writes what changed.
    pub async fn audit(
        &mut self,
        config: &ActiveConfig,
        resource: &ApiResource,
        object: &RawObject,
    ) {
        let namespace_labels = self.namespaces.of(object.namespace().as_deref());
        let exceptions = self.state.exceptions.load();
        let audited = Audited::judge(
            &config.judge(&exceptions, Timestamp::now()),
            resource,
            object,
            namespace_labels,
        );
        let key = (resource_name(resource), object.uid().unwrap_or_default());
        // An object that no longer carries a document leaves the report through `forget`.
        if let Some(reports) = &mut self.reports
            && audited.carries_documents()
        {
            if audited.guarded() {
                reports.put(ObjectResults::of(&audited));
            } else {
                reports.remove(audited.id.namespace.as_deref().unwrap_or_default(), &key.1);
            }
        }
        if !audited.carries_documents() {
            self.forget(&key);
            return;
        }
        let mut summary = self.objects.get(&key).cloned().unwrap_or_else(|| Summary {
            // What a predecessor emitted counts as emitted: no repeat after a leader change.
            last_event: self.emitted.get(&key.1).cloned(),
            ..Summary::default()
        });
        summary.stale = false;
        summary.namespace = object.namespace().unwrap_or_default();
        let violations: Vec<RuleId> = audited.violations().map(|(_, f)| f.rule).collect();
        self.count(&summary.namespace, &summary.violations, -1);
        self.count(&summary.namespace, &violations, 1);
        summary.violations = violations;

        if audited.id.is_asyncapi_resource() {
            let current = current_conditions(object);
            let condition = desired_condition(
                &audited,
                &current,
                object.meta().generation,
                Timestamp::now(),
            );
            if let Some(condition) = condition
                && let Err(e) = write_condition(&self.client, object, &condition).await
            {
                warn!(object = %audited.id, error = %e, "audit: cannot write the status; will retry at the next re-audit");
            }
        } else {
            let event = object_event(&audited);
            let note = event.as_ref().and_then(|e| e.note.clone());
            if let Some(event) = event.filter(|_| note != summary.last_event) {
                match publish_event(&self.recorder, resource, object, &event).await {
                    Ok(()) => summary.last_event = note,
                    Err(e) => {
                        warn!(object = %audited.id, error = %e, "audit: cannot emit the event; will retry at the next re-audit")
                    }
                }
            } else if note.is_none() {
                summary.last_event = None;
            }
        }
        self.objects.insert(key, summary);
    }

    fn forget(&mut self, key: &(String, String)) {
        if let Some(summary) = self.objects.remove(key) {
            self.count(&summary.namespace, &summary.violations, -1);
            if let Some(reports) = &mut self.reports {
                reports.remove(&summary.namespace, &key.1);
            }
        }
    }

    fn forget_all(&mut self) {
        self.objects.clear();
        self.counts.clear();
        self.state.metrics.audit_violations.clear();
    }

    /// Keeps the gauges equal to the current violations, by namespace and rule.
    fn count(&mut self, namespace: &str, rules: &[RuleId], delta: i64) {
        for rule in rules {
            let key = (namespace.to_owned(), *rule);
            let count = self.counts.entry(key.clone()).or_insert(0);
            *count += delta;
            let labels = ViolationLabels {
                namespace: namespace.to_owned(),
                rule: rule.to_string(),
            };
            if *count <= 0 {
                self.counts.remove(&key);
                self.state.metrics.audit_violations.remove(&labels);
            } else {
                self.state
                    .metrics
                    .audit_violations
                    .get_or_create(&labels)
                    .set(*count);
            }
        }
    }
}

/// The conditions an `AsyncAPI`'s status holds; none when it has no status or a status
/// of another shape (it is rewritten with ours then).
fn current_conditions(object: &RawObject) -> Vec<Condition> {
    #[derive(serde::Deserialize)]
    struct Status {
        #[serde(default)]
        conditions: Vec<Condition>,
    }
    object
        .status()
        .and_then(|status| serde_json::from_str::<Status>(status).ok())
        .map(|status| status.conditions)
        .unwrap_or_default()
}

/// How many times a write is tried before it waits for the next re-audit.
const ATTEMPTS: u32 = 4;

fn retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}

async fn with_backoff<T>(
    mut call: impl AsyncFnMut() -> Result<T, kube::Error>,
) -> Result<T, kube::Error> {
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Server-side apply of our one condition (the list is keyed by type: other conditions stay).
pub async fn write_condition(
    client: &Client,
    object: &RawObject,
    condition: &Condition,
) -> Result<(), kube::Error> {
    let resource = asyncapi_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &object.namespace().unwrap_or_default(),
        &resource,
    );
    let patch = serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": {
            "observedGeneration": object.meta().generation,
            "conditions": [condition],
        },
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let name = object.name_any();
    with_backoff(|| async {
        api.patch_status(&name, &params, &Patch::Apply(&patch))
            .await
            .map(|_| ())
    })
    .await
}

pub async fn publish_event(
    recorder: &Recorder,
    resource: &ApiResource,
    object: &RawObject,
    event: &Event,
) -> Result<(), kube::Error> {
    let reference = object.object_ref(resource);
    with_backoff(|| recorder.publish(event, &reference)).await
}

/// For tests of a single audit pass: judges `object` with `state`'s configuration.
pub async fn audit_once(
    client: Client,
    state: Shared,
    resource: &ApiResource,
    object: &RawObject,
) -> Vec<(String, String, i64)> {
    let settings = AuditSettings {
        lease: String::new(),
        namespace: String::new(),
        identity: "test".to_owned(),
        resync: Duration::from_secs(600),
        reports: false,
    };
    let config = state.config.load_full();
    let mut auditor = Auditor::new(client, state, &settings);
    auditor.audit(&config, resource, object).await;
    auditor
        .counts
        .iter()
        .map(|((namespace, rule), count)| (namespace.clone(), rule.to_string(), *count))
        .collect()
}
