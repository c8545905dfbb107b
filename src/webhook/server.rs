//! `serve`: everything is read and checked before a port is bound (a bad configuration
//! stops start-up, so a rollout stops at its first pod); then the TLS admission port, the
//! plain-HTTP metrics port, the reloader; on SIGTERM, drain and stop within the grace
//! period.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::TokioTimer;
use tracing::info;

use super::api::{AppState, admission_router, metrics_router};
use super::certificates::SelfManaged;
use super::metrics::Metrics;
use super::reload::Reloader;
use super::state::{ActiveConfig, Health};
use super::tls::{self, TlsFiles};
use crate::cli::serve::ServeArgs;
use crate::config::Config;

/// A TLS handshake or a request's headers that take longer than this are dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The example review the quick start posts.
const EXAMPLE_REVIEW: &str = include_str!("../../examples/admission-review.json");

/// Start-up material, all of it checked.
#[derive(Debug)]
struct Startup {
    config: Config,
    tls: tls::Loaded,
    tls_files: Option<TlsFiles>,
    /// Self-signed mode: where the CA and the example review were written.
    self_signed: Option<(PathBuf, PathBuf)>,
    /// Self-managed mode: kept up to date by a background task, from what start-up made.
    self_managed: Option<(SelfManaged, super::certificates::Material)>,
}

/// How often self-managed certificates are checked (renewal happens 30 days before expiry).
const SELF_MANAGED_CHECK: Duration = Duration::from_secs(3600);

/// The audit needs credentials at start (a missing service account stops start-up), but
/// never the API server itself: it retries while the webhook serves.
async fn audit_settings(
    args: &ServeArgs,
) -> anyhow::Result<(kube::Config, crate::audit::controller::AuditSettings)> {
    let kube_config = kube::Config::infer()
        .await
        .context("--audit needs Kubernetes credentials (in-cluster or a kubeconfig)")?;
    let identity = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("asyncapi-guard-{}", std::process::id()));
    Ok((
        kube_config,
        crate::audit::controller::AuditSettings {
            lease: args.audit_lease.clone(),
            namespace: args.namespace.clone(),
            identity,
            resync: args.audit_resync,
        },
    ))
}

async fn self_managed(args: &ServeArgs, secret: &str) -> anyhow::Result<SelfManaged> {
    if args.tls_dns_names.is_empty() {
        bail!("--tls-secret needs --tls-dns-names (the Service's names, such as guard.ns.svc)");
    }
    let client = kube::Client::try_default().await.context(
        "self-managed certificates need Kubernetes credentials (in-cluster or a kubeconfig)",
    )?;
    Ok(SelfManaged {
        client,
        namespace: args.namespace.clone(),
        secret: secret.to_owned(),
        webhook_configuration: args.webhook_configuration.clone(),
        dns_names: args.tls_dns_names.clone(),
        dir: args
            .tls_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("asyncapi-guard").join("tls")),
    })
}

