//! asyncapi-guard: stops insecure AsyncAPI definitions before they reach a cluster.
//!
//! - [`engine`]: the policy engine (document model, references, rules, findings); it knows
//!   nothing of Kubernetes or HTTP.
//! - [`kubernetes`]: which documents Kubernetes objects carry, judged with the engine.
//! - [`report`]: the one rendering of findings (text, JSON, SARIF, admission responses).
//! - [`config`]: the configuration file.
//! - [`service`]: what the parts of `serve` share (configuration in force, readiness,
//!   metrics, shutdown).
//! - [`webhook`]: the admission webhook (`serve`).
//! - [`audit`]: the cluster audit (`audit`, and `serve --audit` in the cluster).
//! - [`app`]: the composition root of `serve`: wires the webhook and the audit.
//! - [`cleanup`]: what an uninstall removes that Helm does not know of.
//! - [`cli`]: the thin shells: `check`, `serve`, `audit`.
//!
//! Imports run one way: engine ← kubernetes ← report, config ← service ← {webhook, audit}
//! ← app ← cli (see ARCHITECTURE.md).

pub mod app;
pub mod audit;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod engine;
pub mod kubernetes;
pub mod report;
pub mod service;
pub mod webhook;
