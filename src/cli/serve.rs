//! `asyncapi-guard serve`: the flags of the webhook.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::app::{AuditOptions, ServeOptions};
use crate::webhook::server::{SelfManagedOptions, TlsSource, WebhookOptions};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the admission port (HTTPS): /validate, /healthz, /readyz.
    #[arg(long, env = "ASYNCAPI_GUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the metrics port (plain HTTP): /metrics, /healthz, /readyz.
    #[arg(
        long,
        env = "ASYNCAPI_GUARD_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Serving certificate chain (PEM), reloaded when it changes. Without it, a self-signed
    /// certificate for localhost is made at start.
    #[arg(long, env = "ASYNCAPI_GUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the serving certificate, reloaded when it changes.
    #[arg(long, env = "ASYNCAPI_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Self-managed certificates (no cert-manager): the Secret, in --namespace, that holds a
    /// CA and the serving certificate; created when missing, renewed before expiry.
    #[arg(long, env = "ASYNCAPI_GUARD_TLS_SECRET", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_secret: Option<String>,
    /// Self-managed certificates: the names of the serving certificate (the Service's DNS
    /// names). A name that is an IP address (`127.0.0.1`, `::1`) becomes an IP SAN.
    #[arg(
        long,
        env = "ASYNCAPI_GUARD_TLS_DNS_NAMES",
        value_delimiter = ',',
        requires = "tls_secret"
    )]
    pub tls_dns_names: Vec<String>,
    /// Self-managed certificates: the ValidatingWebhookConfiguration whose caBundle is kept
    /// equal to the CA.
    #[arg(
        long,
        env = "ASYNCAPI_GUARD_WEBHOOK_CONFIGURATION",
        requires = "tls_secret"
    )]
    pub webhook_configuration: Option<String>,
    /// Self-managed certificates: where the serving certificate is written for the server.
    #[arg(long, env = "ASYNCAPI_GUARD_TLS_DIR", requires = "tls_secret")]
    pub tls_dir: Option<PathBuf>,
    /// The namespace this server runs in (the chart sets it from the pod).
    #[arg(long, env = "ASYNCAPI_GUARD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Also audit the cluster: the replica that holds the Lease writes the AsyncAPI resources'
    /// status, emits Events on non-compliant and unguarded ConfigMaps, and exports gauges.
    #[arg(long, env = "ASYNCAPI_GUARD_AUDIT")]
    pub audit: bool,
    /// Watch the cluster's AsyncAPIException objects and apply those in force (needs
    /// Kubernetes credentials, and the RBAC to list and watch them). The server is ready
    /// once it has listed them; without their CRD there are none.
    #[arg(long, env = "ASYNCAPI_GUARD_EXCEPTIONS")]
    pub exceptions: bool,
    /// The audit's Lease, in --namespace.
    #[arg(
        long,
        env = "ASYNCAPI_GUARD_AUDIT_LEASE",
        default_value = "asyncapi-guard-audit"
    )]
    pub audit_lease: String,
    /// How often the audit re-judges everything (it also does on a configuration change).
    #[arg(long, env = "ASYNCAPI_GUARD_AUDIT_RESYNC", default_value = "10m", value_parser = humantime::parse_duration)]
    pub audit_resync: Duration,
    /// The audit keeps an OpenReports `Report` per namespace, and a `ClusterReport` for
    /// cluster-scoped objects, where their CRDs are installed (Policy Reporter and Kyverno's
    /// tools read them).
    #[arg(long, env = "ASYNCAPI_GUARD_AUDIT_REPORTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit_reports: bool,
    /// The Deployment this server runs in (the chart sets it): it owns the certificate
    /// Secret and the audit's Lease, so uninstalling deletes them.
    #[arg(long, env = "ASYNCAPI_GUARD_OWNER_DEPLOYMENT")]
    pub owner_deployment: Option<String>,
    /// This replica's name in the audit's Lease (the chart sets the pod name).
    #[arg(long, env = "ASYNCAPI_GUARD_POD_NAME")]
    pub pod_name: Option<String>,
    /// CA (PEM) that must have signed the client certificate of the API server.
    #[arg(long, env = "ASYNCAPI_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Configuration file (YAML), reloaded when it changes.
    #[arg(long, env = "ASYNCAPI_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest request body accepted (an UPDATE carries two objects).
    #[arg(long, env = "ASYNCAPI_GUARD_MAX_REQUEST_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Longest time to judge a request (never past the API server's own timeout).
    #[arg(long, env = "ASYNCAPI_GUARD_REQUEST_TIMEOUT", default_value = "9s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// On SIGTERM: how long to keep serving while not ready, before refusing new connections.
    #[arg(long, env = "ASYNCAPI_GUARD_SHUTDOWN_DELAY", default_value = "3s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// On SIGTERM: how long requests in flight may take to finish.
    #[arg(long, env = "ASYNCAPI_GUARD_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How often the certificate and configuration files are re-read even without a change
    /// event.
    #[arg(long, env = "ASYNCAPI_GUARD_RELOAD_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
    /// Where self-signed mode writes its CA certificate and the example review.
    #[arg(long, env = "ASYNCAPI_GUARD_SELF_SIGNED_DIR")]
    pub self_signed_dir: Option<PathBuf>,
    /// Log format: JSON lines (in the cluster) or text.
    #[arg(long, env = "ASYNCAPI_GUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Logs to stderr; `RUST_LOG` filters (default `info`). kube's client logs every failed