async fn prepare(args: &ServeArgs) -> anyhow::Result<Startup> {
    if args.max_request_bytes < 1024 {
        bail!("--max-request-bytes must be at least 1024");
    }
    if args.request_timeout < Duration::from_millis(100)
        || args.request_timeout > Duration::from_secs(30)
    {
        bail!("--request-timeout must be between 100ms and 30s (the API server waits at most 30s)");
    }
    let config = match &args.config {
        Some(path) => Config::load_or_defaults(path)?,
        None => Config::default(),
    };
    if let Some(secret) = &args.tls_secret {
        let managed = self_managed(args, secret).await?;
        let material = managed
            .reconcile()
            .await
            .context("self-managed certificates")?;
        let files = TlsFiles {
            cert: managed.cert_path(),
            key: managed.key_path(),
            client_ca: args.client_ca.clone(),
        };
        let loaded = tls::load(&files)?;
        return Ok(Startup {
            config,
            tls: loaded,
            tls_files: Some(files),
            self_signed: None,
            self_managed: Some((managed, material)),
        });
    }
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            };
            let loaded = tls::load(&files)?;
            Ok(Startup {
                config,
                tls: loaded,
                tls_files: Some(files),
                self_signed: None,
                self_managed: None,
            })
        }
        (None, None) => {
            if args.client_ca.is_some() {
                bail!("--client-ca needs --tls-cert and --tls-key");
            }
            let generated = tls::self_signed()?;
            let dir = args
                .self_signed_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("asyncapi-guard"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let ca = dir.join("ca.pem");
            let example = dir.join("example-review.json");
            std::fs::write(&ca, &generated.ca_pem)
                .with_context(|| format!("cannot write {}", ca.display()))?;
            std::fs::write(&example, EXAMPLE_REVIEW)
                .with_context(|| format!("cannot write {}", example.display()))?;
            Ok(Startup {
                config,
                tls: generated.loaded,
                tls_files: None,
                self_signed: Some((ca, example)),
                self_managed: None,
            })
        }
        _ => bail!("--tls-cert and --tls-key go together"),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let startup = prepare(&args).await?;
    let audit = if args.audit {
        Some(audit_settings(&args).await?)
    } else {
        None
    };

    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::default());
    metrics.set_certificate_expiry(startup.tls.expires_at);
    let state = AppState {
        config: Arc::new(ArcSwap::from_pointee(ActiveConfig::from(startup.config))),
        metrics,
        health: health.clone(),
        request_timeout: args.request_timeout,
    };

    let rustls = RustlsConfig::from_config(startup.tls.config);
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls.clone())
        .handshake_timeout(HANDSHAKE_TIMEOUT);
    let mut server = axum_server::bind(args.listen)
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let app = admission_router(state.clone(), args.max_request_bytes);
    let mut admission = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let Some(admission_addr) = handle.listening().await else {
        let error = match admission.await {
            Ok(Err(e)) => e.to_string(),
            _ => "unknown error".to_owned(),
        };
        bail!("cannot listen on {}: {error}", args.listen);
    };

    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(
        axum::serve(metrics_listener, metrics_router(state.clone()))
            .with_graceful_shutdown(async move {
                let _ = metrics_stopped.await;
            })
            .into_future(),
    );
    info!(admission = %admission_addr, metrics = %metrics_addr, "listening");
    if let Some((ca, example)) = &startup.self_signed {
        print_quick_start(admission_addr, ca, example);
    }

    let reloader = Reloader::new(
        state.clone(),
        startup.tls_files.map(|files| (files, rustls)),
        args.config.clone(),
    );
    let reloading = tokio::spawn(reloader.run(args.reload_interval));
    if let Some((kube_config, settings)) = audit {
        crate::audit::controller::spawn(kube_config, state.clone(), settings)
            .context("cannot start the audit")?;
    }
    let renewing = startup
        .self_managed
        .map(|(managed, material)| tokio::spawn(managed.run(SELF_MANAGED_CHECK, material)));

    tokio::select! {
        signal = shutdown_signal() => info!(signal, "draining"),
        ended = &mut admission => {
            reloading.abort();
            renewing.iter().for_each(tokio::task::JoinHandle::abort);
            return match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e).context("the admission server stopped"),
                Err(e) => Err(e).context("the admission server stopped"),
            };
        }
    }
    // Not ready from now on, so the endpoint is taken out of the Service; keep serving
    // while that propagates, then stop accepting and finish what is in flight.
    health.start_draining();
    tokio::time::sleep(args.shutdown_delay).await;
    handle.graceful_shutdown(Some(args.shutdown_grace));
    let _ = admission.await;
    let _ = stop_metrics.send(());
    let _ = metrics_server.await;
    reloading.abort();
    renewing.iter().for_each(tokio::task::JoinHandle::abort);
    info!("stopped");
    Ok(())
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

fn print_quick_start(addr: SocketAddr, ca: &Path, example: &Path) {
    let port = addr.port();
    println!(
        "asyncapi-guard serves the admission webhook on https://localhost:{port}/validate with a self-signed certificate.\n\
         Post the bundled example review (a ConfigMap with an insecure AsyncAPI document) to see a denial:\n\n  \
         curl --cacert {ca} -H 'Content-Type: application/json' --data-binary @{example} https://localhost:{port}/validate\n",
        ca = ca.display(),
        example = example.display(),
    );
}
