//! The HTTP endpoints: `POST /validate` and the health checks on the TLS port; `/metrics`
//! and the health checks on the plain-HTTP metrics port.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;
use tracing::info;

use k8s_openapi::jiff::Timestamp;

use super::admission::{self, Context, Outcome, RequestOptions, Verdict};
use crate::service::Shared;

#[derive(Debug, Clone)]
pub struct AppState {
    pub shared: Shared,
    /// The longest a request may take to judge.
    pub request_timeout: Duration,
}

/// Bodies up to this size are judged on the async executor; larger ones on the blocking
/// pool, so that a big document never stalls the requests behind it.
const INLINE_BYTES: usize = 64 * 1024;
/// Answer this much before the API server's own timeout, so our answer is the one it gets.
const TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

pub fn admission_router(state: AppState, max_request_bytes: usize) -> Router {
    // A client that trickles its request is cut off with 408 (the TLS handshake and the
    // headers have their own timeouts in `server`).
    let slow_client = TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        state.request_timeout + Duration::from_secs(1),
    );
    Router::new()
        .route("/validate", post(validate))
        .route("/validate/{*options}", post(validate_with_options))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(slow_client)
        .with_state(state)
}

pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.shared.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let active = state.shared.config.load();
    state
        .shared
        .metrics
        .set_memo_size(active.memo.len(), active.memo.weight());
    // Exceptions change state with the clock alone: counted when read.
    let states = state.shared.exceptions.load().states(
        &active.exceptions,
        &active.kubernetes,
        Timestamp::now(),
    );
    state.shared.metrics.set_exception_states(&states);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.shared.metrics.encode(),
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// How long this request may take: ours, but never past the API server's `?timeout=`.
fn deadline(query: Option<&str>, ours: Duration) -> Duration {
    let theirs = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(|t| humantime::parse_duration(t).ok());
    match theirs {
        Some(theirs) => ours
            .min(theirs.saturating_sub(TIMEOUT_MARGIN))
            .max(Duration::from_millis(100)),
        None => ours,
    }
}

async fn validate(
    state: State<AppState>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, String::new(), query, headers, body).await
}

/// `/validate/warn`, `/validate/enforce/production-all`: see [`RequestOptions`].
async fn validate_with_options(
    state: State<AppState>,
    Path(options): Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, options, query, headers, body).await
}

async fn answer(
    State(state): State<AppState>,
    options: String,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_json(&headers) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json\n",
        )
            .into_response();
    }
    let started = Instant::now();
    let segments: Vec<&str> = options.split('/').collect();
    let (review, outcome) = match RequestOptions::parse(&segments, query.as_deref()) {
        Err(why) => admission::invalid(&admission::uid_of(&body), &why.to_string()),
        Ok(options) => {
            let active = state.shared.config.load_full();
            let exceptions = state.shared.exceptions.load_full();
            // The replica's clock: exceptions expire by it.
            let now = Timestamp::now();
            if body.len() <= INLINE_BYTES {
                let context = Context {
                    active: &active,
                    exceptions: &exceptions,
                    now,
                };
                admission::review(&context, &body, &options)
            } else {
                let deadline = deadline(query.as_deref(), state.request_timeout);
                let work_body = body.clone();
                let work = tokio::task::spawn_blocking(move || {
                    let context = Context {
                        active: &active,
                        exceptions: &exceptions,
                        now,
                    };
                    admission::review(&context, &work_body, &options)
                });
                match tokio::time::timeout(deadline, work).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(join)) => admission::failed(
                        &admission::uid_of(&body),
                        &format!("internal error: {join}"),
                    ),
                    Err(_) => admission::failed(
                        &admission::uid_of(&body),
                        &format!(
                            "the object could not be judged within {deadline:?}, so it cannot be verified"
                        ),
                    ),
                }
            }
        }
    };
    let elapsed = started.elapsed();
    state
        .shared
        .metrics
        .observe(&outcome.record(), elapsed.as_secs_f64());
    log(&outcome, elapsed);
    (StatusCode::OK, Json(review)).into_response()
}

/// A clean "allowed" is most of the traffic (every GitOps re-sync) and says nothing a
/// metric does not: it is logged at debug, as Gatekeeper and Kyverno do. Anything else (a
/// denial, a warning, an audit finding, unreadable input) is logged at info.
fn routine(outcome: &Outcome) -> bool {
    outcome.verdict == Verdict::Allowed && outcome.findings.is_empty() && outcome.reason.is_none()
}

