//! The in-cluster audit (`serve --audit`): one replica at a time holds a Lease and does the
//! writing. It watches the namespaces, ConfigMaps, AsyncAPI resources and the configured
//! carrier kinds; writes the `SecurityCompliant` condition of each AsyncAPI resource, an
//! Event on each other non-compliant object and on each unguarded ConfigMap, one OpenReports
//! Report per namespace, and each exception's status; and exports the violations as gauges.
//!
//! - Nothing is written from a partial view: after a start, a leader change or a re-list,
//!   writes wait until the first list of every watched kind, of the namespaces and of the
//!   exceptions has completed (kube-runtime's reflector discipline).
//! - A restart with nothing changed writes nothing: the Reports' digests, the Events already
//!   emitted and the statuses are read once (lists, never a read per object) and compared
//!   with what would be written.
//! - Writes go through a queue ([`super::writes`]) beside the watch loop, never in it.
//! - What it keeps per object is small ([`super::book`]), never the object.
//! - A failed watch lists again at once ([`crate::service::watch`]), so the audit is
//!   current within seconds of the API server's return; `asyncapi_guard_audit_watch_up`
//!   shows the outage and the recovery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::api::events::v1::Event as EventObject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{debug, info, warn};

use super::book::{Book, GaugeChanges, KindIndex, Kinds, Owed, Uid, note_hash};
use super::events::{self, Notice, REPORTING_CONTROLLER};
use super::reports::{self, digest_of, namespace_report};
use super::resources::{AuditedResource, audited_resources, built_in, still_configured};
use super::status::{desired_condition, exception_status, expired_note, object_event};
use super::writes::{Outcome, Target, Writes, outcome_of};
use super::{Audited, NamespaceLabels};
use crate::kubernetes::exceptions::{Exception, ExceptionSet, ExceptionState, exception_resource};
use crate::kubernetes::raw_object::RawObject;
use crate::service::metrics::ViolationLabels;
use crate::service::state::ActiveConfig;
use crate::service::watch::relisting;
use crate::service::{Shared, Shutdown};

/// The Lease lasts this long without renewal, and is renewed this long before it ends. A
/// follower waits at most the duration after a release: short enough for a handover within
/// seconds of a SIGTERM, long enough that a renewal every two seconds is no load.
const LEASE_SECONDS: u64 = 4;
const LEASE_GRACE_SECONDS: u64 = 2;
/// How often the configuration, the exceptions and their clock are looked at.
const TICK: Duration = Duration::from_secs(1);
/// How long a missing OpenReports CRD is believed missing.
const CRD_RECHECK: Duration = Duration::from_secs(60);

/// The field manager of the statuses the audit writes (one for every replica: only the
/// leader writes, and a status must stay owned by one manager across leaders).
pub const FIELD_MANAGER: &str = "asyncapi-guard-audit";

/// The Lease's field manager for `identity`: one per replica. Taking a free Lease relies on
/// server-side apply conflicts, which never arise between two clients sharing a manager:
/// with one manager, two replicas starting together could both take the Lease.
pub fn lease_field_manager(identity: &str) -> String {
    let mut manager = format!("{FIELD_MANAGER}-lease-{identity}");
    // The API server takes at most 128 characters.
    manager.truncate(128);
    manager
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The Lease, in `namespace`, that elects the replica that writes.
    pub lease: String,
    pub namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// Everything is listed and judged again this often, and whenever the configuration
    /// or a namespace's labels change.
    pub resync: Duration,
    /// Keep an OpenReports `Report` per namespace and a `ClusterReport` (when their CRDs are
    /// installed).
    pub reports: bool,
    /// The Deployment that owns the Lease (uninstalling deletes it).
    pub owner_deployment: Option<String>,
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
    if let Some(deployment) = &settings.owner_deployment {
        let owner =
            crate::service::owner::deployment(&client, &settings.namespace, deployment).await;
        if let Some(owner) = owner
            && let Err(e) = own_lease(&client, &settings, owner).await
        {
            warn!(error = %e, "audit: cannot give the Lease its owner; it will outlive an uninstall");
        }
    }
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &settings.lease)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .with_field_manager(lease_field_manager(&settings.identity))
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
        state.metrics.audit_leader.set(1);
        let mut auditor = Auditor::new(client.clone(), state.clone(), settings.clone());
        let stopping = tokio::select! {
            () = auditor.lead() => false,
            () = async { while *leading.borrow_and_update() { if leading.changed().await.is_err() { break; } } } => false,
            () = shutdown.cancelled() => true,
        };
        auditor.forget_all();
        state.metrics.audit_leader.set(0);
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

