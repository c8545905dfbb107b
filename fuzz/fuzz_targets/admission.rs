//! The AdmissionReview decoder and handler on arbitrary bodies: always a well-formed
//! AdmissionReview answer (the uid echoed when there is one), never a panic.
#![no_main]

use asyncapi_guard::service::state::ActiveConfig;
use asyncapi_guard::webhook::admission::{RequestOptions, review};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let active = ActiveConfig::default();
    let (answer, outcome) = review(&active, body, &RequestOptions::default());
    let json: Value = serde_json::to_value(&answer).expect("the answer serialises");
    assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(json["kind"], "AdmissionReview");
    let response = &json["response"];
    assert!(response["allowed"].is_boolean(), "{json}");
    assert_eq!(response["uid"].as_str(), Some(outcome.uid.as_str()));
    if response["allowed"] == false {
        assert!(response["status"]["message"].is_string(), "{json}");
    }
});
