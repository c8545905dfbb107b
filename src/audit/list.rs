//! Listing what is in the cluster, page by page (`limit` and `continue`), judging each page
//! as it comes so that memory holds verdicts, not every ConfigMap.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

use super::{Audited, asyncapi_resource, config_map_resource};
use crate::engine::Engine;
use crate::kubernetes::extract::ExtractConfig;

/// What one audit found, and what it could not look at.
#[derive(Debug, Default)]
pub struct Census {
    /// Objects that carry at least one AsyncAPI document.
    pub audited: Vec<Audited>,
    /// Resources that could not be listed and why (the CRD missing, no permission).
    pub skipped: Vec<String>,
    pub pages: usize,
}

/// Judges every page of `resource` in `namespace` (or everywhere).
pub async fn audit_resource(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    page_size: u32,
    judge: impl Fn(&DynamicObject) -> Audited,
    census: &mut Census,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let mut params = ListParams::default().limit(page_size);
    loop {
        let page = api.list(&params).await?;
        census.pages += 1;
        census.audited.extend(
            page.items
                .iter()
                .map(&judge)
                .filter(Audited::carries_documents),
        );
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(()),
        }
    }
}

/// ConfigMaps (labelled ones, and unlabelled ones that hold AsyncAPI) and AsyncAPI resources.
pub async fn census(
    client: &Client,
    engine: &Engine,
    kubernetes: &ExtractConfig,
    namespace: Option<&str>,
    page_size: u32,
) -> Result<Census, kube::Error> {
    let mut census = Census::default();
    for resource in [config_map_resource(), asyncapi_resource()] {
        let judge = |object: &DynamicObject| Audited::judge(engine, kubernetes, &resource, object);
        match audit_resource(client, &resource, namespace, page_size, judge, &mut census).await {
            Ok(()) => {}
            // A missing CRD or a forbidden kind is reported, not fatal: the rest is still audited.
            Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => {
                census.skipped.push(format!(
                    "{}.{}: {} ({})",
                    resource.plural,
                    if resource.group.is_empty() {
                        "core"
                    } else {
                        &resource.group
                    },
                    status.message,
                    status.code
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(census)
}
