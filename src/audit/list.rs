//! Listing what is in the cluster, page by page (`limit` and `continue`), judging each page
//! as it comes so that memory holds verdicts, not every ConfigMap.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, ResourceExt};

use super::resources::audited_resources;
use super::{Audited, NamespaceLabels};
use crate::kubernetes::exceptions::{Exception, ExceptionSet, exception_resource};
use crate::kubernetes::raw_object::RawObject;
use crate::service::state::ActiveConfig;

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
    judge: impl Fn(&RawObject) -> Audited,
    census: &mut Census,
) -> Result<(), kube::Error> {
    let api: Api<RawObject> = match namespace {
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

/// The labels of `namespace` (or of every namespace): they choose the mode, as they choose
/// the webhook entry.
pub async fn namespace_labels(
    client: &Client,
    namespace: Option<&str>,
    page_size: u32,
) -> Result<NamespaceLabels, kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut labels = NamespaceLabels::default();
    if let Some(name) = namespace {
        if let Some(found) = api.get_opt(name).await? {
            labels.insert(&found);
        }
        return Ok(labels);
    }
    let mut params = ListParams::default().limit(page_size);
    loop {
        let page = api.list(&params).await?;
        for namespace in &page.items {
            labels.insert(namespace);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(labels),
        }
    }
}

/// Every `AsyncAPIException` of the cluster, page by page; `None` when the kind is not
/// installed (no exception can exist then).
pub async fn exceptions(
    client: &Client,
    page_size: u32,
) -> Result<Option<ExceptionSet>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &exception_resource());
    let mut params = ListParams::default().limit(page_size);
    let mut found = Vec::new();
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(e) => return Err(e),
        };
        found.extend(page.items.iter().map(Exception::from_dynamic));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(Some(ExceptionSet::new(found))),
        }
    }
}

/// ConfigMaps (labelled ones, and unlabelled ones that hold AsyncAPI), AsyncAPI resources
/// and the configured carrier kinds, each object judged as admission would in its namespace,
/// with the cluster's exceptions, now.
pub async fn census(
    client: &Client,
    config: &ActiveConfig,
    namespace: Option<&str>,
    page_size: u32,
) -> Result<Census, kube::Error> {
    let mut census = Census::default();
    let kubernetes = &config.kubernetes;
    let exceptions = match exceptions(client, page_size).await {
        Ok(found) => found.unwrap_or_default(),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            census.skipped.push(format!(
                "asyncapiexceptions: {} ({}); findings an exception may cover are reported as violations",
                status.message, status.code
            ));
            ExceptionSet::default()
        }
        Err(e) => return Err(e),
    };
    let judge = config.judge(&exceptions, Timestamp::now());
    let labels = match namespace_labels(client, namespace, page_size).await {
        Ok(labels) => labels,
        // Without them every namespace gets the default mode; say so rather than stop.
        Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => {
            census.skipped.push(format!(
                "namespaces: {} ({}); their asyncapi-guard.io/mode labels are unknown, so every namespace was judged in the default mode",
                status.message, status.code
            ));
            NamespaceLabels::default()
        }
        Err(e) => return Err(e),
    };
    let found = audited_resources(client, kubernetes).await?;
    census.skipped.extend(found.skipped);
    for audited in found.resources {
        if namespace.is_some() && !audited.namespaced {
            census.skipped.push(format!(
                "{}: cluster-scoped, so not in one namespace (audit with --all-namespaces)",
                audited.name()
            ));
            continue;
        }
        let resource = &audited.resource;
        let judge = |object: &RawObject| {
            let namespace_labels = labels.of(object.namespace().as_deref());
            Audited::judge(&judge, resource, object, namespace_labels)
        };
        match audit_resource(client, resource, namespace, page_size, judge, &mut census).await {
            Ok(()) => {}
            // A missing CRD or a forbidden kind is reported, not fatal: the rest is still audited.
            Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => {
                census.skipped.push(format!(
                    "{}: {} ({})",
                    audited.name(),
                    status.message,
                    status.code
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(census)
}
