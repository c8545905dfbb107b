//! The AdmissionReview decoder and handler on arbitrary bodies. Two properties:
//!
//! - any body gets a well-formed AdmissionReview answer whose `uid` is the request's own
//!   `uid`, read here independently with serde_json (the API server matches answers to
//!   requests by it);
//! - a well-formed review of a labelled ConfigMap, whatever its document holds, is judged
//!   (allowed or denied), never answered as an unreadable request.
#![no_main]

use arbitrary::Arbitrary;
use asyncapi_guard::kubernetes::exceptions::ExceptionSet;
use asyncapi_guard::service::state::ActiveConfig;
use asyncapi_guard::webhook::admission::{Context, RequestOptions, Verdict, review};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A captured review of a labelled ConfigMap; its document is replaced by the input.
const LABELLED: &str = include_str!("../../tests/fixtures/admission/configmap-create.json");

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    /// Any bytes as the request body.
    Body(&'a [u8]),
    /// A labelled ConfigMap whose `asyncapi.yaml` is this text.
    Document(String),
}

fuzz_target!(|input: Input<'_>| {
    let active = ActiveConfig::default();
    let exceptions = ExceptionSet::default();
    let context = Context {
        active: &active,
        exceptions: &exceptions,
        now: Timestamp::UNIX_EPOCH,
    };
    match input {
        Input::Body(body) => {
            let (answer, _) = review(&context, body, &RequestOptions::default());
            let json = serde_json::to_value(&answer).expect("the answer serialises");
            well_formed(&json);
            let sent = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.pointer("/request/uid").and_then(Value::as_str).map(str::to_owned));
            if let Some(uid) = sent {
                assert_eq!(json["response"]["uid"].as_str(), Some(uid.as_str()), "{json}");
            }
        }
        Input::Document(text) => {
            let mut body: Value = serde_json::from_str(LABELLED).expect("the fixture is JSON");
            body["request"]["object"]["data"]["asyncapi.yaml"] = Value::String(text);
            let bytes = serde_json::to_vec(&body).expect("a value serialises");
            let (answer, outcome) = review(&context, &bytes, &RequestOptions::default());
            let json = serde_json::to_value(&answer).expect("the answer serialises");
            well_formed(&json);
            assert!(
                matches!(outcome.verdict, Verdict::Allowed | Verdict::Denied),
                "{:?}: {json}",
                outcome.verdict
            );
            assert_eq!(json["response"]["uid"], body["request"]["uid"]);
        }
    }
});

/// The parts of an answer the API server needs, whatever was asked.
fn well_formed(json: &Value) {
    assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(json["kind"], "AdmissionReview");
    let response = &json["response"];
    assert!(response["allowed"].is_boolean(), "{json}");
    assert!(response["uid"].is_string(), "{json}");
    if response["allowed"] == false {
        assert!(response["status"]["message"].is_string(), "{json}");
    }
}
