//! `asyncapi-guard serve`: the validating admission webhook, a thin shell over the engine.
//!
//! - [`admission`]: AdmissionReview in, AdmissionReview out (pure).
//! - [`api`]: the HTTP endpoints.
//! - [`server`]: start-up, listeners, draining.
//! - [`tls`], [`reload`], [`certificates`]: certificates, reloading, self-managed
//!   certificates.
//!
//! It knows nothing of the command line or of the audit: [`crate::app`] wires them.

pub mod admission;
pub mod api;
pub mod certificates;
pub mod pki;
pub mod reload;
pub mod server;
pub mod tls;
