//! One AdmissionReview in, one out. Pure: no I/O, no clock, so the whole admission
//! contract is unit-testable; the HTTP handler in `api` only adds transport.

use std::borrow::Cow;

use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::Status;
use kube::core::{DynamicObject, GroupVersionKind, TypeMeta};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::Overrides;
use crate::engine::document::json;
use crate::engine::finding::{Mode, RuleId};
use crate::engine::memo::Lookup;
use crate::kubernetes::extract::ObjectId;
use crate::kubernetes::{judge_object, metadata_of, object_limits};
use crate::report::admission::{Judged, audit_annotations, denial_message, warnings};

use crate::service::state::ActiveConfig;

/// What the webhook URL asks. The chart registers the same server once per mode, chosen by
/// namespace labels. The API server accepts no query string in a webhook's URL and only
/// DNS-1123 path segments in a Service path, so the options are path segments:
/// `/validate/warn`, `/validate/enforce/production-all`. The same options are also read
/// from a query string (`/validate?mode=warn&production=all`), handy with curl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestOptions {
    pub overrides: Overrides,
}

/// The path segment that makes every server production.
pub const ALL_PRODUCTION_SEGMENT: &str = "production-all";

impl RequestOptions {
    /// `segments` follow `/validate/`; `query` is the raw query string. Unknown query
    /// parameters (the API server's own `timeout`) are not ours and are ignored.
    pub fn parse(segments: &[&str], query: Option<&str>) -> Result<Self, String> {
        let mut overrides = Overrides::default();
        for segment in segments.iter().filter(|s| !s.is_empty()) {
            match *segment {
                ALL_PRODUCTION_SEGMENT => overrides.all_servers_production = true,
                mode => {
                    overrides.mode = mode.parse::<Mode>().map_err(|e| {
                        format!("webhook path /validate/{}: {e}", segments.join("/"))
                    })?;
                }
            }
        }
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "mode" => {
                    overrides.mode = value
                        .parse::<Mode>()
                        .map_err(|e| format!("webhook URL: {e}"))?
                }
                "production" if value == "all" => overrides.all_servers_production = true,
                "production" => {
                    return Err(format!(
                        "webhook URL: production={value} (the only value is \"all\")"
                    ));
                }
                _ => {}
            }
        }
        Ok(RequestOptions { overrides })
    }

    pub fn from_query(query: Option<&str>) -> Result<Self, String> {
        RequestOptions::parse(&[], query)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// The request could not be read.
    Invalid,
    /// The request could not be judged (deadline, internal error): refused, since what
    /// cannot be judged cannot be verified.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Invalid => "invalid",
            Verdict::Failed => "failed",
        }
    }
}

/// What happened, for the log line and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub dry_run: bool,
    pub verdict: Verdict,
    pub findings: Vec<(RuleId, Mode)>,
    pub document_bytes: Vec<usize>,
    /// The memo's answer for each document it was asked about.
    pub memo: Vec<Lookup>,
    /// Why a request was invalid.
    pub reason: Option<String>,
}

impl Outcome {
    /// What the metrics count of it.
    pub fn record(&self) -> crate::service::metrics::RequestRecord<'_> {
        crate::service::metrics::RequestRecord {
            kind: &self.kind,
            operation: &self.operation,
            verdict: self.verdict.as_str(),
            dry_run: self.dry_run,
            findings: &self.findings,
            document_bytes: &self.document_bytes,
            memo: &self.memo,
        }
    }

    fn new(uid: &str) -> Self {
        Outcome {
            uid: uid.to_owned(),
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
            operation: String::new(),
            dry_run: false,
            verdict: Verdict::Allowed,
            findings: Vec::new(),
            document_bytes: Vec::new(),
            memo: Vec::new(),
            reason: None,
        }
    }
}

/// The answer to a request that cannot be read: allowed is false, and the uid is echoed
/// whenever it could be found.
pub fn invalid(uid: &str, reason: &str) -> (AdmissionReview<DynamicObject>, Outcome) {
    let mut response = AdmissionResponse::invalid(reason);
    response.uid = uid.to_owned();
    response.result = Status::failure(reason, "BadRequest").with_code(400);
    let mut outcome = Outcome::new(uid);
    outcome.verdict = Verdict::Invalid;
    outcome.reason = Some(reason.to_owned());
    (response.into_review(), outcome)
}

/// A request that was read but could not be judged.
pub fn failed(uid: &str, reason: &str) -> (AdmissionReview<DynamicObject>, Outcome) {
    let message = format!("asyncapi-guard: {reason}");
    let mut response = AdmissionResponse::invalid(&message);
    response.uid = uid.to_owned();
    response.result = Status::failure(&message, "InternalError").with_code(500);
    let mut outcome = Outcome::new(uid);
    outcome.verdict = Verdict::Failed;
    outcome.reason = Some(reason.to_owned());
    (response.into_review(), outcome)
}

