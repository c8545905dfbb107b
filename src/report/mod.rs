//! Rendering findings: one report type, one formatter per output. The finding lines of
//! `check --format text` and of the admission denial are the same lines
//! ([`text::finding_line`]).

pub mod admission;
pub mod json;
pub mod sarif;
pub mod text;

use crate::engine::Evaluation;
use crate::engine::document::Pos;
use crate::kubernetes::extract::ObjectId;

/// One judged document: a file, or one document a Kubernetes object carries.
#[derive(Debug, Clone)]
pub struct DocumentReport {
    /// The `file` of the JSON output: the path as given, or
    /// `path#Kind/namespace/name/data/key` for a document an object carries.
    pub file: String,
    /// What the finding lines start with: the file, the ConfigMap key, or `spec`.
    pub label: String,
    /// The file SARIF points into.
    pub artifact: String,
    /// When the document is text inside that file (a ConfigMap key), where it starts: its
    /// own positions are relative to itself, so SARIF points here.
    pub embedded_at: Option<Pos>,
    /// A ConfigMap that carries AsyncAPI without the opt-in label (found by the audit, or by
    /// `check` in a manifest): admission does not judge it.
    pub unguarded: Option<ObjectId>,
    pub evaluation: Evaluation,
}

impl DocumentReport {
    /// A document that is a whole file (or stdin).
    pub fn file(file: &str, evaluation: Evaluation) -> Self {
        DocumentReport {
            file: file.to_owned(),
            label: file.to_owned(),
            artifact: file.to_owned(),
            embedded_at: None,
            unguarded: None,
            evaluation,
        }
    }
}

/// The output formats of `check` and `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

pub fn render(format: Format, reports: &[DocumentReport]) -> String {
    match format {
        Format::Text => text::render(reports),
        Format::Json => json::render(reports),
        Format::Sarif => sarif::render(reports),
    }
}