/// Creates the Lease owned by the Deployment (or gives an existing one its owner), before
/// the lease manager uses it: uninstalling deletes the Deployment, and so the Lease.
async fn own_lease(
    client: &Client,
    settings: &AuditSettings,
    owner: OwnerReference,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(settings.lease.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..kube::api::ObjectMeta::default()
        },
        spec: None,
    };
    match api.create(&kube::api::PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get(&settings.lease).await?;
            let owned = existing
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o.uid == owner.uid);
            if !owned {
                let patch = serde_json::json!({"metadata": {"ownerReferences": [owner]}});
                api.patch(
                    &settings.lease,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// What a finished write tells the book.
#[derive(Debug)]
enum Written {
    Object(Owed),
    /// The Report's digest, or `None` once deleted.
    Report(Option<String>),
    ExceptionStatus(serde_json::Value),
    ExceptionExpired,
}

/// Whether the OpenReports CRDs are there to write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crd {
    Unknown,
    Present,
    Absent(tokio::time::Instant),
}

/// One watch event, tagged with its kind (`None`: the namespaces).
type Tagged = (
    Option<KindIndex>,
    Result<watcher::Event<WatchedObject>, watcher::Error>,
);

/// What the watches deliver: a namespace, or an object of a watched kind.
#[derive(Debug, Clone)]
enum WatchedObject {
    Namespace(Box<Namespace>),
    Object(Box<RawObject>),
}

/// An object read again by name, of a watched kind.
type Fetch = BoxFuture<'static, (KindIndex, Result<Option<RawObject>, kube::Error>)>;

/// Why a run of watches ended.
enum Restart {
    Resync,
    Configuration,
    NamespaceLabels(String),
}

/// Where each watch stands.
#[derive(Debug, Clone, Copy, Default)]
struct Pass {
    /// Bumped at each list; an object not seen in the current pass is gone.
    number: u32,
    listed: bool,
    down: bool,
}

pub struct Auditor {
    client: Client,
    state: Shared,
    settings: AuditSettings,
    kinds: Kinds,
    book: Book,
    namespaces: NamespaceLabels,
    /// The namespaces of a list under way, swapped in once it is complete.
    namespaces_listing: Option<NamespaceLabels>,
    /// Namespaces being deleted: nothing more is written in them.
    terminating: HashSet<String>,
    passes: HashMap<KindIndex, Pass>,
    namespaces_pass: Pass,
    /// The kinds watched in this run.
    watched: Vec<KindIndex>,
    /// Every watch has listed and the first lists (Events, Reports) are read: writes may go.
    current: bool,
    /// The notes of the Events asyncapi-guard emitted before this leadership, by object.
    emitted: HashMap<Uid, u64>,
    /// The Reports in the cluster: their digests, by namespace (`""`: the ClusterReport).
    report_digests: HashMap<Arc<str>, String>,
    report_crd: Crd,
    /// The ClusterReport's CRD, on its own: installed with the other as a rule, but not
    /// always.
    cluster_report_crd: Crd,
    /// The exceptions the book was judged with, and where each one stood.
    exceptions: Arc<ExceptionSet>,
    exception_states: HashMap<(String, String), (Option<i64>, ExceptionState)>,
    /// The exception statuses written this leadership (the watch shows them a little later).
    exception_written: HashMap<(Arc<str>, Arc<str>), serde_json::Value>,
    writes: Writes<Written>,
    /// Objects read again by name (an exception about them changed).
    fetches: FuturesUnordered<Fetch>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("objects", &self.book.len())
            .field("current", &self.current)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl Auditor {
    pub fn new(client: Client, state: Shared, settings: AuditSettings) -> Self {
        let exceptions = state.exceptions.load_full();
        Auditor {
            client,
            state,
            settings,
            kinds: Kinds::default(),
            book: Book::default(),
            namespaces: NamespaceLabels::default(),
            namespaces_listing: None,
            terminating: HashSet::new(),
            passes: HashMap::new(),
            namespaces_pass: Pass::default(),
            watched: Vec::new(),
            current: false,
            emitted: HashMap::new(),
            report_digests: HashMap::new(),
            report_crd: Crd::Unknown,
            cluster_report_crd: Crd::Unknown,
            exceptions,
            exception_states: HashMap::new(),
            exception_written: HashMap::new(),
            writes: Writes::default(),
            fetches: FuturesUnordered::new(),
        }
    }

    /// Watches, judges and writes until the lease is lost (the caller drops this future).
    pub async fn lead(&mut self) {
        self.read_what_is_there().await;
        let mut restart: Option<Restart> = None;
        loop {
            match restart.take() {
                None => {}
                Some(Restart::Resync) => info!("audit: periodic re-audit"),
                Some(Restart::Configuration) => info!("audit: configuration changed; re-auditing"),
                Some(Restart::NamespaceLabels(namespace)) => {
                    info!(namespace = %namespace, "audit: namespace labels changed; re-auditing")
                }
            }
            restart = Some(self.audit_once().await);
        }
    }

    /// What earlier leaders left: the Events they emitted, and the Reports' digests. Read
    /// once, so that what is already there is not written again.
    async fn read_what_is_there(&mut self) {
        let mut wait = Duration::from_millis(250);
        loop {
            match remember_emitted_events(&self.client).await {
                Ok(emitted) => {
                    self.emitted = emitted;
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "audit: cannot list past Events; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        if self.settings.reports {
            self.read_report_digests().await;
        }
    }

    /// The digests of the Reports in the cluster (their metadata only). Sets whether the
    /// CRD is there; an API server out of reach is retried.
    async fn read_report_digests(&mut self) {
        let mut wait = Duration::from_millis(250);
        loop {
            match report_digests(&self.client).await {
                Ok(found) => {
                    let now = tokio::time::Instant::now();
                    for (crd, present, name) in [
                        (
                            &mut self.report_crd,
                            found.reports,
                            "reports.openreports.io",
                        ),
                        (
                            &mut self.cluster_report_crd,
                            found.cluster_reports,
                            "clusterreports.openreports.io",
                        ),
                    ] {
                        match (*crd, present) {
                            (Crd::Absent(_), true) => info!(
                                crd = name,
                                "audit: an OpenReports CRD is installed now; writing its reports"
                            ),
                            (Crd::Unknown, false) => info!(
                                crd = name,
                                "audit: an OpenReports CRD is not installed; its reports are not written until it is"
                            ),
                            _ => {}
                        }
                        *crd = if present {
                            Crd::Present
                        } else {
                            Crd::Absent(now)
                        };
                    }
                    self.report_digests = found.digests;
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "audit: cannot list the Reports; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// One run of watches: discovers the kinds, lists and watches them until a re-audit is
    /// due, judging as events come and writing (once current) what is owed.
    async fn audit_once(&mut self) -> Restart {
        let config = self.state.config.load_full();
        let resources = self.discover(&config).await;
        self.watched = resources
            .iter()
            .map(|r| self.kinds.index(&r.resource, r.namespaced))
            .collect();
        // What is no longer watched (a kind taken out of the configuration, a CRD gone)
        // leaves the gauges and reports now, not never.
        let watched = self.watched.clone();
        let (namespaces, changes) = self.book.forget_where(|e| !watched.contains(&e.kind));
        self.apply_gauges(changes);
        for namespace in namespaces {
            self.owe(Target::Report(namespace));
        }
        self.current = false;
        let mut namespace_events = relisting(
            Api::<Namespace>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .map(|event| -> Tagged {
            (
                None,
                event.map(|e| retag(e, |n| WatchedObject::Namespace(Box::new(n)))),
            )
        })
        .boxed();
        // The objects' watches start once the namespaces are listed: their labels choose the
        // mode every object is judged in.
        let mut object_events: Option<SelectAll<BoxStream<'static, Tagged>>> = None;
        let deadline = tokio::time::sleep(self.settings.resync);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if object_events.is_none() && self.namespaces_pass.listed {
                object_events = Some(self.object_watches(&resources));
            }
            self.start_writes(&config);
            let wake = self.writes.wake_at();
            tokio::select! {
                Some((_, event)) = namespace_events.next() => {
                    if let Some(restart) = self.on_namespace_event(event) {
                        return restart;
                    }
                }
                Some((Some(kind), event)) = async {
                    match &mut object_events {
                        Some(events) => events.next().await,
                        None => std::future::pending().await,
                    }
                } => self.on_object_event(&config, kind, event),
                (target, outcome) = self.writes.finished() => self.on_written(target, outcome),
                Some((kind, fetched)) = self.fetches.next(), if !self.fetches.is_empty() => {
                    match fetched {
                        Ok(Some(object)) => self.judge(&config, kind, &object),
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "audit: cannot read an object an exception names; the next re-audit judges it"),
                    }
                }
                () = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tick.tick() => {
                    if !Arc::ptr_eq(&config, &self.state.config.load_full()) {
                        return Restart::Configuration;
                    }
                    self.on_tick(&config).await;
                }
                () = &mut deadline => return Restart::Resync,
            }
        }
    }

    /// Carriers are discovered at every re-audit: a CRD installed after the server started
    /// is audited from the next one.
    async fn discover(&mut self, config: &ActiveConfig) -> Vec<AuditedResource> {
        match audited_resources(&self.client, &config.kubernetes).await {
            Ok(found) => {
                for reason in &found.skipped {
                    warn!(reason = %reason, "audit: a configured kind is not audited");
                }
                found.resources
            }
            Err(e) => {
                warn!(error = %e, "audit: cannot discover the configured kinds; auditing the kinds found last until the next re-audit");
                let last: Vec<AuditedResource> = self
                    .watched
                    .iter()
                    .filter_map(|k| self.kinds.get(*k))
                    .map(|k| AuditedResource {
                        resource: k.resource.clone(),
                        namespaced: k.namespaced,
                    })
                    .collect();
                if last.is_empty() {
                    built_in()
                } else {
                    still_configured(&last, &config.kubernetes)
                }
            }
        }
    }

    fn object_watches(
        &mut self,
        resources: &[AuditedResource],
    ) -> SelectAll<BoxStream<'static, Tagged>> {
        let mut all = SelectAll::new();
        for audited in resources {
            let kind = self.kinds.index(&audited.resource, audited.namespaced);
            self.passes.entry(kind).or_default().listed = false;
            let api: Api<RawObject> = Api::all_with(self.client.clone(), &audited.resource);
            let stream = relisting(api, watcher::Config::default())
                .map(move |event| -> Tagged {
                    (
                        Some(kind),
                        event.map(|e| retag(e, |o| WatchedObject::Object(Box::new(o)))),
                    )
                })
                .boxed();
            all.push(stream);
        }
        all
    }

    fn on_namespace_event(
        &mut self,
        event: Result<watcher::Event<WatchedObject>, watcher::Error>,
    ) -> Option<Restart> {
        let namespace_of = |object: WatchedObject| match object {
            WatchedObject::Namespace(namespace) => Some(*namespace),
            WatchedObject::Object(_) => None,
        };
        match event {
            Ok(watcher::Event::Init) => {
                self.namespaces_pass.number += 1;
                self.namespaces_pass.listed = false;
                self.namespaces_listing = Some(NamespaceLabels::default());
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let (Some(namespace), Some(listing)) =
                    (namespace_of(object), &mut self.namespaces_listing)
                {
                    listing.insert(&namespace);
                    self.note_terminating(&namespace);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let listed = self.namespaces_listing.take().unwrap_or_default();
                let relabelled = self.namespaces_pass.listed && listed != self.namespaces;
                self.namespaces = listed;
                self.namespaces_pass.listed = true;
                self.namespaces_pass.down = false;
                self.state.metrics.audit_watch_up("namespaces", true);
                if relabelled {
                    return Some(Restart::NamespaceLabels(String::new()));
                }
            }
            Ok(watcher::Event::Apply(object)) => {
                let namespace = namespace_of(object)?;
                self.note_terminating(&namespace);
                // New labels can change the mode of every object of the namespace.
                if self.namespaces.insert(&namespace) && self.namespaces_pass.listed {
                    return Some(Restart::NamespaceLabels(namespace.name_any()));
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                let namespace = namespace_of(object)?;
                let name = namespace.name_any();
                self.namespaces.remove(&name);
                self.terminating.remove(&name);
            }
            Err(e) => {
                if !self.namespaces_pass.down {
                    warn!(error = %e, "audit: the namespace watch is down; listing again");
                }
                self.namespaces_pass.down = true;
                self.state.metrics.audit_watch_up("namespaces", false);
            }
        }
        None
    }

    fn note_terminating(&mut self, namespace: &Namespace) {
        let name = namespace.name_any();
        if namespace.metadata.deletion_timestamp.is_some() {
            if self.terminating.insert(name.clone()) {
                self.writes.drop_namespace(&name);
            }
        } else {
            self.terminating.remove(&name);
        }
    }

    fn on_object_event(
        &mut self,
        config: &ActiveConfig,
        kind: KindIndex,
        event: Result<watcher::Event<WatchedObject>, watcher::Error>,
    ) {
        let object_of = |object: WatchedObject| match object {
            WatchedObject::Object(object) => Some(*object),
            WatchedObject::Namespace(_) => None,
        };
        let name = self
            .kinds
            .get(kind)
            .map(|k| k.name.clone())
            .unwrap_or_default();
        match event {
            Ok(watcher::Event::Init) => {
                let pass = self.passes.entry(kind).or_default();
                pass.number += 1;
                pass.listed = false;
                self.current = false;
            }
            Ok(watcher::Event::InitApply(object) | watcher::Event::Apply(object)) => {
                if let Some(object) = object_of(object) {
                    self.judge(config, kind, &object);
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                if let Some(object) = object_of(object) {
                    self.forget(
                        &object.namespace().unwrap_or_default(),
                        &Uid::new(&object.uid().unwrap_or_default()),
                    );
                }
            }
            Ok(watcher::Event::InitDone) => {
                let pass = self.passes.entry(kind).or_default();
                pass.listed = true;
                pass.down = false;
                let number = pass.number;
                // What did not come back was deleted while nobody watched.
                let (namespaces, changes) = self
                    .book
                    .forget_where(|e| e.kind == kind && e.seen != number);
                self.apply_gauges(changes);
                for namespace in namespaces {
                    self.owe(Target::Report(namespace));
                }
                self.state.metrics.audit_watch_up(&name, true);
                self.state.metrics.audit_relisted(&name);
                self.become_current_if_ready();
            }
            Err(e) => {
                let pass = self.passes.entry(kind).or_default();
                if !pass.down {
                    warn!(resource = %name, error = %e, "audit: a watch is down; listing again");
                }
                pass.down = true;
                self.state.metrics.audit_watch_up(&name, false);
            }
        }
    }

    /// Once every watch has listed (and the exceptions are known), every write owed is
    /// started: from now on writes follow the events.
    fn become_current_if_ready(&mut self) {
        let listed = self.namespaces_pass.listed
            && self
                .watched
                .iter()
                .all(|k| self.passes.get(k).is_some_and(|p| p.listed));
        if !listed || self.current || !self.state.health.exceptions_ready() {
            return;
        }
        self.current = true;
        // Past Events were only needed until every object was judged once.
        self.emitted = HashMap::new();
        for (namespace, uid) in self.book.owing() {
            self.writes.owe(Target::Object(namespace, uid));
        }
        let namespaces: HashSet<Arc<str>> = self
            .book
            .namespaces()
            .cloned()
            .chain(self.report_digests.keys().cloned())
            .collect();
        for namespace in namespaces {
            self.owe(Target::Report(namespace));
        }
        for exception in self.exceptions.clone().iter() {
            self.owe(Target::ExceptionStatus(
                exception.namespace.as_str().into(),
                exception.name.as_str().into(),
            ));
        }
        info!(
            objects = self.book.len(),
            "audit: every kind is listed; writing what changed"
        );
        self.state.metrics.audit_current.set(1);
    }

    /// Judges one object and records what is owed for it.
    fn judge(&mut self, config: &ActiveConfig, kind: KindIndex, object: &RawObject) {
        let Some(info) = self.kinds.get(kind).cloned() else {
            return;
        };
        let namespace = object.namespace().unwrap_or_default();
        let uid = Uid::new(&object.uid().unwrap_or_default());
        let labels = self.namespaces.of(object.namespace().as_deref()).clone();
        let now = Timestamp::now();
        let audited = Audited::judge(
            &config.judge(&self.exceptions, now),
            &info.resource,
            object,
            &labels,
        );
        if !audited.carries_documents() {
            self.forget(&namespace, &uid);
            return;
        }
        let previous = self.book.get(&namespace, &uid).cloned();
        let previous_emitted = previous
            .as_ref()
            .map(|p| p.emitted)
            .or_else(|| self.emitted.get(&uid).copied())
            .unwrap_or(0);
        let (owed, emitted) = if info.has_status {
            let condition = desired_condition(
                &audited,
                &current_conditions(object),
                object.meta().generation,
                now,
            );
            (
                condition.map(|c| Owed::Condition(Box::new(c), object.meta().generation)),
                0,
            )
        } else {
            match object_event(&audited) {
                Some(event) if note_hash(&event.note) != previous_emitted => (
                    Some(Owed::Event {
                        reason: event.reason,
                        note: event.note.into(),
                    }),
                    previous_emitted,
                ),
                Some(_) => (None, previous_emitted),
                // Compliant now: a later failure is worth an Event again, even the same one.
                None => (None, 0),
            }
        };
        let pass = self.passes.get(&kind).map_or(0, |p| p.number);
        let owes = owed.is_some();
        let (namespace, changes) = self.book.put(kind, &audited, pass, Some(emitted), owed);
        self.apply_gauges(changes);
        let entry = self.book.get(&namespace, &uid).cloned();
        let report_changed = match (&previous, &entry) {
            (Some(before), Some(now)) => {
                before.guarded != now.guarded
                    || before.findings != now.findings
                    || before.name != now.name
            }
            _ => true,
        };
        if owes {
            self.owe(Target::Object(namespace.clone(), uid.clone()));
        }
        if report_changed {
            self.owe(Target::Report(namespace.clone()));
        }
        // The exceptions that cover (or covered) its findings count them again.
        let mut covering: HashSet<Arc<str>> = HashSet::new();
        for waived in [previous.map(|p| p.waived), entry.map(|e| e.waived)]
            .into_iter()
            .flatten()
        {
            covering.extend(waived.iter().map(|(by, _)| by.clone()));
        }
        for by in covering {
            if let Some((ns, name)) = by.split_once('/') {
                self.owe(Target::ExceptionStatus(ns.into(), name.into()));
            }
        }
    }

    fn forget(&mut self, namespace: &str, uid: &Uid) {
        if let Some((entry, changes)) = self.book.remove(namespace, uid) {
            self.apply_gauges(changes);
            if entry.guarded {
                self.owe(Target::Report(namespace.into()));
            }
            for (by, _) in entry.waived.iter() {
                if let Some((ns, name)) = by.split_once('/') {
                    self.owe(Target::ExceptionStatus(ns.into(), name.into()));
                }
            }
        }
    }

    /// Queues a write, unless its namespace is being deleted. Held until the audit is
    /// current: the queue only starts what `start_writes` lets through.
    fn owe(&mut self, target: Target) {
        if !self.terminating.contains(target.namespace()) {
            self.writes.owe(target);
        }
    }

    /// Starts the writes that may start: none before the audit is current.
    fn start_writes(&mut self, config: &ActiveConfig) {
        if !self.current {
            return;
        }
        let Auditor {
            writes,
            book,
            kinds,
            client,
            settings,
            report_digests,
            report_crd,
            cluster_report_crd,
            exceptions,
            exception_written,
            ..
        } = self;
        writes.dispatch(|target| match target {
            Target::Object(namespace, uid) => {
                let entry = book.get(namespace, uid)?;
                let owed = entry.owed.clone()?;
                let kind = kinds.get(entry.kind)?;
                Some(write_object(
                    client.clone(),
                    settings.identity.clone(),
                    &kind.resource,
                    namespace,
                    uid,
                    &entry.name,
                    owed,
                ))
            }
            Target::Report(namespace) => {
                let crd = if namespace.is_empty() {
                    *cluster_report_crd
                } else {
                    *report_crd
                };
                if !settings.reports || crd != Crd::Present {
                    return None;
                }
                let objects = book.report_objects(namespace, kinds);
                let current = report_digests.get(namespace);
                if objects.is_empty() {
                    current?;
                    return Some(delete_report(client.clone(), namespace.clone()));
                }
                let report = namespace_report(namespace, &objects);
                let digest = digest_of(&report).map(str::to_owned);
                if digest.as_ref() == current {
                    return None;
                }
                Some(apply_report(
                    client.clone(),
                    namespace.clone(),
                    report,
                    digest,
                ))
            }
            Target::ExceptionStatus(namespace, name) => {
                let exception = exceptions
                    .iter()
                    .find(|e| *e.namespace == **namespace && *e.name == **name)?;
                let covered = book
                    .covered()
                    .get(exception.by().as_str())
                    .copied()
                    .unwrap_or(0);
                let desired = exception_status(
                    exception,
                    &config.exceptions,
                    &config.kubernetes,
                    Timestamp::now(),
                    covered,
                );
                let written = exception_written.get(&(namespace.clone(), name.clone()));
                if super::status::same_exception_status(exception.status.as_ref(), &desired)
                    || written == Some(&desired)
                {
                    return None;
                }
                Some(write_exception_status(
                    client.clone(),
                    exception.clone(),
                    desired,
                ))
            }
            Target::ExceptionExpired(namespace, name) => {
                let exception = exceptions
                    .iter()
                    .find(|e| *e.namespace == **namespace && *e.name == **name)?;
                let notice = Notice {
                    regarding: exception_reference(exception),
                    type_: "Warning",
                    reason: "Expired",
                    note: expired_note(exception),
                };
                let (client, identity) = (client.clone(), settings.identity.clone());
                Some(
                    async move {
                        match events::publish(&client, &identity, &notice).await {
                            Ok(()) => Outcome::Done(Written::ExceptionExpired),
                            Err(e) => outcome_of(&e),
                        }
                    }
                    .boxed(),
                )
            }
        });
        let (queued, in_flight) = self.writes.len();
        self.state
            .metrics
            .audit_pending_writes
            .set(i64::try_from(queued + in_flight).unwrap_or(i64::MAX));
    }

    fn on_written(&mut self, target: Target, outcome: Outcome<Written>) {
        self.state
            .metrics
            .audit_written(target.kind(), outcome_label(&outcome));
        match (target, outcome) {
            (Target::Object(namespace, uid), Outcome::Done(Written::Object(written))) => {
                if let Some(entry) = self.book.get_mut(&namespace, &uid) {
                    if let Owed::Event { note, .. } = &written {
                        entry.emitted = note_hash(note);
                    }
                    if entry.owed.as_ref() == Some(&written) {
                        entry.owed = None;
                    }
                }
            }
            (Target::Report(namespace), Outcome::Done(Written::Report(digest))) => match digest {
                Some(digest) => {
                    self.report_digests.insert(namespace, digest);
                }
                None => {
                    self.report_digests.remove(&namespace);
                }
            },
            (
                Target::ExceptionStatus(namespace, name),
                Outcome::Done(Written::ExceptionStatus(status)),
            ) => {
                self.exception_written.insert((namespace, name), status);
            }
            (_, Outcome::Skipped) => {}
            (Target::Report(namespace), Outcome::Dropped(why)) if why.contains("(404)") => {
                // The CRD went away (a plain 404), or the namespace did: look again later.
                self.report_digests.remove(&namespace);
                if !why.contains("not found") {
                    let crd = if namespace.is_empty() {
                        &mut self.cluster_report_crd
                    } else {
                        &mut self.report_crd
                    };
                    *crd = Crd::Absent(tokio::time::Instant::now());
                }
            }
            (target, Outcome::Terminating) => {
                let namespace = target.namespace().to_owned();
                if self.terminating.insert(namespace.clone()) {
                    info!(namespace = %namespace, "audit: the namespace is being deleted; nothing more is written in it");
                }
                self.writes.drop_namespace(&namespace);
            }
            (target, Outcome::Dropped(why)) => {
                if !why.contains("404") {
                    warn!(target = ?target, error = %why, "audit: a write was refused");
                }
                if let Target::Object(namespace, uid) = target
                    && let Some(entry) = self.book.get_mut(&namespace, &uid)
                {
                    entry.owed = None;
                }
            }
            (target, Outcome::Retry { why, .. }) => {
                debug!(target = ?target, error = %why, "audit: a write will be tried again");
            }
            (target, Outcome::Done(_)) => debug!(target = ?target, "audit: written"),
        }
    }

    /// Every second: the exceptions (changed, or changed state with the clock), and the
    /// OpenReports CRD when it was missing.
    async fn on_tick(&mut self, config: &ActiveConfig) {
        let latest = self.state.exceptions.load_full();
        let now = Timestamp::now();
        let mut targets: HashSet<(String, String, String)> = HashSet::new();
        let mut seen = HashSet::new();
        for exception in latest.iter() {
            let key = (exception.namespace.clone(), exception.name.clone());
            let state = exception.state(&config.exceptions, &config.kubernetes, now);
            let stand = (exception.generation, state);
            let before = self.exception_states.insert(key.clone(), stand);
            seen.insert(key.clone());
            if before == Some(stand) && Arc::ptr_eq(&latest, &self.exceptions) {
                continue;
            }
            if before != Some(stand) {
                if let Ok(terms) = &exception.terms {
                    let t = &terms.target;
                    targets.insert((t.kind.clone(), t.namespace.clone(), t.name.clone()));
                }
                if state == ExceptionState::Expired
                    && before.is_some_and(|(_, s)| s != ExceptionState::Expired)
                {
                    self.owe(Target::ExceptionExpired(
                        key.0.as_str().into(),
                        key.1.as_str().into(),
                    ));
                }
            }
            self.owe(Target::ExceptionStatus(
                key.0.as_str().into(),
                key.1.as_str().into(),
            ));
        }
        // Deleted exceptions: what they named is judged again without them.
        for exception in self.exceptions.iter() {
            if !seen.contains(&(exception.namespace.clone(), exception.name.clone()))
                && let Ok(terms) = &exception.terms
            {
                let t = &terms.target;
                targets.insert((t.kind.clone(), t.namespace.clone(), t.name.clone()));
            }
        }
        self.exception_states.retain(|key, _| seen.contains(key));
        self.exceptions = latest;
        for (kind, namespace, name) in targets {
            self.fetch(&kind, &namespace, &name);
        }
        let due = |crd: Crd| matches!(crd, Crd::Absent(since) if since.elapsed() > CRD_RECHECK);
        if self.settings.reports && (due(self.report_crd) || due(self.cluster_report_crd)) {
            self.read_report_digests().await;
            if self.report_crd == Crd::Present {
                let namespaces: Vec<Arc<str>> = self.book.namespaces().cloned().collect();
                for namespace in namespaces {
                    self.owe(Target::Report(namespace));
                }
            }
        }
    }

    /// Reads one object again (an exception about it changed) and judges it when it comes.
    fn fetch(&mut self, kind: &str, namespace: &str, name: &str) {
        let Some(index) = self.watched.iter().copied().find(|k| {
            self.kinds
                .get(*k)
                .is_some_and(|info| info.resource.kind == kind)
        }) else {
            return;
        };
        let Some(info) = self.kinds.get(index) else {
            return;
        };
        let api: Api<RawObject> = if info.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &info.resource)
        } else {
            Api::all_with(self.client.clone(), &info.resource)
        };
        let name = name.to_owned();
        self.fetches
            .push(async move { (index, api.get_opt(&name).await) }.boxed());
    }

    fn apply_gauges(&self, changes: GaugeChanges) {
        for (namespace, rule, count) in changes {
            let labels = ViolationLabels {
                namespace: namespace.to_string(),
                rule: rule.to_string(),
            };
            if count <= 0 {
                self.state.metrics.audit_violations.remove(&labels);
            } else {
                self.state
                    .metrics
                    .audit_violations
                    .get_or_create(&labels)
                    .set(count);
            }
        }
    }

    fn forget_all(&mut self) {
        for (namespace, rule) in self.book.clear() {
            self.state
                .metrics
                .audit_violations
                .remove(&ViolationLabels {
                    namespace: namespace.to_string(),
                    rule: rule.to_string(),
                });
        }
        self.state.metrics.audit_current.set(0);
        self.state.metrics.audit_pending_writes.set(0);
    }
}

/// The same event, about `f(object)`.
fn retag<K, T>(event: watcher::Event<K>, f: impl Fn(K) -> T) -> watcher::Event<T> {
    match event {
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(f(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
        watcher::Event::Apply(object) => watcher::Event::Apply(f(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(f(object)),
    }
}

fn outcome_label<T>(outcome: &Outcome<T>) -> &'static str {
    match outcome {
        Outcome::Done(_) => "written",
        Outcome::Skipped => "skipped",
        Outcome::Retry { .. } => "retry",
        Outcome::Terminating => "terminating",
        Outcome::Dropped(_) => "dropped",
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

fn reference(resource: &ApiResource, namespace: &str, name: &str, uid: &Uid) -> ObjectReference {
    ObjectReference {
        api_version: Some(resource.api_version.clone()),
        kind: Some(resource.kind.clone()),
        name: Some(name.to_owned()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        uid: Some(uid.to_string()),
        ..ObjectReference::default()
    }
}

fn exception_reference(exception: &Exception) -> ObjectReference {
    let resource = exception_resource();
    ObjectReference {
        api_version: Some(resource.api_version),
        kind: Some(resource.kind),
        name: Some(exception.name.clone()),
        namespace: Some(exception.namespace.clone()),
        uid: Some(exception.uid.clone()),
        ..ObjectReference::default()
    }
}

/// The status condition (by server-side apply: the list is keyed by type, other
/// conditions stay) or the Event an object is owed.
fn write_object(
    client: Client,
    identity: String,
    resource: &ApiResource,
    namespace: &str,
    uid: &Uid,
    name: &str,
    owed: Owed,
) -> BoxFuture<'static, Outcome<Written>> {
    let resource = resource.clone();
    let (namespace, name, uid) = (namespace.to_owned(), name.to_owned(), uid.clone());
    async move {
        let result = match &owed {
            Owed::Condition(condition, generation) => {
                let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
                let patch = serde_json::json!({
                    "apiVersion": resource.api_version,
                    "kind": resource.kind,
                    "status": {"observedGeneration": generation, "conditions": [condition]},
                });
                api.patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .map(|_| ())
            }
            Owed::Event { reason, note } => {
                let notice = Notice {
                    regarding: reference(&resource, &namespace, &name, &uid),
                    type_: "Warning",
                    reason,
                    note: note.to_string(),
                };
                events::publish(&client, &identity, &notice).await
            }
        };
        match result {
            Ok(()) => Outcome::Done(Written::Object(owed)),
            Err(e) => outcome_of(&e),
        }
    }
    .boxed()
}

fn report_api(client: Client, namespace: &str) -> Api<DynamicObject> {
    if namespace.is_empty() {
        Api::all_with(client, &super::reports::cluster_report_resource())
    } else {
        Api::namespaced_with(client, namespace, &super::reports::report_resource())
    }
}

fn apply_report(
    client: Client,
    namespace: Arc<str>,
    report: serde_json::Value,
    digest: Option<String>,
) -> BoxFuture<'static, Outcome<Written>> {
    async move {
        let api = report_api(client, &namespace);
        match api
            .patch(
                reports::NAME,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&report),
            )
            .await
        {
            Ok(_) => Outcome::Done(Written::Report(digest)),
            Err(e) => outcome_of(&e),
        }
    }
    .boxed()
}

fn delete_report(client: Client, namespace: Arc<str>) -> BoxFuture<'static, Outcome<Written>> {
    async move {
        let api = report_api(client, &namespace);
        match api.delete(reports::NAME, &DeleteParams::default()).await {
            Ok(_) => Outcome::Done(Written::Report(None)),
            Err(kube::Error::Api(status)) if status.code == 404 && status.details.is_some() => {
                Outcome::Done(Written::Report(None))
            }
            Err(e) => outcome_of(&e),
        }
    }
    .boxed()
}

fn write_exception_status(
    client: Client,
    exception: Arc<Exception>,
    status: serde_json::Value,
) -> BoxFuture<'static, Outcome<Written>> {
    async move {
        let resource = exception_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client, &exception.namespace, &resource);
        let patch = serde_json::json!({"apiVersion": resource.api_version, "kind": resource.kind, "status": status});
        match api
            .patch_status(&exception.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
        {
            Ok(_) => Outcome::Done(Written::ExceptionStatus(status)),
            Err(e) => outcome_of(&e),
        }
    }
    .boxed()
}

/// The Events asyncapi-guard already emitted, newest per object: what a new leader must
/// not emit again while the verdict stays the same.
async fn remember_emitted_events(client: &Client) -> Result<HashMap<Uid, u64>, kube::Error> {
    let api: Api<EventObject> = Api::all(client.clone());
    let mut params = ListParams::default().limit(500);
    let mut found: HashMap<Uid, (Option<Timestamp>, u64)> = HashMap::new();
    loop {
        let page = api.list(&params).await?;
        for event in &page.items {
            if event.reporting_controller.as_deref() != Some(REPORTING_CONTROLLER) {
                continue;
            }
            let (Some(uid), Some(note)) = (
                event.regarding.as_ref().and_then(|r| r.uid.as_deref()),
                event.note.as_deref(),
            ) else {
                continue;
            };
            let when = event
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(event.event_time.as_ref().map(|t| t.0))
                .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let uid = Uid::new(uid);
            match found.get(&uid) {
                Some((seen, _)) if *seen >= when => {}
                _ => {
                    found.insert(uid, (when, note_hash(note)));
                }
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(found
        .into_iter()
        .map(|(uid, (_, hash))| (uid, hash))
        .collect())
}

/// What the cluster holds of asyncapi-guard's Reports.
struct FoundReports {
    /// Whether each CRD is installed.
    reports: bool,
    cluster_reports: bool,
    /// Their digests by namespace (`""`: the ClusterReport).
    digests: HashMap<Arc<str>, String>,
}

/// The digests of asyncapi-guard's Reports and ClusterReport, from their metadata alone.
async fn report_digests(client: &Client) -> Result<FoundReports, kube::Error> {
    let mut found = FoundReports {
        reports: true,
        cluster_reports: true,
        digests: HashMap::new(),
    };
    for cluster in [false, true] {
        let resource = if cluster {
            super::reports::cluster_report_resource()
        } else {
            super::reports::report_resource()
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let selector = format!("{}={}", reports::MANAGED_BY.0, reports::MANAGED_BY.1);
        let mut params = ListParams::default().labels(&selector).limit(500);
        loop {
            let page = match api.list_metadata(&params).await {
                Ok(page) => page,
                // Not served: the CRD is not installed (the ClusterReport's may be missing
                // alone: then only cluster-scoped objects go without a report).
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    if cluster {
                        found.cluster_reports = false;
                    } else {
                        found.reports = false;
                    }
                    break;
                }
                Err(e) => return Err(e),
            };
            for report in &page.items {
                if report.metadata.name.as_deref() != Some(reports::NAME) {
                    continue;
                }
                let digest = report
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(reports::DIGEST_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                let namespace = if cluster {
                    String::new()
                } else {
                    report.metadata.namespace.clone().unwrap_or_default()
                };
                found.digests.insert(namespace.into(), digest);
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
    }
    Ok(found)
}
