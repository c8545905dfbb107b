//! What the audit lists and watches: ConfigMaps, `AsyncAPI` resources, and the kinds the
//! configuration names as carriers of documents (`kubernetes.kinds`), which admission judges
//! as well. The configuration names a carrier by group and kind, as an admission request
//! does; discovery finds its plural, its scope and the version the API server prefers (any
//! version lists every object of the kind).

use kube::Client;
use kube::api::ApiResource;
use kube::discovery::{self, ApiGroup, Scope, verbs};

use super::{asyncapi_resource, config_map_resource};
use crate::kubernetes::extract::ExtractConfig;

/// A kind the audit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedResource {
    pub resource: ApiResource,
    /// Namespaced (`false`: cluster-scoped objects, listed only by an audit of everything).
    pub namespaced: bool,
}

impl AuditedResource {
    /// Names it in messages: `configmaps`, `eventcontracts.events.example.com`.
    pub fn name(&self) -> String {
        resource_name(&self.resource)
    }
}

/// What every audit reads, whatever the configuration: ConfigMaps and `AsyncAPI`s.
pub fn built_in() -> Vec<AuditedResource> {
    [config_map_resource(), asyncapi_resource()]
        .into_iter()
        .map(|resource| AuditedResource {
            resource,
            namespaced: true,
        })
        .collect()
}

/// A resource's name with its group, as `kubectl` writes it: `configmaps`,
/// `eventcontracts.events.example.com`. Plurals alone can clash across groups.
pub fn resource_name(resource: &ApiResource) -> String {
    qualified(&resource.plural, &resource.group)
}

fn qualified(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_owned()
    } else {
        format!("{name}.{group}")
    }
}

/// Why a configured carrier kind cannot be audited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauditable {
    #[error("the API server does not serve this kind ({0}); is its CRD installed?")]
    NotServed(String),
    #[error("{message} ({code})")]
    Refused { message: String, code: u16 },
    #[error(
        "the API server serves the group at {version} without this kind; is its CRD installed?"
    )]
    NotInGroup { version: String },
    #[error("{0} cannot be listed and watched")]
    NotWatchable(String),
}

/// The kinds to audit, and for each configured carrier that cannot be, why.
#[derive(Debug, Default)]
pub struct AuditedResources {
    pub resources: Vec<AuditedResource>,
    pub skipped: Vec<String>,
}

/// ConfigMaps and `AsyncAPI`s, then the configured carriers as discovery finds them. A
/// carrier the API server does not serve (its CRD not installed yet, a typo in the
/// configuration) or does not let us list and watch is skipped with the reason: the rest is
/// still audited, as admission still judges the rest. Other errors (the API server out of
/// reach) are returned.
pub async fn audited_resources(
    client: &Client,
    kubernetes: &ExtractConfig,
) -> Result<AuditedResources, kube::Error> {
    let mut found = AuditedResources {
        resources: built_in(),
        skipped: Vec::new(),
    };
    // Each group once: its discovery lists every API group and then each of the group's
    // versions, and the kinds of a team often share one group.
    let mut groups: Vec<(&str, Result<ApiGroup, Unauditable>)> = Vec::new();
    for carrier in &kubernetes.kinds {
        let at = match groups.iter().position(|(name, _)| *name == carrier.group) {
            Some(at) => at,
            None => {
                groups.push((&carrier.group, served_group(client, &carrier.group).await?));
                groups.len() - 1
            }
        };
        // In range: found there, or just pushed.
        let audited = match &groups[at].1 {
            Ok(group) => kind_in(group, &carrier.kind),
            Err(reason) => Err(reason.clone()),
        };
        match audited {
            Ok(resource) => {
                if !found.resources.contains(&resource) {
                    found.resources.push(resource);
                }
            }
            Err(reason) => found.skipped.push(format!(
                "{}: {reason}",
                qualified(&carrier.kind, &carrier.group)
            )),
        }
    }
    Ok(found)
}

/// What to audit when discovery cannot answer: the kinds `last` found that the configuration
/// still names, ConfigMaps and `AsyncAPI`s always. Falling back to these alone would drop the
/// carriers' results from the gauges and reports until the next re-audit, and bring them
/// back after it: a blip of the API server would make violations come and go. A kind whose
/// CRD was removed meanwhile only makes its watch fail and retry until the next re-audit.
pub fn still_configured(
    last: &[AuditedResource],
    kubernetes: &ExtractConfig,
) -> Vec<AuditedResource> {
    let mut resources = built_in();
    for audited in last {
        let configured = kubernetes.kinds.iter().any(|carrier| {
            carrier.group == audited.resource.group && carrier.kind == audited.resource.kind
        });
        if configured && !resources.contains(audited) {
            resources.push(audited.clone());
        }
    }
    resources
}

/// The API group as discovery finds it, or (inner `Err`) why its kinds cannot be audited.
async fn served_group(
    client: &Client,
    group: &str,
) -> Result<Result<ApiGroup, Unauditable>, kube::Error> {
    match discovery::group(client, group).await {
        Ok(group) => Ok(Ok(group)),
        Err(kube::Error::Discovery(e)) => Ok(Err(Unauditable::NotServed(e.to_string()))),
        Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => {
            Ok(Err(Unauditable::Refused {
                message: status.message,
                code: status.code,
            }))
        }
        Err(e) => Err(e),
    }
}

/// The carrier kind's resource in its served `group`, or why it cannot be audited.
fn kind_in(group: &ApiGroup, kind: &str) -> Result<AuditedResource, Unauditable> {
    let Some((resource, capabilities)) = group.recommended_kind(kind) else {
        return Err(Unauditable::NotInGroup {
            version: group.preferred_version_or_latest().to_owned(),
        });
    };
    if !(capabilities.supports_operation(verbs::LIST)
        && capabilities.supports_operation(verbs::WATCH))
    {
        return Err(Unauditable::NotWatchable(resource_name(&resource)));
    }
    Ok(AuditedResource {
        resource,
        namespaced: capabilities.scope == Scope::Namespaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::extract::CarrierKind;

    fn carrier(group: &str, kind: &str) -> CarrierKind {
        CarrierKind {
            group: group.into(),
            kind: kind.into(),
            field: "/spec/asyncapi".into(),
        }
    }

    fn audited(group: &str, version: &str, kind: &str, plural: &str) -> AuditedResource {
        AuditedResource {
            resource: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: format!("{group}/{version}"),
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced: true,
        }
    }

    #[test]
    fn without_discovery_the_last_found_carriers_still_configured_are_kept() {
        let contracts = audited(
            "events.example.com",
            "v1",
            "EventContract",
            "eventcontracts",
        );
        let streams = audited("streams.example.com", "v1", "Stream", "streams");
        let mut last = built_in();
        last.extend([contracts.clone(), streams]);
        let kubernetes = ExtractConfig {
            kinds: vec![carrier("events.example.com", "EventContract")],
            ..ExtractConfig::default()
        };

        let mut expected = built_in();
        expected.push(contracts);
        assert_eq!(still_configured(&last, &kubernetes), expected);
        assert_eq!(still_configured(&[], &kubernetes), built_in());
    }
}
