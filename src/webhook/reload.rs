//! Reloading the certificate and the configuration when their files change, without a
//! restart. Kubernetes updates a mounted Secret or ConfigMap by swapping a `..data` symlink
//! in the volume's directory, so the directories are watched (not only the files), and a
//! periodic re-read catches whatever a watcher misses. A change is acted on only when the
//! bytes differ; a bad new file is logged and counted, and the last good one stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use notify::{RecursiveMode, Watcher};
use tracing::{error, info, warn};

use super::tls::{self, TlsFiles};
use crate::config::Config;
use crate::service::Shared;
use crate::service::state::ActiveConfig;

/// Writes are often several events in a row (a Secret update is four or five): wait for
/// the last before reading.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct Reloader {
    state: Shared,
    tls: Option<(TlsFiles, RustlsConfig)>,
    config_path: Option<PathBuf>,
    seen_tls: Option<Vec<Vec<u8>>>,
    seen_config: Option<Vec<u8>>,
}

impl Reloader {
    /// `tls` and `config_path` are what start-up loaded; their current contents are the
    /// baseline.
    pub fn new(
        state: Shared,
        tls: Option<(TlsFiles, RustlsConfig)>,
        config_path: Option<PathBuf>,
    ) -> Self {
        let mut reloader = Reloader {
            state,
            tls,
            config_path,
            seen_tls: None,
            seen_config: None,
        };
        reloader.seen_tls = reloader.tls_contents();
        reloader.seen_config = reloader
            .config_path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok());
        reloader
    }

    fn tls_contents(&self) -> Option<Vec<Vec<u8>>> {
        let (files, _) = self.tls.as_ref()?;
        files
            .paths()
            .iter()
            .map(|p| std::fs::read(p).ok())
            .collect()
    }

    fn watched_directories(&self) -> Vec<PathBuf> {
        let mut files: Vec<&Path> = self
            .tls
            .as_ref()
            .map(|(f, _)| f.paths())
            .unwrap_or_default();
        files.extend(self.config_path.as_deref());
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .map(|f| match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Re-reads the files and reloads what changed.
    pub fn check(&mut self) {
        let tls_now = self.tls_contents();
        if tls_now.is_some() && tls_now != self.seen_tls {
            self.seen_tls = tls_now;
            if let Some((files, rustls)) = &self.tls {
                match tls::load(files) {
                    Ok(loaded) => {
                        rustls.reload_from_config(loaded.config);
                        self.state.metrics.set_certificate_expiry(loaded.expires_at);
                        self.state.metrics.certificate_reloaded(true);
                        info!(cert = %files.cert.display(), expires_at = loaded.expires_at, "certificate reloaded");
                    }
                    Err(e) => {
                        self.state.metrics.certificate_reloaded(false);
                        warn!(error = %e, "certificate reload failed; the previous certificate stays in use");
                    }
                }
            }
        }
        let Some(path) = &self.config_path else {
            return;
        };
        let config_now = std::fs::read(path).ok();
        if config_now.is_some() && config_now != self.seen_config {
            self.seen_config = config_now;
            match Config::load(path) {
                Ok(config) => {
                    self.state
                        .config
                        .store(Arc::new(ActiveConfig::from(config)));
                    self.state.metrics.config_reloaded(true);
                    info!(config = %path.display(), "configuration reloaded");
                }
                Err(e) => {
                    self.state.metrics.config_reloaded(false);
                    error!(error = %e, "configuration reload failed; the previous configuration stays in force");
                }
            }
        }
    }

    /// Watches until the task is dropped.
    pub async fn run(mut self, poll_every: Duration) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            // A full channel already holds a wake-up: nothing is lost.
            let _ = tx.try_send(());
        });
        let _watcher = match watcher {
            Ok(mut watcher) => {
                for dir in self.watched_directories() {
                    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        warn!(dir = %dir.display(), error = %e, "cannot watch; changes are still found by periodic re-reads");
                    }
                }
                Some(watcher)
            }
            Err(e) => {
                warn!(error = %e, "no file watcher; changes are found by periodic re-reads");
                None
            }
        };
        let mut tick = tokio::time::interval(poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tick.tick() => {}
            }
            self.check();
        }
    }
}