/// request at error level, so an API server outage would print a line per retry of every
/// watch; the parts that retry say so themselves, once per outage, so that logger is off
/// unless `RUST_LOG` names it.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    if !directives.contains("kube_client") {
        directives.push_str(",kube_client::client::builder=off");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a redirected log must stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

impl ServeArgs {
    /// The flags, as the parts of `serve` take them.
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        let tls = match (&self.tls_secret, &self.tls_cert, &self.tls_key) {
            (Some(secret), _, _) => TlsSource::SelfManaged(SelfManagedOptions {
                secret: secret.clone(),
                namespace: self.namespace.clone(),
                names: self.tls_dns_names.clone(),
                webhook_configuration: self.webhook_configuration.clone(),
                dir: self
                    .tls_dir
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("asyncapi-guard").join("tls")),
                owner_deployment: self.owner_deployment.clone(),
            }),
            (None, Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None, None) => TlsSource::SelfSigned {
                dir: self
                    .self_signed_dir
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("asyncapi-guard")),
            },
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        Ok(ServeOptions {
            webhook: WebhookOptions {
                listen: self.listen,
                metrics_listen: self.metrics_listen,
                tls,
                client_ca: self.client_ca.clone(),
                config: self.config.clone(),
                max_request_bytes: self.max_request_bytes,
                request_timeout: self.request_timeout,
                shutdown_delay: self.shutdown_delay,
                shutdown_grace: self.shutdown_grace,
                reload_interval: self.reload_interval,
            },
            exceptions: self.exceptions,
            audit: self.audit.then(|| AuditOptions {
                lease: self.audit_lease.clone(),
                namespace: self.namespace.clone(),
                identity: self.pod_name.clone(),
                resync: self.audit_resync,
                reports: self.audit_reports,
                owner_deployment: self.owner_deployment.clone(),
            }),
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let small_pages = resident_memory_in_small_pages();
    init_logging(args.log_format);
    if let Err(error) = small_pages {
        tracing::warn!(%error, "cannot turn transparent huge pages off; memory use may be higher");
    }
    let options = args.options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Large documents are judged on the blocking pool; bound it, and memory with it.
        .max_blocking_threads(8)
        .build()?;
    runtime.block_on(crate::app::serve(options))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The allocator's arena asks for transparent huge pages (src/main.rs): right for a short
/// `check`, wrong for a server under a memory limit, where every 2 MiB page touched by one
/// request stays resident (RSS under load rose from 19 to 30 MiB). Turned off for this
/// process first thing. Failing to is not a reason to refuse to start: the server is correct
/// either way and only uses more memory, so it is logged.
fn resident_memory_in_small_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}
