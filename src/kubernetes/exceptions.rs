//! Exceptions: `AsyncAPIException` objects (`asyncapi-guard.io/v1alpha1`) that accept named
//! findings of one named object for a while, with a reason (docs/exceptions.md).
//!
//! An exception names exactly the object it covers (namespace, kind, name; optionally one
//! document and JSON pointers in it), the rules it covers, why, and until when. It counts
//! only where the configuration allows exceptions, and only until it expires: both are
//! read at decision time, so an expiry needs no controller and no restart. Pure: the
//! clock is a parameter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::Value as Json;

use super::extract::{CR_GROUP, CR_KIND, ExtractConfig, ObjectId};
use crate::engine::document::pointer;
use crate::engine::finding::{Finding, RuleId, Waiver};

pub const EXCEPTION_KIND: &str = "AsyncAPIException";
pub const EXCEPTION_PLURAL: &str = "asyncapiexceptions";
pub const EXCEPTION_VERSION: &str = "v1alpha1";

/// Where and for how long exceptions count: the configuration's `exceptions` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionPolicy {
    /// Namespaces whose exceptions count: whoever may write there may grant exceptions.
    pub namespaces: Vec<String>,
    /// The longest an exception may run, from its creation to its expiry.
    pub max_duration: Duration,
    /// From this long before its expiry, an exception's warning says it is about to expire.
    pub warn_before: Duration,
}

/// The namespace the chart installs into by default: where exceptions count when the
/// configuration does not say.
pub const DEFAULT_NAMESPACE: &str = "asyncapi-guard";
const DAY: u64 = 24 * 3600;

impl Default for ExceptionPolicy {
    fn default() -> Self {
        ExceptionPolicy {
            namespaces: vec![DEFAULT_NAMESPACE.to_owned()],
            max_duration: Duration::from_secs(90 * DAY),
            warn_before: Duration::from_secs(14 * DAY),
        }
    }
}

/// `spec.match`: the one object an exception covers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// A ConfigMap key, or the document's name for another kind (`spec`, `spec/asyncapi`):
    /// what a finding line starts with.
    #[serde(default)]
    pub key: Option<String>,
    /// JSON pointers into the document: only findings at or under one of them are covered.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecFile {
    #[serde(rename = "match")]
    target: Target,
    rules: Vec<String>,
    reason: String,
    expires: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
}

/// An exception's terms, as its spec states them; what the configuration allows is checked
/// apart ([`Exception::refusals`]), since the configuration can change under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub target: Target,
    pub rules: BTreeSet<RuleId>,
    pub reason: String,
    pub expires: Timestamp,
    pub owner: Option<String>,
    pub ticket: Option<String>,
}

/// Why an exception does not count. Each has a reason (the status condition's, in
/// CamelCase) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The spec does not have the shape of an exception.
    Invalid(String),
    UnknownRules(Vec<String>),
    EmptyReason,
    /// `spec.match.kind` is none of the kinds that carry documents here.
    UnknownKind(String),
    NamespaceNotAllowed {
        namespace: String,
        allowed: Vec<String>,
    },
    /// It runs past its creation plus the configured ceiling.
    TooLong {
        expires: String,
        ceiling: String,
        max: Duration,
    },
    Expired {
        expires: String,
    },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) => "Invalid",
            Refusal::UnknownRules(_) => "UnknownRule",
            Refusal::EmptyReason => "EmptyReason",
            Refusal::UnknownKind(_) => "UnknownKind",
            Refusal::NamespaceNotAllowed { .. } => "NamespaceNotAllowed",
            Refusal::TooLong { .. } => "TooLong",
            Refusal::Expired { .. } => "Expired",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid(why) => write!(f, "{why}"),
            Refusal::UnknownRules(rules) => {
                let known: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
                write!(
                    f,
                    "spec.rules names {} (the rules are: {})",
                    rules
                        .iter()
                        .map(|r| format!("the unknown rule \"{r}\""))
                        .collect::<Vec<_>>()
                        .join(", "),
                    known.join(", ")
                )
            }
            Refusal::EmptyReason => {
                write!(f, "spec.reason is empty: say why the findings are accepted")
            }
            Refusal::UnknownKind(kind) => write!(
                f,
                "spec.match.kind \"{kind}\" is not a kind asyncapi-guard judges (ConfigMap, AsyncAPI, or a configured carrier kind)"
            ),
            Refusal::NamespaceNotAllowed { namespace, allowed } => {
                let allowed = if allowed.is_empty() {
                    "no namespace allows them".to_owned()
                } else {
                    format!(
                        "exceptions count only in {}",
                        allowed
                            .iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                write!(
                    f,
                    "it is in namespace \"{namespace}\", where exceptions do not count: {allowed} (exceptions.namespaces)"
                )
            }
            Refusal::TooLong {
                expires,
                ceiling,
                max,
            } => write!(
                f,
                "spec.expires {expires} is past the longest an exception may run ({} from its creation, so {ceiling} at the latest; exceptions.maxDuration)",
                describe(*max)
            ),
            Refusal::Expired { expires } => write!(f, "it expired at {expires}"),
        }
    }
}

