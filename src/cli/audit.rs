//! `asyncapi-guard audit`: judges what is already in the cluster, in the same formats as
//! `check`, with the same exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::audit::list;
use crate::audit::reports::{ObjectResults, render_stream, reports_of};
use crate::config::Config;
use crate::report::{self, DocumentReport, Format};
use crate::service::state::ActiveConfig;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long, env = "ASYNCAPI_GUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, env = "ASYNCAPI_GUARD_CONTEXT")]
    pub context: Option<String>,
    /// Namespace to audit (default: the context's).
    #[arg(
        short = 'n',
        long,
        env = "ASYNCAPI_GUARD_AUDIT_NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Audit every namespace.
    #[arg(short = 'A', long, env = "ASYNCAPI_GUARD_ALL_NAMESPACES")]
    pub all_namespaces: bool,
    /// Output format: as `check`'s, or `openreports` (one OpenReports `Report` per namespace,
    /// and a `ClusterReport` for cluster-scoped objects, a YAML stream ready for
    /// `kubectl apply -f -`).
    #[arg(long, value_enum, default_value_t = AuditFormat::Text, env = "ASYNCAPI_GUARD_FORMAT")]
    pub format: AuditFormat,
    /// Configuration file (YAML), as the webhook's.
    #[arg(long, env = "ASYNCAPI_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Objects per page when listing.
    #[arg(long, env = "ASYNCAPI_GUARD_PAGE_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Sarif,
    Openreports,
}

pub async fn client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&String>,
) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: context.cloned(),
        ..kube::config::KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer()
            .await
            .context("no Kubernetes credentials (kubeconfig or in-cluster)")?,
    };
    Ok(kube::Client::try_from(config)?)
}

pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load_or_defaults(path)?,
        None => Config::default(),
    };
    let config = ActiveConfig::from(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let census = runtime.block_on(async {
        let client = client(args.kubeconfig.as_ref(), args.context.as_ref()).await?;
        let namespace = match (&args.namespace, args.all_namespaces) {
            (_, true) => None,
            (Some(ns), false) => Some(ns.clone()),
            (None, false) => Some(client.default_namespace().to_owned()),
        };
        list::census(&client, &config, namespace.as_deref(), args.page_size)
            .await
            .context("cannot list the cluster's objects")
    })?;
    for skipped in &census.skipped {
        eprintln!("asyncapi-guard: not audited: {skipped}");
    }
    let reports: Vec<DocumentReport> = census.audited.iter().flat_map(|a| a.reports()).collect();
    let output = match args.format {
        AuditFormat::Text => report::render(Format::Text, &reports),
        AuditFormat::Json => report::render(Format::Json, &reports),
        AuditFormat::Sarif => report::render(Format::Sarif, &reports),
        // Unguarded ConfigMaps are not judged by admission: they are no admission results.
        AuditFormat::Openreports => {
            let objects: Vec<ObjectResults> = census
                .audited
                .iter()
                .filter(|a| a.guarded())
                .map(ObjectResults::of)
                .collect();
            render_stream(&reports_of(&objects))
        }
    };
    std::io::stdout()
        .lock()
        .write_all(output.as_bytes())
        .context("cannot write the output")?;
    Ok(if reports.iter().any(|r| !r.evaluation.allowed()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
