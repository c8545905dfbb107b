//! `asyncapi-guard cleanup`: before an uninstall (the chart's pre-delete hook runs it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::cleanup::{CleanupOptions, cleanup};

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long, env = "ASYNCAPI_GUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, env = "ASYNCAPI_GUARD_CONTEXT")]
    pub context: Option<String>,
    /// The namespace asyncapi-guard is installed in.
    #[arg(long, env = "ASYNCAPI_GUARD_NAMESPACE")]
    pub namespace: String,
    /// The audit's Lease, taken first so that no replica writes again.
    #[arg(long, env = "ASYNCAPI_GUARD_AUDIT_LEASE")]
    pub lease: Option<String>,
    /// The self-managed certificate Secret, deleted.
    #[arg(long, env = "ASYNCAPI_GUARD_TLS_SECRET")]
    pub tls_secret: Option<String>,
    /// The Deployment that owns the Lease (it goes with the Deployment).
    #[arg(long, env = "ASYNCAPI_GUARD_OWNER_DEPLOYMENT")]
    pub owner_deployment: Option<String>,
    /// How long the audit's leader has to notice it lost the Lease.
    #[arg(long, env = "ASYNCAPI_GUARD_LEADER_NOTICE", default_value = "6s", value_parser = humantime::parse_duration)]
    pub leader_notice: Duration,
}

/// Removes what asyncapi-guard wrote; exit 0 even when a step fails (said on standard
/// error), so that an uninstall is never held up by it.
pub fn run(args: &CleanupArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cleaned = runtime.block_on(async {
        let client = super::audit::client(args.kubeconfig.as_ref(), args.context.as_ref())
            .await
            .context("cleanup needs Kubernetes credentials")?;
        let options = CleanupOptions {
            namespace: args.namespace.clone(),
            lease: args.lease.clone(),
            tls_secret: args.tls_secret.clone(),
            owner_deployment: args.owner_deployment.clone(),
            leader_notice: args.leader_notice,
        };
        anyhow::Ok(cleanup(&client, &options).await)
    })?;
    println!(
        "asyncapi-guard cleanup: lease {}, {} report(s) deleted, {} status(es) cleared, certificate Secret {}",
        if cleaned.lease_taken {
            "taken"
        } else {
            "not taken"
        },
        cleaned.reports_deleted,
        cleaned.statuses_cleared,
        if cleaned.secret_deleted {
            "deleted"
        } else {
            "not deleted"
        },
    );
    for problem in &cleaned.problems {
        eprintln!("asyncapi-guard cleanup: could not clean {problem}");
    }
    Ok(ExitCode::SUCCESS)
}