fn log(outcome: &Outcome, elapsed: Duration) {
    let findings: Vec<String> = outcome
        .findings
        .iter()
        .map(|(rule, mode)| format!("{rule}:{mode}"))
        .collect();
    // One line, at a level known when the macro is written (tracing needs a constant).
    macro_rules! admission {
        ($level:expr) => {
            tracing::event!(
                $level,
                uid = %outcome.uid,
                kind = %outcome.kind,
                namespace = %outcome.namespace,
                name = %outcome.name,
                operation = %outcome.operation,
                dry_run = outcome.dry_run,
                verdict = outcome.verdict.as_str(),
                findings = %findings.join(","),
                reason = outcome.reason.as_deref().unwrap_or_default(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "admission"
            )
        };
    }
    if routine(outcome) {
        admission!(tracing::Level::DEBUG);
        return;
    }
    admission!(tracing::Level::INFO);
    if outcome.verdict == Verdict::Allowed
        && outcome
            .findings
            .iter()
            .any(|(_, effect)| *effect == crate::engine::finding::Mode::Audit.as_str())
    {
        info!(uid = %outcome.uid, kind = %outcome.kind, namespace = %outcome.namespace, name = %outcome.name, findings = %findings.join(","), "audit: allowed with violations");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> AppState {
        AppState {
            shared: Shared::default(),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/admission")
                .join(name),
        )
        .unwrap()
    }

    async fn post(
        router: Router,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let response = router
            .oneshot(
                Request::post(uri)
                    .header("content-type", content_type)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn validate_answers_200_with_the_uid() {
        let router = admission_router(state(), 1024 * 1024);
        let (status, review) = post(
            router,
            "/validate?timeout=10s",
            "application/json",
            fixture("configmap-create-insecure.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            review["response"]["uid"],
            "b24f6dc7-c1ca-4b39-afb7-2104cb43ff9a"
        );
        assert_eq!(review["response"]["allowed"], false);
        assert_eq!(review["response"]["status"]["code"], 403);
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
    }

    #[test]
    fn only_a_clean_allow_is_routine() {
        let (_, invalid) = crate::webhook::admission::invalid("u", "not a review");
        assert!(!routine(&invalid));
        let clean = Outcome {
            verdict: Verdict::Allowed,
            reason: None,
            findings: Vec::new(),
            ..invalid.clone()
        };
        assert!(routine(&clean));
        let denied = Outcome {
            verdict: Verdict::Denied,
            ..clean.clone()
        };
        assert!(!routine(&denied));
        let warned = Outcome {
            findings: vec![(
                crate::engine::finding::RuleId::ServerSecurityMissing,
                "warn",
            )],
            ..clean
        };
        assert!(!routine(&warned));
    }

    #[tokio::test]
    async fn wrong_content_type_and_oversized_bodies_are_4xx() {
        let (status, _) = post(
            admission_router(state(), 1024 * 1024),
            "/validate",
            "text/plain",
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (status, _) = post(
            admission_router(state(), 1024),
            "/validate",
            "application/json",
            vec![b' '; 4096],
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn path_segments_choose_the_mode() {
        let (_, review) = post(
            admission_router(state(), 1 << 20),
            "/validate/warn/production-all",
            "application/json",
            fixture("configmap-create-insecure.json"),
        )
        .await;
        assert_eq!(review["response"]["allowed"], true);
        assert_eq!(review["response"]["warnings"].as_array().unwrap().len(), 2);
        let (_, review) = post(
            admission_router(state(), 1 << 20),
            "/validate/enforce",
            "application/json",
            fixture("configmap-create-insecure.json"),
        )
        .await;
        assert_eq!(review["response"]["allowed"], false);
    }

    #[tokio::test]
    async fn a_bad_query_is_an_invalid_answer_with_the_uid() {
        let (status, review) = post(
            admission_router(state(), 1 << 20),
            "/validate?mode=loud",
            "application/json",
            fixture("configmap-create.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(review["response"]["allowed"], false);
        assert!(
            review["response"]["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty())
        );
    }

    #[tokio::test]
    async fn readiness_follows_draining() {
        let state = state();
        let router = metrics_router(state.clone());
        let ready = router
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
        state.shared.health.start_draining();
        let draining = router
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(draining.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn deadlines_respect_the_api_server() {
        assert_eq!(
            deadline(Some("timeout=10s"), Duration::from_secs(9)),
            Duration::from_secs(9)
        );
        assert_eq!(
            deadline(Some("timeout=2s"), Duration::from_secs(9)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            deadline(None, Duration::from_secs(9)),
            Duration::from_secs(9)
        );
    }
}
