//! One AdmissionReview in, one out. Pure: no I/O, no clock, so the whole admission
//! contract is unit-testable; the HTTP handler in `api` only adds transport.

use k8s_openapi::jiff::Timestamp;
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::Status;
use kube::core::{DynamicObject, GroupVersionKind, TypeMeta};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::document::value::to_json;
use crate::engine::document::{Limits, NodeRef, ScalarKind, Value, json};
use crate::engine::finding::{Mode, RuleId, UnknownMode};
use crate::engine::memo::{Keep, Lookup, WithMemo};
use crate::engine::{Engine, Overrides};
use crate::kubernetes::exceptions::{Exception, ExceptionSet, is_exception};
use crate::kubernetes::extract::ObjectId;
use crate::kubernetes::verdict::{self, Judge, Scope, Subject};
use crate::kubernetes::{metadata_of, object_limits};
use crate::report::admission::{Judged, audit_annotations, denial_message, warnings};

use crate::service::state::ActiveConfig;

/// What a review is judged against besides the request: the configuration in force, the
/// exceptions this replica knows, and its clock (by which exceptions expire).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub active: &'a ActiveConfig,
    pub exceptions: &'a ExceptionSet,
    pub now: Timestamp,
}

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

/// Why a webhook URL asks for something this server does not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("webhook path /validate/{path}: {mode}")]
    PathMode { path: String, mode: UnknownMode },
    #[error("webhook URL: {0}")]
    QueryMode(UnknownMode),
    #[error("webhook URL: production={0} (the only value is \"all\")")]
    Production(String),
}

/// Why an AdmissionReview's request cannot be read; `path` names the member, as
/// `request.kind.group`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{0} is missing")]
    Missing(String),
    #[error("{path} is {found}, not {wanted}")]
    WrongType {
        path: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("request.operation {0:?} is none of CREATE, UPDATE, DELETE, CONNECT")]
    UnknownOperation(String),
}

impl RequestOptions {
    /// `segments` follow `/validate/`; `query` is the raw query string. Unknown query
    /// parameters (the API server's own `timeout`) are not ours and are ignored.
    pub fn parse(segments: &[&str], query: Option<&str>) -> Result<Self, OptionsError> {
        let mut overrides = Overrides::default();
        for segment in segments.iter().filter(|s| !s.is_empty()) {
            match *segment {
                ALL_PRODUCTION_SEGMENT => overrides.all_servers_production = true,
                mode => {
                    overrides.mode =
                        mode.parse::<Mode>()
                            .map_err(|mode| OptionsError::PathMode {
                                path: segments.join("/"),
                                mode,
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
                    overrides.mode = value.parse::<Mode>().map_err(OptionsError::QueryMode)?
                }
                "production" if value == "all" => overrides.all_servers_production = true,
                "production" => return Err(OptionsError::Production(value.to_owned())),
                _ => {}
            }
        }
        Ok(RequestOptions { overrides })
    }

    pub fn from_query(query: Option<&str>) -> Result<Self, OptionsError> {
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
    /// Each finding's rule and effect: its mode, or `excepted`.
    pub findings: Vec<(RuleId, &'static str)>,
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

/// The request of any JSON body, whatever the rest holds (skipped unbuilt): for the uid
/// of a request that could not be read or judged.
#[derive(Deserialize)]
struct Head<'a> {
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

/// The operations of an admission request, as the review names them.
const OPERATIONS: [(&str, Operation); 4] = [
    ("CREATE", Operation::Create),
    ("UPDATE", Operation::Update),
    ("DELETE", Operation::Delete),
    ("CONNECT", Operation::Connect),
];

fn operation_name(operation: &Operation) -> &'static str {
    OPERATIONS
        .iter()
        .find(|(_, known)| known == operation)
        .map_or("", |(name, _)| name)
}

/// The request of an AdmissionReview, as the handler needs it, read from the review's tree.
struct WireRequest<'t> {
    uid: String,
    kind: GroupVersionKind,
    namespace: Option<String>,
    name: String,
    operation: Operation,
    sub_resource: Option<String>,
    dry_run: bool,
    object: Option<NodeRef<'t>>,
}

impl<'t> WireRequest<'t> {
    /// Reads `request`, saying which member is wrong when one is.
    fn read(request: NodeRef<'t>) -> Result<Self, RequestError> {
        let kind = request
            .get("kind")
            .ok_or_else(|| RequestError::Missing("request.kind".to_owned()))?;
        let operation = match string_member(request, "request", "operation")? {
            Some(name) => OPERATIONS
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, operation)| operation.clone())
                .ok_or_else(|| RequestError::UnknownOperation(name.to_owned()))?,
            None => return Err(RequestError::Missing("request.operation".to_owned())),
        };
        let kind_member = |name: &str| -> Result<String, RequestError> {
            string_member(kind, "request.kind", name)?
                .map(str::to_owned)
                .ok_or_else(|| RequestError::Missing(format!("request.kind.{name}")))
        };
        Ok(WireRequest {
            uid: string_member(request, "request", "uid")?
                .unwrap_or_default()
                .to_owned(),
            kind: GroupVersionKind {
                group: kind_member("group")?,
                version: kind_member("version")?,
                kind: kind_member("kind")?,
            },
            namespace: string_member(request, "request", "namespace")?.map(str::to_owned),
            name: string_member(request, "request", "name")?
                .unwrap_or_default()
                .to_owned(),
            operation,
            sub_resource: string_member(request, "request", "subResource")?.map(str::to_owned),
            dry_run: match request.get("dryRun") {
                None => false,
                Some(flag) if flag.is_null() => false,
                Some(flag) => match flag.value() {
                    Value::Scalar {
                        kind: ScalarKind::Bool,
                        text,
                    } => text == "true",
                    _ => {
                        return Err(RequestError::WrongType {
                            path: "request.dryRun".to_owned(),
                            found: flag.type_name(),
                            wanted: "a boolean",
                        });
                    }
                },
            },
            object: request.get("object").filter(|o| !o.is_null()),
        })
    }
}

/// A string member of `object` (which `path` names, for the message): `None` when absent
/// or null, an error when not a string.
fn string_member<'t>(
    object: NodeRef<'t>,
    path: &str,
    name: &str,
) -> Result<Option<&'t str>, RequestError> {
    object
        .optional_str(name)
        .map_err(|found| RequestError::WrongType {
            path: format!("{path}.{name}"),
            found,
            wanted: "a string",
        })
}

