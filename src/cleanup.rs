//! `asyncapi-guard cleanup`: what an uninstall must remove that Helm does not know of, so
//! that nothing is left speaking for the guard once it is gone. The chart runs it as a
//! pre-delete hook; with `kubectl delete -f manifests/`, run it first.
//!
//! 1. The audit's Lease is taken (held long, by the uninstall): the leader stops within
//!    seconds and no replica audits again, so nothing is written after the steps below.
//! 2. Every OpenReports `Report` (and the `ClusterReport`) asyncapi-guard wrote is deleted:
//!    they would show results nothing keeps current any more.
//! 3. The conditions the audit wrote in `AsyncAPI` and `AsyncAPIException` statuses are
//!    removed (an empty apply by the manager that wrote them removes what it alone owns).
//! 4. The self-managed certificate Secret is deleted. (The Secret and the Lease are also
//!    owned by the Deployment, so the garbage collector deletes them with it.)
//!
//! Events are left: the API server deletes them within an hour. The CRDs and the objects of
//! the teams (AsyncAPI resources, exceptions) are theirs, and stay.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::audit::asyncapi_resource;
use crate::audit::controller::FIELD_MANAGER;
use crate::audit::reports::{MANAGED_BY, NAME, cluster_report_resource, report_resource};
use crate::audit::status::CONDITION_TYPE;
use crate::kubernetes::exceptions::exception_resource;

/// The Lease holder while an uninstall runs.
pub const UNINSTALLING: &str = "asyncapi-guard-uninstall";
const MANAGER: &str = "asyncapi-guard-cleanup";

#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// The release's namespace: where the Lease and the Secret are.
    pub namespace: String,
    pub lease: Option<String>,
    pub tls_secret: Option<String>,
    /// The Deployment that owns the Lease, so that the garbage collector takes it.
    pub owner_deployment: Option<String>,
    /// How long the leader has to notice it lost the Lease (its renewal period and more).
    pub leader_notice: Duration,
}

/// What was done, and what could not be.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub lease_taken: bool,
    pub reports_deleted: usize,
    pub statuses_cleared: usize,
    pub secret_deleted: bool,
    pub problems: Vec<String>,
}

/// Carries out every step; a step that fails is said in [`Cleaned::problems`] and the rest
/// still done (an uninstall must not be held up by one of them).
pub async fn cleanup(client: &Client, options: &CleanupOptions) -> Cleaned {
    let mut cleaned = Cleaned::default();
    if let Some(lease) = &options.lease {
        match take_lease(client, options, lease).await {
            Ok(()) => {
                cleaned.lease_taken = true;
                tokio::time::sleep(options.leader_notice).await;
            }
            Err(e) => cleaned.problems.push(format!("the Lease {lease}: {e}")),
        }
    }
    match delete_reports(client).await {
        Ok(count) => cleaned.reports_deleted = count,
        Err(e) => cleaned.problems.push(format!("the Reports: {e}")),
    }
    for (resource, types) in [
        (asyncapi_resource(), &[CONDITION_TYPE][..]),
        (exception_resource(), &["Accepted", "Expired"][..]),
    ] {
        match clear_statuses(client, &resource, types).await {
            Ok(count) => cleaned.statuses_cleared += count,
            Err(e) => cleaned
                .problems
                .push(format!("the statuses of {}: {e}", resource.plural)),
        }
    }
    if let Some(secret) = &options.tls_secret {
        let api: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(client.clone(), &options.namespace);
        match api.delete(secret, &DeleteParams::default()).await {
            Ok(_) => cleaned.secret_deleted = true,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => cleaned.problems.push(format!("the Secret {secret}: {e}")),
        }
    }
    cleaned
}

/// Holds the Lease for an hour under the uninstall's name, owned by the Deployment so that
/// it goes with it.
async fn take_lease(
    client: &Client,
    options: &CleanupOptions,
    lease: &str,
) -> Result<(), kube::Error> {
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &options.namespace);
    let owner = match &options.owner_deployment {
        Some(name) => crate::service::owner::deployment(client, &options.namespace, name).await,
        None => None,
    };
    let now = MicroTime(Timestamp::now());
    let mut patch = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease},
        "spec": {"holderIdentity": UNINSTALLING, "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now},
    });
    if let Some(owner) = owner {
        patch["metadata"]["ownerReferences"] = serde_json::json!([owner]);
    }
    api.patch(
        lease,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// Deletes asyncapi-guard's Reports and ClusterReport; none when the CRD is not installed.
async fn delete_reports(client: &Client) -> Result<usize, kube::Error> {
    let mut deleted = 0;
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    for resource in [report_resource(), cluster_report_resource()] {
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let listed = match all
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(listed) => listed,
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => return Err(e),
        };
        for report in listed.items.iter().filter(|r| r.name_any() == NAME) {
            let api: Api<DynamicObject> = match report.namespace() {
                Some(namespace) => Api::namespaced_with(client.clone(), &namespace, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            match api.delete(NAME, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// Removes the audit's conditions from the statuses of `resource`'s objects that hold one
/// of `types`: the audit's manager applies an empty status, which removes what it alone
/// wrote and leaves other managers' conditions.
async fn clear_statuses(
    client: &Client,
    resource: &kube::api::ApiResource,
    types: &[&str],
) -> Result<usize, kube::Error> {
    let all: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut params = ListParams::default().limit(500);
    let mut cleared = 0;
    loop {
        let page = match all.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(cleared),
            Err(e) => return Err(e),
        };
        for object in &page.items {
            let ours = object.data["status"]["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| types.iter().any(|t| c["type"] == *t))
                });
            let Some(namespace) = object.namespace().filter(|_| ours) else {
                continue;
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, resource);
            let patch = serde_json::json!({"apiVersion": resource.api_version, "kind": resource.kind, "status": {}});
            match api
                .patch_status(
                    &object.name_any(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => cleared += 1,
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(cleared),
        }
    }
}