/// What any JSON body says of itself, whatever the rest holds (skipped unbuilt): for
/// answers about requests that could not be judged.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

impl Head<'_> {
    fn uid(&self) -> String {
        #[derive(Deserialize)]
        struct Request {
            uid: Option<String>,
        }
        self.request
            .and_then(|raw| serde_json::from_str::<Request>(raw.get()).ok())
            .and_then(|r| r.uid)
            .unwrap_or_default()
    }
}

/// The request's uid, read without reading the rest, for answers about requests that
/// could not be judged.
pub fn uid_of(body: &[u8]) -> String {
    serde_json::from_slice::<Head<'_>>(body)
        .map(|head| head.uid())
        .unwrap_or_default()
}

/// Why a body is not the review this webhook takes, if it is not.
fn not_a_review(kind: Option<&str>, api_version: Option<&str>) -> Option<String> {
    (api_version != Some(REVIEW_API_VERSION) || kind != Some(REVIEW_KIND)).then(|| {
        format!(
            "expected an AdmissionReview of admission.k8s.io/v1, got kind {kind:?} of apiVersion {api_version:?}"
        )
    })
}

/// An AdmissionReview as the API server sends it, read once: what the handler needs is
/// decoded, the object is kept as raw JSON for the engine's own reader, and everything else
/// (`oldObject`, `userInfo`, ...) is skipped without being built.
#[derive(Deserialize)]
struct WireReview<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<WireRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    #[serde(default)]
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: String,
    operation: Operation,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// An allowing response to the request `uid`, as `AdmissionResponse::from(&request)` makes.
fn allowing(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.types = TypeMeta {
        api_version: REVIEW_API_VERSION.to_owned(),
        kind: REVIEW_KIND.to_owned(),
    };
    response.uid = uid.to_owned();
    response.allowed = true;
    response.result = Status::default();
    response
}

/// Judges the object of an AdmissionReview request body.
pub fn review(
    active: &ActiveConfig,
    body: &[u8],
    options: &RequestOptions,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let wire: WireReview<'_> = match serde_json::from_slice(body) {
        Ok(wire) => wire,
        // Only on this error path is the body read again: what it says of itself, and the
        // uid to echo.
        Err(e) => {
            return match serde_json::from_slice::<Head<'_>>(body) {
                Err(e) => invalid("", &format!("the request body is not JSON: {e}")),
                Ok(head) => {
                    let why = not_a_review(head.kind.as_deref(), head.api_version.as_deref())
                        .unwrap_or_else(|| format!("the AdmissionReview cannot be read: {e}"));
                    invalid(&head.uid(), &why)
                }
            };
        }
    };
    let uid = wire
        .request
        .as_ref()
        .map(|r| r.uid.clone())
        .unwrap_or_default();
    if let Some(why) = not_a_review(wire.kind.as_deref(), wire.api_version.as_deref()) {
        return invalid(&uid, &why);
    }
    let Some(request) = wire.request else {
        return invalid(&uid, "the AdmissionReview has no request");
    };
    judge_request(active, &request, options)
}

