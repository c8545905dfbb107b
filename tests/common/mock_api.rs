//! A Kubernetes API server played from a script: a real `kube::Client` over tower-test's
//! mock service, so client code is tested against exact HTTP exchanges without a cluster.
#![allow(dead_code)]

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{Handle, SendResponse};

pub struct MockApi {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A client whose default namespace is `namespace`, and the API it talks to.
pub fn client(namespace: &str) -> (kube::Client, MockApi) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, namespace), MockApi { handle })
}

/// One request the client made.
pub struct Exchange {
    pub method: Method,
    pub content_type: String,
    /// Path and query.
    pub uri: String,
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl Exchange {
    pub fn respond(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.send.send_response(response);
    }

    /// A kind the API server does not serve (its CRD not installed).
    pub fn not_served(self) {
        self.respond(
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    }

    pub fn not_found(self, kind: &str, name: &str) {
        self.respond(
            404,
            status(404, "NotFound", &format!("{kind} \"{name}\" not found")),
        );
    }
}

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code})
}

impl MockApi {
    /// Fails the test if the client makes a request within `within`.
    pub async fn expect_nothing(&mut self, within: std::time::Duration) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(within, self.handle.next_request()).await
        {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }

    /// The next request; fails the test if it is not `method` on a URI starting with `uri`.
    pub async fn expect(&mut self, method: Method, uri: &str) -> Exchange {
        let (request, send) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.handle.next_request(),
        )
        .await
        .unwrap_or_else(|_| panic!("no request came; expected {method} {uri}"))
        .unwrap_or_else(|| panic!("the client went away; expected {method} {uri}"));
        let (parts, body) = request.into_parts();
        let body = super::fake_api::body_of(&body.collect().await.unwrap().to_bytes());
        let got = parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert_eq!(parts.method, method, "{got}");
        assert!(
            got.starts_with(uri),
            "expected {method} {uri}, got {} {got}",
            parts.method
        );
        let content_type = super::fake_api::header(&parts, "content-type");
        Exchange {
            method: parts.method,
            content_type,
            uri: got,
            body,
            send,
        }
    }
}
