//! The webhook's listeners: everything is read and checked before a port is bound (a bad
//! configuration stops start-up, so a rollout stops at its first pod); then the TLS
//! admission port, the plain-HTTP metrics port, the reloader, the self-managed
//! certificates; on shutdown, drain and stop within the grace period.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::TokioTimer;
use tracing::info;

use super::api::{AppState, admission_router, metrics_router};
use super::certificates::{CertificateError, Material, SelfManaged};
use super::reload::Reloader;
use super::tls::{self, TlsError, TlsFiles};
use crate::config::{Config, ConfigError};
use crate::service::{Shared, Shutdown};

/// A TLS handshake or a request's headers that take longer than this are dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The example review the quick start posts.
const EXAMPLE_REVIEW: &str = include_str!("../../examples/admission-review.json");
/// How often self-managed certificates are checked (renewal happens 30 days before expiry).
const SELF_MANAGED_CHECK: Duration = Duration::from_secs(3600);

/// Why the webhook cannot start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Options that cannot work together or are out of range.
    #[error("{0}")]
    Options(&'static str),
    #[error(
        "self-managed certificates need Kubernetes credentials (in-cluster or a kubeconfig): {0}"
    )]
    Credentials(#[source] kube::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("self-managed certificates: {0}")]
    Certificates(#[from] CertificateError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("the admission server stopped: {0}")]
    Stopped(String),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// A CA and certificate the server keeps in a Secret (no cert-manager).
    SelfManaged(SelfManagedOptions),
    /// Made at start, for localhost; the CA and an example review are written to `dir`.
    SelfSigned { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct SelfManagedOptions {
    pub secret: String,
    pub namespace: String,
    /// DNS names, and IP addresses (which become IP SANs).
    pub names: Vec<String>,
    pub webhook_configuration: Option<String>,
    pub dir: PathBuf,
    /// The Deployment that owns the Secret (uninstalling deletes it).
    pub owner_deployment: Option<String>,
}

/// What the webhook needs, whoever starts it (the CLI maps its flags onto this).
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: TlsSource,
    pub client_ca: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub reload_interval: Duration,
}

/// The certificate, checked, and what keeps it current.
#[derive(Debug)]
pub struct Prepared {
    tls: tls::Loaded,
    tls_files: Option<TlsFiles>,
    /// Self-signed mode: where the CA and the example review were written.
    self_signed: Option<(PathBuf, PathBuf)>,
    /// Self-managed mode: kept up to date by a background task, from what start-up made.
    self_managed: Option<(SelfManaged, Material)>,
}

async fn self_managed(options: &SelfManagedOptions) -> Result<SelfManaged, ServerError> {
    if options.names.is_empty() {
        return Err(ServerError::Options(
            "--tls-secret needs --tls-dns-names (the Service's names, such as guard.ns.svc)",
        ));
    }
    let client = kube::Client::try_default()
        .await
        .map_err(ServerError::Credentials)?;
    let owner = match &options.owner_deployment {
        Some(name) => crate::service::owner::deployment(&client, &options.namespace, name).await,
        None => None,
    };
    Ok(SelfManaged {
        client,
        owner,
        namespace: options.namespace.clone(),
        secret: options.secret.clone(),
        webhook_configuration: options.webhook_configuration.clone(),
        dns_names: options.names.clone(),
        dir: options.dir.clone(),
    })
}

/// Reads and checks the configuration and the certificate, before anything listens.
pub async fn prepare(options: &WebhookOptions) -> Result<(Config, Prepared), ServerError> {
    if options.max_request_bytes < 1024 {
        return Err(ServerError::Options(
            "--max-request-bytes must be at least 1024",
        ));
    }
    if options.request_timeout < Duration::from_millis(100)
        || options.request_timeout > Duration::from_secs(30)
    {
        return Err(ServerError::Options(
            "--request-timeout must be between 100ms and 30s (the API server waits at most 30s)",
        ));
    }
    let config = match &options.config {
        Some(path) => Config::load_or_defaults(path)?,
        None => Config::default(),
    };
    let prepared = match &options.tls {
        TlsSource::SelfManaged(self_managed_options) => {
            let managed = self_managed(self_managed_options).await?;
            let material = managed.reconcile().await?;
            let files = TlsFiles {
                cert: managed.cert_path(),
                key: managed.key_path(),
                client_ca: options.client_ca.clone(),
            };
            Prepared {
                tls: tls::load(&files)?,
                tls_files: Some(files),
                self_signed: None,
                self_managed: Some((managed, material)),
            }
        }
        TlsSource::Files { cert, key } => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: options.client_ca.clone(),
            };
            Prepared {
                tls: tls::load(&files)?,
                tls_files: Some(files),
                self_signed: None,
                self_managed: None,
            }
        }
        TlsSource::SelfSigned { dir } => {
            if options.client_ca.is_some() {
                return Err(ServerError::Options(
                    "--client-ca needs --tls-cert and --tls-key",
                ));
            }
            let generated = tls::self_signed()?;
            let write_error = |path: &Path| {
                let path = path.to_owned();
                move |source| ServerError::Write { path, source }
            };
            std::fs::create_dir_all(dir).map_err(write_error(dir))?;
            let ca = dir.join("ca.pem");
            let example = dir.join("example-review.json");
            std::fs::write(&ca, &generated.ca_pem).map_err(write_error(&ca))?;
            std::fs::write(&example, EXAMPLE_REVIEW).map_err(write_error(&example))?;
            Prepared {
                tls: generated.loaded,
                tls_files: None,
                self_signed: Some((ca, example)),
                self_managed: None,
            }
        }
    };
    Ok((config, prepared))
}