fn judge_request(
    active: &ActiveConfig,
    request: &WireRequest<'_>,
    options: &RequestOptions,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let mut outcome = Outcome::new(&request.uid);
    outcome.kind = request.kind.kind.clone();
    outcome.namespace = request.namespace.clone().unwrap_or_default();
    outcome.name = request.name.clone();
    outcome.dry_run = request.dry_run;
    outcome.operation = match request.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
    .to_owned();
    let mut response = allowing(&request.uid);

    // DELETE is never refused, CONNECT carries no document, and subresources (such as the
    // status the audit writes) are not the document.
    let judged = matches!(request.operation, Operation::Create | Operation::Update)
        && request.sub_resource.as_deref().is_none_or(str::is_empty);
    if !judged {
        return (response.into_review(), outcome);
    }
    let Some(object) = request.object else {
        return invalid(
            &request.uid,
            &format!("{} request without an object", outcome.operation),
        );
    };
    // The engine's own JSON reader: iterative, so the configured depth limit is the one
    // that applies (serde_json's recursion limit would cap custom-resource specs at ~128).
    let engine = &active.engine;
    let stream = match json::parse(object.get(), &object_limits(engine), false) {
        Ok(stream) => stream,
        Err(e) => {
            return invalid(&request.uid, &format!("the object cannot be read: {e}"));
        }
    };
    let Some(body) = stream.roots().next().filter(|root| root.is_map()) else {
        return invalid(&request.uid, "the object is not a JSON object");
    };
    let metadata = match metadata_of(body) {
        Ok(metadata) => metadata,
        Err(why) => return invalid(&request.uid, &format!("the object cannot be read: {why}")),
    };
    let name = match (request.name.as_str(), &metadata.generate_name) {
        ("", Some(prefix)) => format!("{prefix}<generated>"),
        ("", None) => metadata.name.clone().unwrap_or_default(),
        (name, _) => name.to_owned(),
    };
    outcome.name.clone_from(&name);
    let id = ObjectId {
        group: request.kind.group.clone(),
        kind: request.kind.kind.clone(),
        namespace: request.namespace.clone().filter(|ns| !ns.is_empty()),
        name,
    };
    let documents = judge_object(
        engine,
        Some(&active.memo),
        &id,
        &metadata,
        body,
        &active.kubernetes,
        &options.overrides,
    );
    let judged: Vec<Judged<'_>> = documents
        .iter()
        .map(|d| Judged {
            label: &d.label,
            evaluation: &d.evaluation,
        })
        .collect();
    outcome.document_bytes = documents.iter().map(|d| d.bytes).collect();
    outcome.memo = documents.iter().filter_map(|d| d.memo).collect();
    outcome.findings = documents
        .iter()
        .flat_map(|d| d.evaluation.findings.iter().map(|f| (f.rule, f.mode)))
        .collect();

    if let Some(message) = denial_message(&id, &judged) {
        response.allowed = false;
        response.result = Status::failure(&message, "Forbidden").with_code(403);
        outcome.verdict = Verdict::Denied;
    }
    let warnings = warnings(&judged);
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response.audit_annotations = audit_annotations(&judged).into_iter().collect();
    (response.into_review(), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn active() -> ActiveConfig {
        ActiveConfig::default()
    }

    fn config_map_review(operation: &str, document: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "name": "orders-api",
                "namespace": "payments",
                "operation": operation,
                "userInfo": {"username": "someone"},
                "object": {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "orders-api", "namespace": "payments", "labels": {"asyncapi-guard.io/document": "true"}},
                    "data": {"asyncapi.yaml": document}
                },
                "oldObject": null,
                "dryRun": false
            }
        }))
        .unwrap()
    }

    const INSECURE: &str =
        "asyncapi: 2.6.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n";
    const SECURE: &str = "asyncapi: 2.6.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n    security:\n      - up: []\ncomponents:\n  securitySchemes:\n    up: {type: userPassword}\n";

    fn response(review: &AdmissionReview<DynamicObject>) -> &AdmissionResponse {
        review.response.as_ref().unwrap()
    }

    #[test]
    fn denies_with_403_and_the_policy_message() {
        let (answer, outcome) = review(
            &active(),
            &config_map_review("CREATE", INSECURE),
            &RequestOptions::default(),
        );
        let response = response(&answer);
        assert_eq!(response.uid, "u-1");
        assert!(!response.allowed);
        assert_eq!(response.result.code, 403);
        assert!(response.result.message.starts_with(
            "ConfigMap payments/orders-api: asyncapi.yaml:3:3 production server \"production\" declares no security [server-security-missing]"
        ), "{}", response.result.message);
        assert_eq!(outcome.verdict, Verdict::Denied);
        assert_eq!(
            outcome.findings,
            [(RuleId::ServerSecurityMissing, Mode::Enforce)]
        );
    }

    #[test]
    fn allows_secure_documents_and_deletes() {
        let (answer, outcome) = review(
            &active(),
            &config_map_review("CREATE", SECURE),
            &RequestOptions::default(),
        );
        assert!(response(&answer).allowed);
        assert_eq!(outcome.verdict, Verdict::Allowed);
        let (answer, _) = review_delete();
        assert!(response(&answer).allowed);
    }

    fn review_delete() -> (AdmissionReview<DynamicObject>, Outcome) {
        let mut body: Value =
            serde_json::from_slice(&config_map_review("DELETE", INSECURE)).unwrap();
        body["request"]["oldObject"] = body["request"]["object"].take();
        review(
            &active(),
            &serde_json::to_vec(&body).unwrap(),
            &RequestOptions::default(),
        )
    }

    /// A custom resource whose spec nests `depth` levels (in its `x-deep` extension).
    fn deep_resource_review(depth: usize) -> Vec<u8> {
        let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u-deep",
            "kind":{{"group":"asyncapi-guard.io","version":"v1alpha1","kind":"AsyncAPI"}},
            "resource":{{"group":"asyncapi-guard.io","version":"v1alpha1","resource":"asyncapis"}},
            "name":"deep","namespace":"payments","operation":"CREATE","userInfo":{{}},
            "object":{{"apiVersion":"asyncapi-guard.io/v1alpha1","kind":"AsyncAPI","metadata":{{"name":"deep","namespace":"payments"}},
            "spec":{{"asyncapi":"3.0.0","info":{{"title":"t","version":"1","x-deep":{deep}}}}}}},
            "oldObject":null,"dryRun":false}}}}"#
        )
        .into_bytes()
    }

    /// Issue 9: serde_json's recursion limit capped custom-resource specs at about 128
    /// levels whatever maxDepth said; the configured limit is the one that applies.
    #[test]
    fn the_configured_depth_limit_applies_to_custom_resources() {
        let deep = deep_resource_review(300);
        let allowing = ActiveConfig::from(
            crate::config::Config::parse(b"limits: {maxDepth: 400}", "c.yaml").unwrap(),
        );
        let (answer, outcome) = review(&allowing, &deep, &RequestOptions::default());
        assert!(response(&answer).allowed, "{:?}", response(&answer).result);
        assert_eq!(outcome.verdict, Verdict::Allowed);

        // The default limit (100): the document is refused by rule, not as unreadable.
        let (answer, outcome) = review(&active(), &deep, &RequestOptions::default());
        assert_eq!(outcome.verdict, Verdict::Denied);
        assert!(
            response(&answer).result.message.contains("deeper than 100"),
            "{}",
            response(&answer).result.message
        );
    }

    #[test]
    fn warn_mode_allows_with_warnings_and_audit_mode_with_annotations() {
        let warn = RequestOptions::from_query(Some("timeout=10s&mode=warn")).unwrap();
        let (answer, _) = review(&active(), &config_map_review("UPDATE", INSECURE), &warn);
        let r = response(&answer);
        assert!(r.allowed);
        let warnings = r.warnings.as_ref().unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("[server-security-missing]"));
        assert!(warnings[0].chars().count() <= 256);

        let audit = RequestOptions::from_query(Some("mode=audit")).unwrap();
        let (answer, outcome) = review(&active(), &config_map_review("CREATE", INSECURE), &audit);
        let r = response(&answer);
        assert!(r.allowed && r.warnings.is_none());
        assert_eq!(r.audit_annotations["violations"], "1");
        assert_eq!(
            outcome.findings,
            [(RuleId::ServerSecurityMissing, Mode::Audit)]
        );
    }

    #[test]
    fn production_all_makes_every_server_production() {
        let staging = INSECURE.replace("production:", "staging:");
        let (answer, _) = review(
            &active(),
            &config_map_review("CREATE", &staging),
            &RequestOptions::default(),
        );
        assert!(response(&answer).allowed);
        let all = RequestOptions::from_query(Some("production=all")).unwrap();
        let (answer, _) = review(&active(), &config_map_review("CREATE", &staging), &all);
        assert!(!response(&answer).allowed);
    }

    #[test]
    fn unreadable_requests_are_invalid_with_the_uid_when_known() {
        let (answer, outcome) = review(&active(), b"not json", &RequestOptions::default());
        assert_eq!(response(&answer).result.code, 400);
        assert_eq!(outcome.verdict, Verdict::Invalid);

        let wrong = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u-9"}});
        let (answer, _) = review(
            &active(),
            &serde_json::to_vec(&wrong).unwrap(),
            &RequestOptions::default(),
        );
        assert_eq!(response(&answer).uid, "u-9");
        assert!(!response(&answer).allowed);

        let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        let (answer, _) = review(
            &active(),
            &serde_json::to_vec(&no_request).unwrap(),
            &RequestOptions::default(),
        );
        assert!(response(&answer).result.message.contains("no request"));

        let mut no_object: Value =
            serde_json::from_slice(&config_map_review("CREATE", SECURE)).unwrap();
        no_object["request"]["object"] = Value::Null;
        let (answer, _) = review(
            &active(),
            &serde_json::to_vec(&no_object).unwrap(),
            &RequestOptions::default(),
        );
        assert_eq!(response(&answer).uid, "u-1");
        assert!(!response(&answer).allowed);
    }

    #[test]
    fn path_segments_choose_the_mode() {
        let warn_all =
            RequestOptions::parse(&["warn", "production-all"], Some("timeout=10s")).unwrap();
        assert_eq!(warn_all.overrides.mode, Mode::Warn);
        assert!(warn_all.overrides.all_servers_production);
        assert_eq!(
            RequestOptions::parse(&["audit"], None)
                .unwrap()
                .overrides
                .mode,
            Mode::Audit
        );
        assert!(
            RequestOptions::parse(&["loud"], None)
                .unwrap_err()
                .contains("/validate/loud")
        );
    }

    #[test]
    fn query_errors_are_reported() {
        assert!(RequestOptions::from_query(Some("mode=strict")).is_err());
        assert!(RequestOptions::from_query(Some("production=some")).is_err());
        assert_eq!(
            RequestOptions::from_query(None).unwrap(),
            RequestOptions::default()
        );
    }
}
