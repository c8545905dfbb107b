//! What the rules read: the document's servers, the places where `security` stands for its
//! version, and every security requirement resolved to the scheme it names.
//!
//! Each object that can carry `security` is visited once, at the place it is written (a
//! server reached through `$ref` is checked where its definition is), so a requirement is
//! reported once however many references lead to it.

use std::cell::OnceCell;

use super::document::pointer::{self, Located, Reference};
use super::document::{NodeRef, NodeSet};
use super::production::ProductionSelector;
use super::refs::{self, Target, Unresolved};
use super::version::SpecVersion;

#[derive(Debug)]
pub struct Analysis<'d> {
    pub root: NodeRef<'d>,
    pub version: SpecVersion,
    pub servers: Vec<RootServer<'d>>,
    pub sites: Vec<SecuritySite<'d>>,
    pub uses: Vec<SchemeUse<'d>>,
    /// The used schemes that `security-scheme-invalid` finds invalid, made the first time a
    /// rule asks (that rule, or `security-scope-undefined`, which judges only valid
    /// schemes), so that each scheme is validated once whichever of them are on.
    pub invalid_schemes: OnceCell<NodeSet>,
}

/// An entry of the root `servers`.
#[derive(Debug)]
pub struct RootServer<'d> {
    pub key: &'d str,
    /// The entry itself: `/servers/<key>`.
    pub entry: Located<'d>,
    pub definition: ServerDefinition<'d>,
    pub production: Option<ProductionReason>,
}

#[derive(Debug)]
pub enum ServerDefinition<'d> {
    Object(Located<'d>),
    External(&'d str),
    Unresolved(&'d str),
}

/// Why a server counts as production; shown in messages where the name does not say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductionReason {
    Name,
    Tag(String),
    AllServers,
}

/// An object where this version reads `security`.
#[derive(Debug)]
pub struct SecuritySite<'d> {
    pub object: Located<'d>,
}

/// One scheme named by one security requirement.
#[derive(Debug)]
pub struct SchemeUse<'d> {
    /// The requirement: an item of a `security` list.
    pub requirement: Located<'d>,
    /// v2: the scopes the requirement asks for.
    pub requested_scopes: Option<Located<'d>>,
    pub resolution: Resolution<'d>,
}

