//! What every request reads: the configuration in force (swapped whole on reload) and
//! whether the server is ready.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::engine::Engine;
use crate::kubernetes::extract::ExtractConfig;

/// The configuration in force. A reload builds a new one and swaps it in; a request holds
/// the one it started with.
#[derive(Debug, Default)]
pub struct ActiveConfig {
    pub engine: Engine,
    pub kubernetes: ExtractConfig,
}

impl From<Config> for ActiveConfig {
    fn from(config: Config) -> Self {
        ActiveConfig {
            engine: Engine::new(config.policy),
            kubernetes: config.kubernetes,
        }
    }
}

/// Readiness: certificate and configuration loaded, and not draining.
#[derive(Debug, Default)]
pub struct Health {
    certificate_loaded: AtomicBool,
    config_loaded: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_certificate_loaded(&self) {
        self.certificate_loaded.store(true, Ordering::Release);
    }

    pub fn set_config_loaded(&self) {
        self.config_loaded.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            Err("draining")
        } else if !self.certificate_loaded.load(Ordering::Acquire) {
            Err("certificate not loaded")
        } else if !self.config_loaded.load(Ordering::Acquire) {
            Err("configuration not loaded")
        } else {
            Ok(())
        }
    }
}
