//! The composition root of `serve`: owns the runtime's long-running parts, the shutdown
//! signal and the shared state, and wires the webhook, the self-managed certificates and the
//! in-cluster audit together, so that none of them imports another.

use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};

use crate::audit::controller::AuditSettings;
use crate::service::{Shared, Shutdown};
use crate::webhook::server::{self, WebhookOptions};

/// The audit's part of `serve --audit`.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub lease: String,
    pub namespace: String,
    /// This replica's name in the Lease; the host name when not given.
    pub identity: Option<String>,
    pub resync: Duration,
    /// Keep OpenReports `Report`s (when the CRD is installed).
    pub reports: bool,
    /// The Deployment that owns the Lease (uninstalling deletes it).
    pub owner_deployment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub webhook: WebhookOptions,
    pub audit: Option<AuditOptions>,
    /// Watch the cluster's `AsyncAPIException`s and apply them (needs credentials).
    pub exceptions: bool,
}

/// The longest the audit may take, after the shutdown signal, to release its Lease.
const AUDIT_RELEASE: Duration = Duration::from_secs(4);

/// The audit and the exceptions watch need credentials at start (a missing service account
/// stops start-up), but never the API server itself: they retry while the webhook serves.
async fn cluster_config(needed_by: &str) -> anyhow::Result<kube::Config> {
    kube::Config::infer().await.with_context(|| {
        format!("{needed_by} needs Kubernetes credentials (in-cluster or a kubeconfig)")
    })
}

async fn audit_settings(options: &AuditOptions) -> anyhow::Result<(kube::Config, AuditSettings)> {
    let kube_config = cluster_config("--audit").await?;
    let identity = options
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("asyncapi-guard-{}", std::process::id()));
    Ok((
        kube_config,
        AuditSettings {
            lease: options.lease.clone(),
            namespace: options.namespace.clone(),
            identity,
            resync: options.resync,
            reports: options.reports,
            owner_deployment: options.owner_deployment.clone(),
        },
    ))
}

/// Runs `serve` until SIGTERM or SIGINT, then shuts every part down in order.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let (config, prepared) = server::prepare(&options.webhook).await?;
    let audit = match &options.audit {
        Some(audit) => Some(audit_settings(audit).await?),
        None => None,
    };
    let shared = Shared::new(config);
    let shutdown = Shutdown::new();
    let exceptions = if options.exceptions {
        let client = kube::Client::try_from(cluster_config("--exceptions").await?)
            .context("cannot make a Kubernetes client for the exceptions watch")?;
        shared.health.wait_for_exceptions();
        Some(tokio::spawn(crate::service::exceptions::keep(
            client,
            shared.clone(),
            shutdown.clone(),
        )))
    } else {
        None
    };

    let audit_thread = match audit {
        Some((kube_config, settings)) => Some(
            crate::audit::controller::spawn(
                kube_config,
                shared.clone(),
                settings,
                shutdown.clone(),
            )
            .context("cannot start the audit")?,
        ),
        None => None,
    };
    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let signal = shutdown_signal().await;
            info!(signal, "shutting down");
            shutdown.cancel();
        })
    };

    let served = server::serve(&options.webhook, prepared, shared, shutdown.clone()).await;
    // Whatever ended the webhook ends the rest.
    shutdown.cancel();
    signals.abort();
    if let Some(exceptions) = exceptions {
        exceptions.abort();
    }
    if let Some(thread) = audit_thread {
        let joined = tokio::time::timeout(
            AUDIT_RELEASE,
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await;
        if joined.is_err() {
            warn!("audit: did not stop in time; its Lease will expire on its own");
        }
    }
    Ok(served?)
}

async fn shutdown_signal() -> &'static str {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
