//! The baseline of `benches/load-compare.sh`: the least a validating webhook can do over the
//! same transport (axum, rustls, HTTP/1.1 keep-alive): read the AdmissionReview, answer
//! "allowed" with its uid. What asyncapi-guard costs beyond this is the cost of judging.
//!
//!     cargo run --release --example baseline_server -- 127.0.0.1:18443 tls.crt tls.key

use axum::Router;
use axum::body::Bytes;
use axum::response::Json;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use serde_json::{Value, json};

async fn validate(body: Bytes) -> Json<Value> {
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let uid = review.pointer("/request/uid").cloned().unwrap_or_default();
    Json(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": true}}),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, cert, key] = args.as_slice() else {
        anyhow::bail!("usage: baseline_server ADDR CERT KEY");
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = RustlsConfig::from_pem_file(cert, key).await?;
    let app = Router::new().route("/validate", post(validate));
    axum_server::bind_rustls(addr.parse::<std::net::SocketAddr>()?, config)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}
