//! The policy engine: AsyncAPI documents in, findings out. Nothing here knows of
//! Kubernetes or HTTP.

mod analysis;
pub mod document;
pub mod finding;
pub mod memo;
pub mod policy;
pub mod production;
mod refs;
pub mod rules;
pub mod version;

use document::{LoadError, NodeRef, Stream};
use finding::{Finding, Mode};
use policy::Policy;
use rules::document_invalid;

/// What a single request may change about the policy (the webhook's query string, the
/// CLI's flags): it can only relax the mode, and can make every server production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Overrides {
    pub mode: Mode,
    pub all_servers_production: bool,
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            mode: Mode::Enforce,
            all_servers_production: false,
        }
    }
}

/// The verdict on one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The `asyncapi` field, when it is a string.
    pub version: Option<String>,
    /// Most severe first; `off` rules are not here.
    pub findings: Vec<Finding>,
}

impl Evaluation {
    /// Allowed when no finding denies: none in `enforce` mode, or each such one covered by
    /// an exception.
    pub fn allowed(&self) -> bool {
        !self.findings.iter().any(Finding::denies)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Engine {
    policy: Policy,
}

impl Engine {
    pub fn new(policy: Policy) -> Self {
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Judges a file's or a ConfigMap key's bytes.
    pub fn evaluate_bytes(&self, bytes: &[u8], overrides: &Overrides) -> Evaluation {
        match document::check_bytes(bytes, &self.policy.limits) {
            Ok(text) => self.evaluate_text(text, overrides),
            Err(error) => self.finish(
                None,
                vec![document_invalid::from_load_error(&error)],
                overrides,
            ),
        }
    }

    pub fn evaluate_text(&self, text: &str, overrides: &Overrides) -> Evaluation {
        match self.load(text) {
            Ok(stream) => self.evaluate_stream(&stream, overrides),
            Err(error) => self.evaluate_load_error(&error, overrides),
        }
    }

    /// Parses `text` (JSON or YAML, by content) under the policy's limits.
    pub fn load<'t>(&self, text: &'t str) -> Result<Stream<'t>, LoadError> {
        document::load(text, &self.policy.limits)
    }

    /// Judges a loaded file: it must hold exactly one document.
    pub fn evaluate_stream(&self, stream: &Stream<'_>, overrides: &Overrides) -> Evaluation {
        match stream.documents.as_slice() {
            [(root, _)] => self.evaluate_root(stream.tree.node(*root), overrides),
            [_, (_, second), ..] => {
                let finding = document_invalid::several_documents(
                    stream.documents.len(),
                    stream.tree.pos(*second),
                );
                self.finish(None, vec![finding], overrides)
            }
            [] => self.evaluate_load_error(&LoadError::Empty, overrides),
        }
    }

    pub fn evaluate_load_error(&self, error: &LoadError, overrides: &Overrides) -> Evaluation {
        self.finish(
            None,
            vec![document_invalid::from_load_error(error)],
            overrides,
        )
    }

    /// A document that an object promises but that cannot be read at all.
    pub fn evaluate_unreadable(&self, why: &str, overrides: &Overrides) -> Evaluation {
        self.finish(None, vec![document_invalid::unreadable(why)], overrides)
    }

    /// Judges `bytes` only if they hold an AsyncAPI document: one YAML or JSON document
    /// whose top level is a mapping with an `asyncapi` field. For text that may or may not
    /// be AsyncAPI (the keys of an unlabelled ConfigMap).
    pub fn evaluate_if_asyncapi(&self, bytes: &[u8], overrides: &Overrides) -> Option<Evaluation> {
        // Cheap refusal for the common case: ConfigMaps that are not documents at all.
        if !bytes.windows(8).any(|w| w == b"asyncapi") {
            return None;
        }
        let text = document::check_bytes(bytes, &self.policy.limits).ok()?;
        let stream = self.load(text).ok()?;
        let [(root, _)] = stream.documents.as_slice() else {
            return None;
        };
        let root = stream.tree.node(*root);
        root.get("asyncapi")?;
        Some(self.evaluate_root(root, overrides))
    }

    /// Judges a document that is a field of a bigger object (a custom resource's `spec`, a
    /// manifest's structured field): the object was loaded with room for its own nesting,
    /// so the depth limit is checked here, on the document alone.
    pub fn evaluate_field(&self, field: NodeRef<'_>, overrides: &Overrides) -> Evaluation {
        let max = self.policy.limits.max_depth;
        if field.height() as usize > max {
            let error = LoadError::TooDeep {
                max,
                pos: field.pos(),
            };
            return self.evaluate_load_error(&error, overrides);
        }
        self.evaluate_root(field, overrides)
    }

    /// Judges a loaded document: its top level, then every rule that is not `off`.
    pub fn evaluate_root(&self, root: NodeRef<'_>, overrides: &Overrides) -> Evaluation {
        let version_text = root
            .get("asyncapi")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let version = match document_invalid::version_of(root) {
            Ok(version) => version,
            Err(finding) => return self.finish(version_text, vec![finding], overrides),
        };
        let all_servers = self.policy.production.all_servers() || overrides.all_servers_production;
        let analysis = analysis::Analysis::new(root, version, &self.policy.production, all_servers);
        let mut findings = Vec::new();
        for (rule, check) in rules::DOCUMENT_RULES {
            if self.policy.rule_mode(rule, overrides.mode) != Mode::Off {
                check(&analysis, &mut findings);
            }
        }
        self.finish(version_text, findings, overrides)
    }

    fn finish(
        &self,
        version: Option<String>,
        mut findings: Vec<Finding>,
        overrides: &Overrides,
    ) -> Evaluation {
        for finding in &mut findings {
            finding.mode = self.policy.rule_mode(finding.rule, overrides.mode);
        }
        findings.retain(|f| f.mode != Mode::Off);
        findings.sort_by(|a, b| a.display_order(b));
        findings.dedup_by(|a, b| a.rule == b.rule && a.path == b.path && a.message == b.message);
        Evaluation { version, findings }
    }
}
