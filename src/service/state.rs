//! What every request reads: the configuration in force (swapped whole on reload) and
//! whether the server is ready.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::engine::Engine;
use crate::engine::memo::Memo;
use k8s_openapi::jiff::Timestamp;

use crate::kubernetes::exceptions::{ExceptionPolicy, ExceptionSet};
use crate::kubernetes::extract::ExtractConfig;
use crate::kubernetes::verdict::Judge;

/// The configuration in force. A reload builds a new one and swaps it in; a request holds
/// the one it started with.
#[derive(Debug)]
pub struct ActiveConfig {
    pub engine: Engine,
    pub kubernetes: ExtractConfig,
    pub exceptions: ExceptionPolicy,
    /// The webhook's verdicts under this configuration: a reload starts an empty one.
    pub memo: Memo,
}

/// What the memo may hold: a few thousand verdicts, a small part of the server's memory.
pub const MEMO_BYTES: u64 = 4 * 1024 * 1024;

impl From<Config> for ActiveConfig {
    fn from(config: Config) -> Self {
        ActiveConfig {
            engine: Engine::new(config.policy),
            kubernetes: config.kubernetes,
            exceptions: config.exceptions,
            memo: Memo::new(MEMO_BYTES),
        }
    }
}

impl ActiveConfig {
    /// How objects are judged under this configuration, with `exceptions`, at `now`.
    pub fn judge<'a>(&'a self, exceptions: &'a ExceptionSet, now: Timestamp) -> Judge<'a> {
        Judge {
            engine: &self.engine,
            config: &self.kubernetes,
            exceptions,
            policy: &self.exceptions,
            now,
        }
    }
}

impl Default for ActiveConfig {
    fn default() -> Self {
        ActiveConfig::from(Config::default())
    }
}

/// Readiness. The server listens only once its certificate and configuration are loaded,
/// and reloads keep the last good ones, so what remains to say is whether it is draining,
/// and, where it watches exceptions, whether it has listed them once.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
    waiting_for_exceptions: AtomicBool,
}

impl Health {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Not ready until [`Self::exceptions_listed`]: a replica that judged without the
    /// exceptions would refuse what they accept.
    pub fn wait_for_exceptions(&self) {
        self.waiting_for_exceptions.store(true, Ordering::Release);
    }

    pub fn exceptions_listed(&self) {
        self.waiting_for_exceptions.store(false, Ordering::Release);
    }

    /// Whether the exceptions are known (listed, or not watched at all).
    pub fn exceptions_ready(&self) -> bool {
        !self.waiting_for_exceptions.load(Ordering::Acquire)
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            Err("draining")
        } else if self.waiting_for_exceptions.load(Ordering::Acquire) {
            Err("the exceptions are not listed yet")
        } else {
            Ok(())
        }
    }
}