#[derive(Debug)]
pub enum Resolution<'d> {
    /// The scheme object (a component, or inline in v3), wherever the chain ended.
    Scheme(Located<'d>),
    Undefined(Undefined<'d>),
    /// The chain leaves the document at `at`.
    External {
        reference: &'d str,
        at: Located<'d>,
    },
}

#[derive(Debug)]
pub enum Undefined<'d> {
    /// v2: no such key in `components.securitySchemes`.
    Name(&'d str),
    /// v2: the requirement is not a mapping of scheme names to scopes.
    NotARequirement,
    /// v3: the `$ref` does not reach a scheme under `components.securitySchemes`.
    Reference {
        reference: &'d str,
        problem: RefProblem,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefProblem {
    OutsideSchemes,
    Dangling,
    Cycle,
}

impl<'d> Analysis<'d> {
    pub fn new(
        root: NodeRef<'d>,
        version: SpecVersion,
        selector: &ProductionSelector,
        all_servers: bool,
    ) -> Self {
        let top = Located::root(root);
        let components = top.child("components");
        // Sized up front: a document with thousands of operations would otherwise regrow
        // (copy and fault in) these lists a dozen times.
        let count = |name: &str| top.child(name).map_or(0, |m| m.node.entries().len());
        let (servers, operations) = (count("servers"), count("operations").max(count("channels")));
        let mut analysis = Analysis {
            root,
            version,
            servers: Vec::with_capacity(servers),
            sites: Vec::with_capacity(servers + operations),
            uses: Vec::new(),
            invalid_schemes: OnceCell::new(),
        };
        let mut seen = NodeSet::new(root.tree());

        if let Some(servers) = top.child("servers") {
            for (key, entry) in servers.children() {
                let server = analysis.root_server(key, entry, selector, all_servers);
                if let ServerDefinition::Object(object) = &server.definition {
                    analysis.add_site(&mut seen, object.clone());
                }
                analysis.servers.push(server);
            }
        }
        let component = |name: &str| components.as_ref().and_then(|c| c.child(name));
        if let (true, Some(servers)) = (version.has_component_servers(), component("servers")) {
            for (_, entry) in servers.children() {
                analysis.add_resolved_site(&mut seen, entry);
            }
        }
        if version.has_operation_security() {
            if version.is_v3() {
                for operations in [top.child("operations"), component("operations")]
                    .into_iter()
                    .flatten()
                {
                    for (_, entry) in operations.children() {
                        analysis.add_operation(&mut seen, entry);
                    }
                }
            } else {
                for channels in [top.child("channels"), component("channels")]
                    .into_iter()
                    .flatten()
                {
                    for (_, entry) in channels.children() {
                        if let Target::Node(channel) = refs::follow(root, entry) {
                            for verb in ["publish", "subscribe"] {
                                if let Some(operation) = channel.child(verb) {
                                    analysis.add_operation(&mut seen, operation);
                                }
                            }
                        }
                    }
                }
            }
            if let Some(traits) = component("operationTraits") {
                for (_, entry) in traits.children() {
                    analysis.add_resolved_site(&mut seen, entry);
                }
            }
        }

        let schemes = component("securitySchemes");
        let mut uses = Vec::with_capacity(analysis.sites.len());
        for site in &analysis.sites {
            let Some(security) = site.object.child("security") else {
                continue;
            };
            for (_, item) in security.items() {
                if version.is_v3() {
                    uses.push(resolve_v3(root, schemes.as_ref(), item));
                } else {
                    resolve_v2(root, schemes.as_ref(), item, &mut uses);
                }
            }
        }
        analysis.uses = uses;
        analysis
    }

    fn root_server(
        &self,
        key: &'d str,
        entry: Located<'d>,
        selector: &ProductionSelector,
        all_servers: bool,
    ) -> RootServer<'d> {
        let definition = match refs::follow(self.root, entry.clone()) {
            Target::Node(object) => ServerDefinition::Object(object),
            Target::External { reference, .. } => ServerDefinition::External(reference),
            Target::Unresolved { reference, .. } => ServerDefinition::Unresolved(reference),
        };
        let production = if selector.name_matches(key) {
            Some(ProductionReason::Name)
        } else if let (ServerDefinition::Object(object), true) =
            (&definition, self.version.has_server_tags())
        {
            self.production_tag(object, selector)
                .map(ProductionReason::Tag)
                .or(all_servers.then_some(ProductionReason::AllServers))
        } else {
            all_servers.then_some(ProductionReason::AllServers)
        };
        RootServer {
            key,
            entry,
            definition,
            production,
        }
    }

    /// The first tag (a tag may be a `$ref`) whose name marks the server as production.
    fn production_tag(
        &self,
        server: &Located<'d>,
        selector: &ProductionSelector,
    ) -> Option<String> {
        let tags = server.child("tags")?;
        tags.items()
            .find_map(|(_, tag)| match refs::follow(self.root, tag) {
                Target::Node(tag) => tag
                    .node
                    .get("name")
                    .and_then(|n| n.as_str())
                    .filter(|name| selector.tag_matches(name))
                    .map(str::to_owned),
                _ => None,
            })
    }

    fn add_site(&mut self, seen: &mut NodeSet, object: Located<'d>) {
        if object.node.is_map() && seen.insert(object.node.id()) {
            self.sites.push(SecuritySite { object });
        }
    }

    fn add_resolved_site(&mut self, seen: &mut NodeSet, entry: Located<'d>) {
        // References that leave the document, or lead nowhere, are not judged here
        // (docs/policy.md: "other external server or operation references are not judged").
        if let Target::Node(object) = refs::follow(self.root, entry) {
            self.add_site(seen, object);
        }
    }

    /// An operation and the traits it applies, inline or by `$ref`.
    fn add_operation(&mut self, seen: &mut NodeSet, entry: Located<'d>) {
        let Target::Node(operation) = refs::follow(self.root, entry) else {
            return;
        };
        let traits: Vec<Located<'d>> = operation
            .child("traits")
            .map(|t| t.items().map(|(_, item)| item).collect())
            .unwrap_or_default();
        self.add_site(seen, operation);
        for item in traits {
            self.add_resolved_site(seen, item);
        }
    }

    /// The root servers that are production.
    pub fn production_servers(&self) -> impl Iterator<Item = &RootServer<'d>> {
        self.servers.iter().filter(|s| s.production.is_some())
    }

    /// The keys of `components.securitySchemes`, for "did you mean".
    pub fn scheme_names(&self) -> Vec<&'d str> {
        self.root
            .get("components")
            .and_then(|c| c.get("securitySchemes"))
            .map(|s| s.entries().map(|e| e.key).collect())
            .unwrap_or_default()
    }
}