const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// How the review is read: as an object is (see [`object_limits`]), two levels deeper for
/// the review and its request around the object.
fn review_limits(engine: &Engine) -> Limits {
    let limits = object_limits(engine);
    Limits {
        max_depth: limits.max_depth + 2,
        ..limits
    }
}

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
    context: &Context<'_>,
    body: &[u8],
    options: &RequestOptions,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let active = context.active;
    // The whole body is read once, by the engine's own JSON reader: iterative, so the
    // configured depth limit is the one that applies to a custom resource (serde_json's
    // recursion limit would cap it at ~128), and the object's documents are borrowed
    // from the body where they have no escapes. `oldObject` is stepped over unbuilt:
    // what was there before is not judged.
    let limits = review_limits(&active.engine);
    let Ok(text) = std::str::from_utf8(body) else {
        return invalid(
            &uid_of(body),
            "the request body is not JSON: it is not UTF-8",
        );
    };
    let stream = match json::parse_skipping(text, &limits, false, &["request", "oldObject"]) {
        Ok(stream) => stream,
        // Only on this error path is the body read again, for the uid to echo.
        Err(e) => {
            return invalid(
                &uid_of(body),
                &format!("the request body cannot be read: {e}"),
            );
        }
    };
    let Some(root) = stream.roots().next().filter(|root| root.is_map()) else {
        return invalid("", &not_a_review(None, None).unwrap_or_default());
    };
    let request = root.get("request").filter(|r| r.is_map());
    let uid = request
        .and_then(|r| r.optional_str("uid").ok().flatten())
        .unwrap_or_default();
    let header = |name| root.optional_str(name).ok().flatten();
    if let Some(why) = not_a_review(header("kind"), header("apiVersion")) {
        return invalid(uid, &why);
    }
    let Some(request) = request else {
        return invalid(uid, "the AdmissionReview has no request");
    };
    let request = match WireRequest::read(request) {
        Ok(request) => request,
        Err(why) => {
            return invalid(uid, &format!("the AdmissionReview cannot be read: {why}"));
        }
    };
    judge_request(context, &request, options)
}