/// `90 days`, `36 hours`, `90s`: as a person reads a configured duration.
fn describe(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= DAY && s % DAY == 0 => format!("{} days", s / DAY),
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        _ => humantime::format_duration(duration).to_string(),
    }
}

/// One `AsyncAPIException` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`; none for an object being created (admission, `check`).
    pub created: Option<Timestamp>,
    /// Its terms, or why its spec cannot be read.
    pub terms: Result<Terms, Refusal>,
    /// Its status as the cluster holds it (what the audit wrote last), to leave an
    /// unchanged one alone.
    pub status: Option<Json>,
}

/// Where an exception stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExceptionState {
    /// In force.
    Active,
    /// In force, and expiring within the warning window.
    Expiring,
    /// Valid, but past its expiry.
    Expired,
    /// Does not count at all (invalid, not allowed here, too long).
    Refused,
}

impl ExceptionState {
    pub const ALL: [ExceptionState; 4] = [
        ExceptionState::Active,
        ExceptionState::Expiring,
        ExceptionState::Expired,
        ExceptionState::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionState::Active => "active",
            ExceptionState::Expiring => "expiring",
            ExceptionState::Expired => "expired",
            ExceptionState::Refused => "refused",
        }
    }
}

fn max_signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

impl Exception {
    /// Reads an exception from its object as JSON (from the cluster, a manifest or an
    /// admission request): its identity from `metadata`, its terms from `spec`.
    pub fn from_object(object: &Json) -> Exception {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Exception {
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
            uid: text("/metadata/uid"),
            generation: object
                .pointer("/metadata/generation")
                .and_then(Json::as_i64),
            created: object
                .pointer("/metadata/creationTimestamp")
                .and_then(Json::as_str)
                .and_then(|t| t.parse().ok()),
            terms: terms_of(object.get("spec")),
            status: object.get("status").filter(|s| !s.is_null()).cloned(),
        }
    }

    /// From the cluster: the object as `kube` reads a kind it has no type for.
    pub fn from_dynamic(object: &kube::api::DynamicObject) -> Exception {
        // Serialising an object that came as JSON cannot fail; if it did, its spec would
        // be missing and the exception refused as invalid, never applied.
        Exception::from_object(&serde_json::to_value(object).unwrap_or_default())
    }