/// v2: a requirement maps scheme names (keys of `components.securitySchemes`) to scopes.
fn resolve_v2<'d>(
    root: NodeRef<'d>,
    schemes: Option<&Located<'d>>,
    item: Located<'d>,
    uses: &mut Vec<SchemeUse<'d>>,
) {
    if item.node.is_null() {
        // An empty requirement: anonymous access, judged by server-security-anonymous.
        return;
    }
    if !item.node.is_map() {
        uses.push(SchemeUse {
            requirement: item,
            requested_scopes: None,
            resolution: Resolution::Undefined(Undefined::NotARequirement),
        });
        return;
    }
    for (name, scopes) in item.children() {
        let resolution = match schemes.and_then(|s| s.child(name)) {
            None => Resolution::Undefined(Undefined::Name(name)),
            Some(entry) => match refs::follow(root, entry) {
                Target::Node(scheme) => Resolution::Scheme(scheme),
                Target::External { reference, at } => Resolution::External { reference, at },
                Target::Unresolved { reference, why } => {
                    Resolution::Undefined(Undefined::Reference {
                        reference,
                        problem: ref_problem(why),
                    })
                }
            },
        };
        uses.push(SchemeUse {
            requirement: item.clone(),
            requested_scopes: Some(scopes),
            resolution,
        });
    }
}

/// v3: a requirement is a Security Scheme object, inline or by `$ref` into
/// `components.securitySchemes`. Keys beside a `$ref` are ignored, as the spec says.
fn resolve_v3<'d>(
    root: NodeRef<'d>,
    schemes: Option<&Located<'d>>,
    item: Located<'d>,
) -> SchemeUse<'d> {
    let resolution = match item.node.reference() {
        None => Resolution::Scheme(item.clone()),
        Some(reference) => match pointer::classify(reference) {
            Reference::External => Resolution::External {
                reference,
                at: item.clone(),
            },
            Reference::Local(ptr) => {
                let undefined =
                    |problem| Resolution::Undefined(Undefined::Reference { reference, problem });
                match pointer::member_of(&ptr, &["components", "securitySchemes"]) {
                    None => undefined(RefProblem::OutsideSchemes),
                    // `schemes` is where the pointer's first two tokens lead from the root,
                    // found once for the document rather than walked again per requirement.
                    Some(name) => match schemes.and_then(|s| s.child(&name)) {
                        None => undefined(RefProblem::Dangling),
                        Some(entry) => match refs::follow(root, entry) {
                            Target::Node(scheme) => Resolution::Scheme(scheme),
                            Target::External { reference, at } => {
                                Resolution::External { reference, at }
                            }
                            Target::Unresolved { why, .. } => undefined(ref_problem(why)),
                        },
                    },
                }
            }
        },
    };
    SchemeUse {
        requirement: item,
        requested_scopes: None,
        resolution,
    }
}

fn ref_problem(why: Unresolved) -> RefProblem {
    match why {
        Unresolved::Dangling => RefProblem::Dangling,
        Unresolved::Cycle => RefProblem::Cycle,
    }
}