fn judge_request(
    context: &Context<'_>,
    request: &WireRequest<'_>,
    options: &RequestOptions,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let active = context.active;
    let mut outcome = Outcome::new(&request.uid);
    outcome.kind = request.kind.kind.clone();
    outcome.namespace = request.namespace.clone().unwrap_or_default();
    outcome.name = request.name.clone();
    outcome.dry_run = request.dry_run;
    outcome.operation = operation_name(&request.operation).to_owned();
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
    if !object.is_map() {
        return invalid(&request.uid, "the object is not a JSON object");
    }
    let body = object;
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
    if is_exception(&id.group, &id.kind) {
        return judge_exception(context, body, &id, response, outcome);
    }
    let judge = Judge {
        engine: &active.engine,
        config: &active.kubernetes,
        exceptions: context.exceptions,
        policy: &active.exceptions,
        now: context.now,
    };
    let memo = WithMemo {
        memo: &active.memo,
        keep: if request.dry_run {
            Keep::Now
        } else {
            Keep::OnRepeat
        },
    };
    let subject = Subject {
        id: &id,
        meta: &metadata,
        body,
    };
    let verdict = verdict::judge(&judge, Some(memo), subject, Scope::Entry(options.overrides));
    // What admission does not judge (an unguarded ConfigMap sent here anyway) is let
    // through as it would be if the entries had not sent it.
    let documents = if verdict.coverage.is_guarded() {
        verdict.documents
    } else {
        Vec::new()
    };
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
        .flat_map(|d| d.evaluation.findings.iter().map(|f| (f.rule, f.effect())))
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

/// An `AsyncAPIException` is refused when it would not count: expired, past the lifetime
/// ceiling, naming an unknown rule or kind, without a reason, or where exceptions do not
/// count. Whatever the namespace's mode: an exception is a grant, not a document, and
/// every decision checks it again anyway, so a refusal here only says it early.
fn judge_exception(
    context: &Context<'_>,
    object: NodeRef<'_>,
    id: &ObjectId,
    mut response: AdmissionResponse,
    mut outcome: Outcome,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let object = match to_json(object, object_limits(&context.active.engine).max_depth) {
        Ok(object) => object,
        Err(e) => {
            return invalid(&outcome.uid, &format!("the object cannot be read: {e}"));
        }
    };
    // Deleting it, or taking its finalizers off, is never refused.
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return (response.into_review(), outcome);
    }
    let exception = Exception::from_object(&object);
    let refusals = exception.refusals(
        &context.active.exceptions,
        &context.active.kubernetes,
        context.now,
    );
    if let Some(first) = refusals.first() {
        let more = match refusals.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        let mut message = format!("{id} is refused: {first}{more}");
        for refusal in &refusals {
            message.push_str(&format!("\n- [{}] {refusal}", refusal.reason()));
        }
        response.allowed = false;
        response.result = Status::failure(&message, "Forbidden").with_code(403);
        outcome.verdict = Verdict::Denied;
        outcome.reason = Some(
            refusals
                .iter()
                .map(|r| r.reason())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    (response.into_review(), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn active() -> ActiveConfig {
        ActiveConfig::default()
    }

    /// A review judged with no exceptions, at a fixed time.
    fn judge(
        active: &ActiveConfig,
        body: &[u8],
        options: &RequestOptions,
    ) -> (AdmissionReview<DynamicObject>, Outcome) {
        review(
            &Context {
                active,
                exceptions: &ExceptionSet::default(),
                now: "2026-12-07T00:00:00Z".parse().unwrap(),
            },
            body,
            options,
        )
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
        let (answer, outcome) = judge(
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
            [(RuleId::ServerSecurityMissing, "enforce")]
        );
    }

    #[test]
    fn allows_secure_documents_and_deletes() {
        let (answer, outcome) = judge(
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
        judge(
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

    /// A custom resource's spec nests as deep as the configured limit allows, whatever a
    /// JSON library's own recursion limit (serde_json's is about 128 levels).
    #[test]
    fn the_configured_depth_limit_applies_to_custom_resources() {
        let deep = deep_resource_review(300);
        let allowing = ActiveConfig::from(
            crate::config::Config::parse(b"limits: {maxDepth: 400}", "c.yaml").unwrap(),
        );
        let (answer, outcome) = judge(&allowing, &deep, &RequestOptions::default());
        assert!(response(&answer).allowed, "{:?}", response(&answer).result);
        assert_eq!(outcome.verdict, Verdict::Allowed);

        // The default limit (100): the document is refused by rule, not as unreadable.
        let (answer, outcome) = judge(&active(), &deep, &RequestOptions::default());
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
        let (answer, _) = judge(&active(), &config_map_review("UPDATE", INSECURE), &warn);
        let r = response(&answer);
        assert!(r.allowed);
        let warnings = r.warnings.as_ref().unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("[server-security-missing]"));
        assert!(warnings[0].chars().count() <= 256);

        let audit = RequestOptions::from_query(Some("mode=audit")).unwrap();
        let (answer, outcome) = judge(&active(), &config_map_review("CREATE", INSECURE), &audit);
        let r = response(&answer);
        assert!(r.allowed && r.warnings.is_none());
        assert_eq!(r.audit_annotations["violations"], "1");
        assert_eq!(outcome.findings, [(RuleId::ServerSecurityMissing, "audit")]);
    }

    #[test]
    fn production_all_makes_every_server_production() {
        let staging = INSECURE.replace("production:", "staging:");
        let (answer, _) = judge(
            &active(),
            &config_map_review("CREATE", &staging),
            &RequestOptions::default(),
        );
        assert!(response(&answer).allowed);
        let all = RequestOptions::from_query(Some("production=all")).unwrap();
        let (answer, _) = judge(&active(), &config_map_review("CREATE", &staging), &all);
        assert!(!response(&answer).allowed);
    }

    #[test]
    fn unreadable_requests_are_invalid_with_the_uid_when_known() {
        let (answer, outcome) = judge(&active(), b"not json", &RequestOptions::default());
        assert_eq!(response(&answer).result.code, 400);
        assert_eq!(outcome.verdict, Verdict::Invalid);

        let wrong = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u-9"}});
        let (answer, _) = judge(
            &active(),
            &serde_json::to_vec(&wrong).unwrap(),
            &RequestOptions::default(),
        );
        assert_eq!(response(&answer).uid, "u-9");
        assert!(!response(&answer).allowed);

        let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        let (answer, _) = judge(
            &active(),
            &serde_json::to_vec(&no_request).unwrap(),
            &RequestOptions::default(),
        );
        assert!(response(&answer).result.message.contains("no request"));

        let mut no_object: Value =
            serde_json::from_slice(&config_map_review("CREATE", SECURE)).unwrap();
        no_object["request"]["object"] = Value::Null;
        let (answer, _) = judge(
            &active(),
            &serde_json::to_vec(&no_object).unwrap(),
            &RequestOptions::default(),
        );
        assert_eq!(response(&answer).uid, "u-1");
        assert!(!response(&answer).allowed);
    }

    #[test]
    fn a_custom_resource_is_measured_by_its_bytes_in_the_review() {
        // Pretty-printed, as captured from the API server.
        let body = include_str!("../../tests/fixtures/admission/asyncapi-cr-create.json");
        let member = |text: &'static str, key: &str| -> &'static str {
            let members: std::collections::HashMap<&str, &serde_json::value::RawValue> =
                serde_json::from_str(text).unwrap();
            members[key].get()
        };
        let spec = member(member(member(body, "request"), "object"), "spec");
        let (_, outcome) = judge(&active(), body.as_bytes(), &RequestOptions::default());
        assert_eq!(outcome.document_bytes, [spec.len()]);
    }

    #[test]
    fn the_old_object_is_not_read_and_request_members_are_checked() {
        let mut update: Value =
            serde_json::from_slice(&config_map_review("UPDATE", SECURE)).unwrap();
        // Deeper than any limit and with a key twice: never built, so never in the way.
        let deep = "[".repeat(5_000) + &"]".repeat(5_000);
        update["request"]["oldObject"] = json!("placeholder");
        let body = serde_json::to_string(&update)
            .unwrap()
            .replace("\"placeholder\"", &deep);
        let (answer, outcome) = judge(&active(), body.as_bytes(), &RequestOptions::default());
        assert!(response(&answer).allowed, "{:?}", response(&answer).result);
        assert_eq!(outcome.verdict, Verdict::Allowed);
        let body = body.replace(&deep, r#"{"a": 1, "a": 2}"#);
        let (answer, _) = judge(&active(), body.as_bytes(), &RequestOptions::default());
        assert!(response(&answer).allowed);

        for (member, value, says) in [
            ("operation", json!("PATCH"), "request.operation \"PATCH\""),
            ("operation", json!(null), "request.operation is missing"),
            ("dryRun", json!("yes"), "request.dryRun is a string"),
            ("uid", json!(7), "request.uid is a number, not a string"),
            (
                "kind",
                json!({"group": "", "kind": "ConfigMap"}),
                "request.kind.version",
            ),
        ] {
            let mut wrong = update.clone();
            wrong["request"][member] = value;
            let (answer, outcome) = judge(
                &active(),
                &serde_json::to_vec(&wrong).unwrap(),
                &RequestOptions::default(),
            );
            let message = &response(&answer).result.message;
            assert_eq!(outcome.verdict, Verdict::Invalid, "{member}");
            assert!(message.contains(says), "{member}: {message}");
        }
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
        let loud = RequestOptions::parse(&["loud"], None).unwrap_err();
        assert_eq!(
            loud,
            OptionsError::PathMode {
                path: "loud".to_owned(),
                mode: UnknownMode("loud".to_owned())
            }
        );
        assert!(loud.to_string().contains("/validate/loud"), "{loud}");
    }

    #[test]
    fn query_errors_are_reported() {
        assert_eq!(
            RequestOptions::from_query(Some("mode=strict")),
            Err(OptionsError::QueryMode(UnknownMode("strict".to_owned())))
        );
        assert_eq!(
            RequestOptions::from_query(Some("production=some")),
            Err(OptionsError::Production("some".to_owned()))
        );
        assert_eq!(
            RequestOptions::from_query(None).unwrap(),
            RequestOptions::default()
        );
    }
}
