//! asyncapi-guard: stops insecure AsyncAPI definitions before they reach a cluster.
//!
//! - [`engine`]: the policy engine (document model, references, rules, findings); it knows
//!   nothing of Kubernetes or HTTP.
//! - [`kubernetes`]: which documents Kubernetes objects carry, judged with the engine.
//! - [`report`]: the one rendering of findings (text, JSON, SARIF, admission responses).
//! - [`config`]: the configuration file.
//! - [`webhook`]: the admission webhook (`serve`).
//! - [`audit`]: the cluster audit (`audit`, and `serve --audit` in the cluster).
//! - [`cli`]: the thin shells: `check`, `serve`, `audit`.

pub mod audit;
pub mod cli;
pub mod config;
pub mod engine;
pub mod kubernetes;
pub mod report;
pub mod webhook;
