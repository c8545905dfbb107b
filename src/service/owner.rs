//! What this server creates in its namespace (the certificate Secret, the audit's Lease) is
//! owned by its Deployment: uninstalling deletes the Deployment, and the garbage collector
//! then deletes them, with nothing to run at uninstall time.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::{Client, Resource};
use tracing::warn;

/// The owner reference to the Deployment `name` of `namespace`; `None` (said in the log)
/// when it cannot be read: the server works the same, only what it creates outlives it.
pub async fn deployment(client: &Client, namespace: &str, name: &str) -> Option<OwnerReference> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match api.get(name).await {
        Ok(deployment) => deployment.controller_owner_ref(&()).map(|mut owner| {
            // Not the controller of what it owns, and never holding up its own deletion.
            owner.controller = None;
            owner.block_owner_deletion = None;
            owner
        }),
        Err(e) => {
            warn!(deployment = name, error = %e, "cannot read the Deployment that owns the Secret and Lease this server creates; they will outlive an uninstall");
            None
        }
    }
}
