//! Every replica keeps the cluster's `AsyncAPIException`s from a watch, so that admission
//! reads them without an API call on the request path (kube-runtime's reflector discipline:
//! the set is swapped in whole once a list has completed, never used half-listed).
//!
//! - Until the first list has completed, the replica is not ready (`/readyz`).
//! - While the watch is down, the last known set stays in force; the
//!   `asyncapi_guard_exceptions_stale` gauge is 1 and one log line says so. It is 0 again
//!   once a new list has completed ([`relisting`]).
//! - Without the CRD there are no exceptions: said once, looked for again on the watch's
//!   backoff, and picked up once the CRD is installed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use super::watch::relisting;
use super::{Shared, Shutdown};
use crate::kubernetes::exceptions::{Exception, ExceptionSet, exception_resource};

/// How often a watch that stays down is said again in the log.
const QUIET: Duration = Duration::from_secs(300);

/// Where the watch stands, for what it logs and exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Starting,
    Current,
    /// The watch failed: the last known set stays in force.
    Stale,
    /// The CRD is not installed: no exceptions.
    NoCrd,
}

/// Keeps `shared.exceptions` equal to the cluster's exceptions until `shutdown`.
pub async fn keep(client: Client, shared: Shared, shutdown: Shutdown) {
    let api: Api<DynamicObject> = Api::all_with(client, &exception_resource());
    let mut events = relisting(api, watcher::Config::default()).boxed();
    // By uid; `listing` holds a re-list until it is complete.
    let mut current: BTreeMap<String, Exception> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, Exception>> = None;
    let mut standing = Standing::Starting;
    // When the watch went down, and when that was last said.
    let mut down: Option<tokio::time::Instant> = None;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let publish = |current: &BTreeMap<String, Exception>| {
            shared
                .exceptions
                .store(Arc::new(ExceptionSet::new(current.values().cloned())));
        };
        match event {
            Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(listing) = &mut listing {
                    listing.insert(
                        object.uid().unwrap_or_default(),
                        Exception::from_dynamic(&object),
                    );
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = listing.take() {
                    current = listed;
                }
                publish(&current);
                if standing != Standing::Current {
                    info!(
                        exceptions = current.len(),
                        "exceptions: listed; the watch is current"
                    );
                }
                standing = Standing::Current;
                down = None;
                shared.metrics.exceptions_stale.set(0);
                shared.health.exceptions_listed();
            }
            Ok(watcher::Event::Apply(object)) => {
                current.insert(
                    object.uid().unwrap_or_default(),
                    Exception::from_dynamic(&object),
                );
                publish(&current);
            }
            Ok(watcher::Event::Delete(object)) => {
                current.remove(&object.uid().unwrap_or_default());
                publish(&current);
            }
            Err(error) if crd_missing(&error) => {
                // No CRD, so no exception can exist: ready, with none.
                if standing != Standing::NoCrd {
                    info!(
                        "exceptions: the AsyncAPIException CRD is not installed, so no exceptions apply; looking for it again"
                    );
                }
                standing = Standing::NoCrd;
                down = None;
                current.clear();
                publish(&current);
                shared.metrics.exceptions_stale.set(0);
                shared.health.exceptions_listed();
            }
            Err(error) => {
                // Once per outage (and again if it lasts), not once per retry.
                if down.is_none_or(|since| since.elapsed() > QUIET) {
                    warn!(error = %error, exceptions = current.len(), "exceptions: the watch is down; the last known exceptions stay in force until it is back");
                    down = Some(tokio::time::Instant::now());
                }
                if standing != Standing::Starting {
                    standing = Standing::Stale;
                }
                shared.metrics.exceptions_stale.set(1);
            }
        }
    }
}

/// A list or watch of a kind the API server does not serve answers 404 with no details.
fn crd_missing(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            if status.code == 404
    )
}
