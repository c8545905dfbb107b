//! The generated documents the benchmarks share.

use std::fmt::Write as _;

/// A v3 document of about `target` bytes: `n` production servers, channels and operations,
/// all secured, over OAuth2 and SCRAM schemes, so that every rule has work to do. One scheme
/// per server up to 20: the same make-up at every size, so that cost per byte compares
/// sizes rather than kinds of content (with 20 schemes always, the smallest document was
/// three quarters scheme definitions, which judging barely reads).
pub fn generated_v3(target: usize) -> String {
    let head = "asyncapi: 3.0.0\ninfo:\n  title: Generated\n  version: 1.0.0\n";
    let per_item = 560; // bytes a server + channel + operation take, measured
    let n = (target / per_item).max(1);
    let schemes = n.min(20);
    let mut servers = String::from("servers:\n");
    let mut channels = String::from("channels:\n");
    let mut operations = String::from("operations:\n");
    for i in 0..n {
        let scheme = i % schemes;
        let _ = write!(
            servers,
            "  prod-{i}:\n    host: broker-{i}.example.com:9093\n    protocol: kafka-secure\n    security:\n      - $ref: '#/components/securitySchemes/s{scheme}'\n    tags:\n      - name: production\n"
        );
        let _ = write!(
            channels,
            "  orders{i}:\n    address: orders.{i}.placed\n    messages:\n      placed:\n        payload:\n          type: object\n          properties:\n            id: {{type: string}}\n            amount: {{type: number, minimum: 0}}\n"
        );
        let _ = write!(
            operations,
            "  send{i}:\n    action: send\n    channel:\n      $ref: '#/channels/orders{i}'\n    security:\n      - $ref: '#/components/securitySchemes/s{scheme}'\n"
        );
    }
    let mut components = String::from("components:\n  securitySchemes:\n");
    for s in 0..schemes {
        if s % 2 == 0 {
            let _ = write!(
                components,
                "    s{s}:\n      type: oauth2\n      flows:\n        clientCredentials:\n          tokenUrl: https://auth.example.com/token\n          availableScopes:\n            orders:read: read\n            orders:write: write\n      scopes: [orders:write]\n"
            );
        } else {
            let _ = write!(components, "    s{s}:\n      type: scramSha512\n");
        }
    }
    format!("{head}{servers}{channels}{operations}{components}")
}