    /// `namespace/name`, as warnings and reports name it.
    pub fn by(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Every reason it does not count under `policy` and `config` at `now`; empty when it
    /// is in force. Expiry is among them (last).
    pub fn refusals(
        &self,
        policy: &ExceptionPolicy,
        config: &ExtractConfig,
        now: Timestamp,
    ) -> Vec<Refusal> {
        let mut refusals = Vec::new();
        if !policy.namespaces.contains(&self.namespace) {
            refusals.push(Refusal::NamespaceNotAllowed {
                namespace: self.namespace.clone(),
                allowed: policy.namespaces.clone(),
            });
        }
        let terms = match &self.terms {
            Ok(terms) => terms,
            Err(refusal) => {
                refusals.push(refusal.clone());
                return refusals;
            }
        };
        if terms.reason.trim().is_empty() {
            refusals.push(Refusal::EmptyReason);
        }
        if !judged_kind(config, &terms.target.kind) {
            refusals.push(Refusal::UnknownKind(terms.target.kind.clone()));
        }
        // An object being created is created now.
        let created = self.created.unwrap_or(now);
        let ceiling = created.saturating_add(max_signed(policy.max_duration));
        if let Ok(ceiling) = ceiling
            && terms.expires > ceiling
        {
            refusals.push(Refusal::TooLong {
                expires: terms.expires.to_string(),
                ceiling: ceiling.to_string(),
                max: policy.max_duration,
            });
        }
        if terms.expires <= now {
            refusals.push(Refusal::Expired {
                expires: terms.expires.to_string(),
            });
        }
        refusals
    }

    /// Where it stands at `now`.
    pub fn state(
        &self,
        policy: &ExceptionPolicy,
        config: &ExtractConfig,
        now: Timestamp,
    ) -> ExceptionState {
        let refusals = self.refusals(policy, config, now);
        match refusals.as_slice() {
            [] => match &self.terms {
                Ok(terms) if expiring(terms.expires, policy, now) => ExceptionState::Expiring,
                _ => ExceptionState::Active,
            },
            [Refusal::Expired { .. }] => ExceptionState::Expired,
            _ => ExceptionState::Refused,
        }
    }

    /// The waiver it grants to `finding` of document `label` of its target, if it covers it.
    fn covers(&self, label: &str, finding: &Finding) -> bool {
        let Ok(terms) = &self.terms else {
            return false;
        };
        terms.rules.contains(&finding.rule)
            && terms.target.key.as_deref().is_none_or(|key| key == label)
            && (terms.target.paths.is_empty()
                || terms
                    .target
                    .paths
                    .iter()
                    .any(|path| at_or_under(&finding.path, path)))
    }
}

fn expiring(expires: Timestamp, policy: &ExceptionPolicy, now: Timestamp) -> bool {
    now.saturating_add(max_signed(policy.warn_before))
        .is_ok_and(|window| expires <= window)
}

/// Whether the JSON pointer `path` is `base` or under it.
fn at_or_under(path: &str, base: &str) -> bool {
    path == base
        || (path.starts_with(base) && path.as_bytes().get(base.len()) == Some(&b'/'))
        || base.is_empty()
}

/// Whether `kind` carries documents here: ConfigMaps, `AsyncAPI`s, configured carriers.
fn judged_kind(config: &ExtractConfig, kind: &str) -> bool {
    kind == "ConfigMap" || kind == CR_KIND || config.kinds.iter().any(|k| k.kind == kind)
}

fn terms_of(spec: Option<&Json>) -> Result<Terms, Refusal> {
    let Some(spec) = spec.filter(|s| !s.is_null()) else {
        return Err(Refusal::Invalid("it has no spec".to_owned()));
    };
    let file: SpecFile = serde_path_to_error::deserialize(spec).map_err(|e| {
        let at = e.path().to_string();
        let why = e.into_inner();
        Refusal::Invalid(if at == "." {
            format!("spec: {why}")
        } else {
            format!("spec.{at}: {why}")
        })
    })?;
    let mut rules = BTreeSet::new();
    let mut unknown = Vec::new();
    for rule in &file.rules {
        match rule.parse::<RuleId>() {
            Ok(rule) => {
                rules.insert(rule);
            }
            Err(_) => unknown.push(rule.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(Refusal::UnknownRules(unknown));
    }
    if rules.is_empty() {
        return Err(Refusal::Invalid(
            "spec.rules is empty: name the rules the exception covers".to_owned(),
        ));
    }
    for (field, value) in [
        ("namespace", &file.target.namespace),
        ("kind", &file.target.kind),
        ("name", &file.target.name),
    ] {
        if value.is_empty() {
            return Err(Refusal::Invalid(format!("spec.match.{field} is empty")));
        }
    }
    for (i, path) in file.target.paths.iter().enumerate() {
        if !(path.is_empty() || path.starts_with('/')) || pointer::tokens(path).is_none() {
            return Err(Refusal::Invalid(format!(
                "spec.match.paths[{i}] \"{path}\" is not a JSON pointer such as /servers/production"
            )));
        }
    }
    let expires: Timestamp = file.expires.parse().map_err(|_| {
        Refusal::Invalid(format!(
            "spec.expires \"{}\" is not an RFC 3339 time such as 2027-03-31T00:00:00Z",
            file.expires
        ))
    })?;
    Ok(Terms {
        target: file.target,
        rules,
        reason: file.reason,
        expires,
        owner: file.owner,
        ticket: file.ticket,
    })
}

/// The object an exception covers: kind, namespace, name.
type TargetKey = (String, String, String);

/// The exceptions of the cluster (or of `check --exceptions`), indexed by the object each
/// one covers. Swapped whole when the watch has listed them again.
#[derive(Debug, Clone, Default)]
pub struct ExceptionSet {
    all: Vec<Arc<Exception>>,
    by_target: HashMap<TargetKey, Vec<Arc<Exception>>>,
}

impl ExceptionSet {
    pub fn new(exceptions: impl IntoIterator<Item = Exception>) -> ExceptionSet {
        let mut set = ExceptionSet::default();
        for exception in exceptions {
            let exception = Arc::new(exception);
            if let Ok(terms) = &exception.terms {
                let target = &terms.target;
                set.by_target
                    .entry((
                        target.kind.clone(),
                        target.namespace.clone(),
                        target.name.clone(),
                    ))
                    .or_default()
                    .push(exception.clone());
            }
            set.all.push(exception);
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Exception>> {
        self.all.iter()
    }

    /// The exceptions that name `id` (in force or not).
    pub fn naming(&self, id: &ObjectId) -> &[Arc<Exception>] {
        let Some(namespace) = &id.namespace else {
            return &[];
        };
        // Looked up without building a key of owned strings on the request path only when
        // there are exceptions at all.
        if self.by_target.is_empty() {
            return &[];
        }
        self.by_target
            .get(&(id.kind.clone(), namespace.clone(), id.name.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// How many exceptions stand in each state at `now`.
    pub fn states(
        &self,
        policy: &ExceptionPolicy,
        config: &ExtractConfig,
        now: Timestamp,
    ) -> BTreeMap<ExceptionState, usize> {
        let mut states: BTreeMap<ExceptionState, usize> =
            ExceptionState::ALL.iter().map(|s| (*s, 0)).collect();
        for exception in &self.all {
            *states
                .entry(exception.state(policy, config, now))
                .or_default() += 1;
        }
        states
    }

    /// The earliest moment after `now` at which some exception changes state (expires, or
    /// enters its warning window): when the audit must look again.
    pub fn next_change(&self, policy: &ExceptionPolicy, now: Timestamp) -> Option<Timestamp> {
        self.all
            .iter()
            .filter_map(|e| e.terms.as_ref().ok())
            .flat_map(|terms| {
                let warn = terms
                    .expires
                    .checked_sub(max_signed(policy.warn_before))
                    .ok();
                [Some(terms.expires), warn]
            })
            .flatten()
            .filter(|at| *at > now)
            .min()
    }
}

/// The exceptions in force for one object at one moment, ready to cover its findings.
#[derive(Debug)]
pub struct InForce<'a> {
    exceptions: Vec<&'a Exception>,
    policy: &'a ExceptionPolicy,
    now: Timestamp,
}

impl<'a> InForce<'a> {
    pub fn for_object(
        set: &'a ExceptionSet,
        policy: &'a ExceptionPolicy,
        config: &ExtractConfig,
        id: &ObjectId,
        now: Timestamp,
    ) -> InForce<'a> {
        let exceptions = set
            .naming(id)
            .iter()
            .map(Arc::as_ref)
            .filter(|e| e.refusals(policy, config, now).is_empty())
            .collect();
        InForce {
            exceptions,
            policy,
            now,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exceptions.is_empty()
    }

    /// The waiver for `finding` of the document `label`: the covering exception that runs
    /// longest (then the first by name), so the warning names the one that will matter.
    pub fn waiver(&self, label: &str, finding: &Finding) -> Option<Arc<Waiver>> {
        let exception = self
            .exceptions
            .iter()
            .filter(|e| e.covers(label, finding))
            .max_by(|a, b| {
                let expires = |e: &Exception| e.terms.as_ref().ok().map(|t| t.expires);
                expires(a)
                    .cmp(&expires(b))
                    .then_with(|| b.by().cmp(&a.by()))
            })?;
        let terms = exception.terms.as_ref().ok()?;
        Some(Arc::new(Waiver {
            by: exception.by(),
            expires: terms.expires.to_string(),
            reason: terms.reason.clone(),
            expiring: expiring(terms.expires, self.policy, self.now),
        }))
    }
}

/// The exception kind, for dynamic API calls.
pub fn exception_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: CR_GROUP.to_owned(),
        version: EXCEPTION_VERSION.to_owned(),
        api_version: format!("{CR_GROUP}/{EXCEPTION_VERSION}"),
        kind: EXCEPTION_KIND.to_owned(),
        plural: EXCEPTION_PLURAL.to_owned(),
    }
}

/// Whether `group`/`kind` is the exception kind (admission judges exceptions apart).
pub fn is_exception(group: &str, kind: &str) -> bool {
    group == CR_GROUP && kind == EXCEPTION_KIND
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::Pos;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn exception(spec: Json) -> Exception {
        Exception::from_object(&json!({
            "apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPIException",
            "metadata": {"name": "legacy-orders", "namespace": "asyncapi-guard",
                         "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": spec,
        }))
    }

    fn spec() -> Json {
        json!({"match": {"namespace": "payments", "kind": "ConfigMap", "name": "orders-api"},
               "rules": ["server-security-missing"], "reason": "legacy broker, mTLS in Q1",
               "expires": "2027-01-15T00:00:00Z", "owner": "team-payments"})
    }

    fn finding(rule: RuleId, path: &str) -> Finding {
        Finding::new(rule, path, Pos::UNKNOWN, "m", None)
    }

    fn orders() -> ObjectId {
        ObjectId::config_map("payments", "orders-api")
    }

    #[test]
    fn an_exception_covers_its_rules_key_and_paths_until_it_expires() {
        let mut narrow = spec();
        narrow["match"]["key"] = json!("asyncapi.yaml");
        narrow["match"]["paths"] = json!(["/servers/legacy"]);
        let set = ExceptionSet::new([exception(narrow)]);
        let policy = ExceptionPolicy::default();
        let config = ExtractConfig::default();
        let now = at("2026-12-07T00:00:00Z");
        let in_force = InForce::for_object(&set, &policy, &config, &orders(), now);
        let covers =
            |label: &str, rule, path: &str| in_force.waiver(label, &finding(rule, path)).is_some();
        assert!(covers(
            "asyncapi.yaml",
            RuleId::ServerSecurityMissing,
            "/servers/legacy"
        ));
        assert!(covers(
            "asyncapi.yaml",
            RuleId::ServerSecurityMissing,
            "/servers/legacy/security"
        ));
        assert!(!covers(
            "asyncapi.yaml",
            RuleId::ServerSecurityMissing,
            "/servers/legacy-2"
        ));
        assert!(!covers(
            "other.yaml",
            RuleId::ServerSecurityMissing,
            "/servers/legacy"
        ));
        assert!(!covers(
            "asyncapi.yaml",
            RuleId::SecuritySchemeUndefined,
            "/servers/legacy"
        ));
        let waiver = in_force
            .waiver(
                "asyncapi.yaml",
                &finding(RuleId::ServerSecurityMissing, "/servers/legacy"),
            )
            .unwrap();
        assert_eq!(waiver.by, "asyncapi-guard/legacy-orders");
        assert_eq!(waiver.expires, "2027-01-15T00:00:00Z");
        assert!(!waiver.expiring);

        // Within the warning window it says so; at expiry it no longer applies.
        let late = InForce::for_object(
            &set,
            &policy,
            &config,
            &orders(),
            at("2027-01-10T00:00:00Z"),
        );
        let waiver = late.waiver(
            "asyncapi.yaml",
            &finding(RuleId::ServerSecurityMissing, "/servers/legacy"),
        );
        assert!(waiver.unwrap().expiring);
        let gone = InForce::for_object(
            &set,
            &policy,
            &config,
            &orders(),
            at("2027-01-15T00:00:00Z"),
        );
        assert!(gone.is_empty());
        // Another object of the same namespace is not covered.
        let other = ObjectId {
            name: "billing".into(),
            ..orders()
        };
        assert!(InForce::for_object(&set, &policy, &config, &other, now).is_empty());
    }

    #[test]
    fn refusals_say_which_and_why() {
        let policy = ExceptionPolicy::default();
        let config = ExtractConfig::default();
        let now = at("2026-12-07T00:00:00Z");
        let reasons = |e: &Exception| {
            e.refusals(&policy, &config, now)
                .iter()
                .map(Refusal::reason)
                .collect::<Vec<_>>()
        };
        assert!(reasons(&exception(spec())).is_empty());

        let mut bad = spec();
        bad["rules"] = json!(["server-security", "server-security-missing"]);
        let refused = exception(bad);
        assert_eq!(reasons(&refused), ["UnknownRule"]);
        assert!(
            refused.refusals(&policy, &config, now)[0]
                .to_string()
                .contains("the unknown rule \"server-security\"")
        );

        let mut bad = spec();
        bad["reason"] = json!("  ");
        bad["expires"] = json!("2026-12-06T00:00:00Z");
        assert_eq!(reasons(&exception(bad)), ["EmptyReason", "Expired"]);

        let mut bad = spec();
        bad["expires"] = json!("2027-06-01T00:00:00Z");
        let too_long = exception(bad);
        assert_eq!(reasons(&too_long), ["TooLong"]);
        assert!(
            too_long.refusals(&policy, &config, now)[0]
                .to_string()
                .contains("90 days from its creation, so 2027-03-01T00:00:00Z at the latest")
        );

        let mut bad = spec();
        bad["match"]["kind"] = json!("Secret");
        assert_eq!(reasons(&exception(bad)), ["UnknownKind"]);

        let mut bad = spec();
        bad["expires"] = json!("next week");
        assert_eq!(reasons(&exception(bad)), ["Invalid"]);
        let mut bad = spec();
        bad["match"]["paths"] = json!(["servers/x"]);
        assert_eq!(reasons(&exception(bad)), ["Invalid"]);
        let mut bad = spec();
        let target = bad.as_object_mut().unwrap().remove("match").unwrap();
        bad["mtach"] = target;
        let refused = exception(bad);
        assert!(
            refused.refusals(&policy, &config, now)[0]
                .to_string()
                .contains("unknown field `mtach`"),
            "{:?}",
            refused.terms
        );

        let mut elsewhere = exception(spec());
        assert_eq!(elsewhere.status, None);
        elsewhere.namespace = "payments".into();
        assert_eq!(reasons(&elsewhere), ["NamespaceNotAllowed"]);
        assert_eq!(
            elsewhere.state(&policy, &config, now),
            ExceptionState::Refused
        );
    }

    #[test]
    fn states_and_the_next_change() {
        let policy = ExceptionPolicy::default();
        let config = ExtractConfig::default();
        let set = ExceptionSet::new([exception(spec())]);
        let count = |now: &str| set.states(&policy, &config, at(now));
        assert_eq!(count("2026-12-07T00:00:00Z")[&ExceptionState::Active], 1);
        assert_eq!(count("2027-01-02T00:00:00Z")[&ExceptionState::Expiring], 1);
        assert_eq!(count("2027-01-15T00:00:00Z")[&ExceptionState::Expired], 1);
        assert_eq!(
            set.next_change(&policy, at("2026-12-07T00:00:00Z")),
            Some(at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            set.next_change(&policy, at("2027-01-02T00:00:00Z")),
            Some(at("2027-01-15T00:00:00Z"))
        );
        assert_eq!(set.next_change(&policy, at("2027-02-01T00:00:00Z")), None);
    }
}
