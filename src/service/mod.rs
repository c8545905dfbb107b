//! What the parts of `serve` share, and nothing else: the configuration in force (swapped
//! whole on reload), readiness, the metrics, and the shutdown signal. The webhook and the
//! audit both import this module; neither imports the other, and the composition root
//! ([`crate::app`]) wires them together.

pub mod backoff;
pub mod exceptions;
pub mod metrics;
pub mod owner;
pub mod state;
pub mod watch;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::kubernetes::exceptions::ExceptionSet;
use metrics::Metrics;
use state::{ActiveConfig, Health};

/// Cancelled once, on SIGTERM or SIGINT: every long-running part stops on it.
pub use tokio_util::sync::CancellationToken as Shutdown;

/// The state the webhook's requests, the reloader and the audit read.
#[derive(Debug, Clone)]
pub struct Shared {
    pub config: Arc<ArcSwap<ActiveConfig>>,
    /// The cluster's exceptions, as the watch last listed them (swapped whole).
    pub exceptions: Arc<ArcSwap<ExceptionSet>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        Shared {
            config: Arc::new(ArcSwap::from_pointee(ActiveConfig::from(config))),
            exceptions: Arc::new(ArcSwap::from_pointee(ExceptionSet::default())),
            metrics: Arc::new(Metrics::default()),
            health: Arc::new(Health::default()),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new(Config::default())
    }
}
