//! A replica of the in-cluster audit (`serve --audit`) against the fake API server, on the
//! test's local task set (the audit's future is not `Send`: in `serve` it has a thread of
//! its own).

use std::time::Duration;

use asyncapi_guard::audit::controller::{self, AuditSettings};
use asyncapi_guard::service::{Shared, Shutdown};

use super::fake_api::{self, FakeApi};

/// Who holds the audit's Lease.
pub fn holder(api: &FakeApi) -> Option<String> {
    api.get(
        fake_api::LEASES,
        Some("asyncapi-guard"),
        "asyncapi-guard-audit",
    )
    .and_then(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

/// The Lease and namespace the chart gives the audit, reports off, no resync in a test's
/// time.
pub fn settings(identity: &str) -> AuditSettings {
    AuditSettings {
        lease: "asyncapi-guard-audit".into(),
        namespace: "asyncapi-guard".into(),
        identity: identity.into(),
        resync: Duration::from_secs(600),
        reports: false,
        owner_deployment: None,
    }
}

pub struct Replica {
    running: tokio::task::JoinHandle<()>,
    shutdown: Shutdown,
}

/// Starts a replica's audit; its namespace (the release's, where the Lease is) is created
/// first when missing, as installing the chart does.
pub fn start(api: &FakeApi, shared: Shared, settings: AuditSettings) -> Replica {
    api.ensure_namespace(&settings.namespace);
    let shutdown = Shutdown::new();
    let running = tokio::task::spawn_local(controller::run(
        api.client("asyncapi-guard"),
        shared,
        settings,
        shutdown.clone(),
    ));
    Replica { running, shutdown }
}

impl Replica {
    /// SIGTERM: the audit must stop (and release its Lease) within 5 s.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.running)
            .await
            .expect("the audit stops within 5 s of shutdown")
            .unwrap();
    }
}