/// Serves until `shutdown` is cancelled (or a listener fails), then drains: not ready at
/// once, new connections refused after the delay, requests in flight finished within the
/// grace.
pub async fn serve(
    options: &WebhookOptions,
    prepared: Prepared,
    shared: Shared,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    shared
        .metrics
        .set_certificate_expiry(prepared.tls.expires_at);
    let state = AppState {
        shared: shared.clone(),
        request_timeout: options.request_timeout,
    };

    let rustls = RustlsConfig::from_config(prepared.tls.config);
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls.clone())
        .handshake_timeout(HANDSHAKE_TIMEOUT);
    let mut server = axum_server::bind(options.listen)
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let app = admission_router(state.clone(), options.max_request_bytes);
    let mut admission = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let Some(admission_addr) = handle.listening().await else {
        let error = match admission.await {
            Ok(Err(e)) => e.to_string(),
            _ => "unknown error".to_owned(),
        };
        return Err(ServerError::Listen {
            addr: options.listen,
            reason: error,
        });
    };

    let metrics_error = |e: std::io::Error| ServerError::Listen {
        addr: options.metrics_listen,
        reason: e.to_string(),
    };
    let metrics_listener = tokio::net::TcpListener::bind(options.metrics_listen)
        .await
        .map_err(metrics_error)?;
    let metrics_addr = metrics_listener.local_addr().map_err(metrics_error)?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(
        axum::serve(metrics_listener, metrics_router(state.clone()))
            .with_graceful_shutdown(async move {
                let _ = metrics_stopped.await;
            })
            .into_future(),
    );
    info!(admission = %admission_addr, metrics = %metrics_addr, "listening");
    if let Some((ca, example)) = &prepared.self_signed {
        print_quick_start(admission_addr, ca, example);
    }

    let reloader = Reloader::new(
        shared.clone(),
        prepared.tls_files.map(|files| (files, rustls)),
        options.config.clone(),
    );
    let reloading = tokio::spawn(reloader.run(options.reload_interval));
    let renewing = prepared
        .self_managed
        .map(|(managed, material)| tokio::spawn(managed.run(SELF_MANAGED_CHECK, material)));
    let stop_background = || {
        reloading.abort();
        renewing.iter().for_each(tokio::task::JoinHandle::abort);
    };

    tokio::select! {
        () = shutdown.cancelled() => info!("draining"),
        ended = &mut admission => {
            stop_background();
            return match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServerError::Stopped(e.to_string())),
                Err(e) => Err(ServerError::Stopped(e.to_string())),
            };
        }
    }
    // Not ready from now on, so the endpoint is taken out of the Service; keep serving
    // while that propagates, then stop accepting and finish what is in flight.
    shared.health.start_draining();
    tokio::time::sleep(options.shutdown_delay).await;
    handle.graceful_shutdown(Some(options.shutdown_grace));
    let _ = admission.await;
    let _ = stop_metrics.send(());
    let _ = metrics_server.await;
    stop_background();
    info!("stopped");
    Ok(())
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
