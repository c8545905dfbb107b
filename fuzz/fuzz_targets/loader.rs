//! The loader on arbitrary bytes, by both paths (JSON when the text may be JSON, YAML 1.2
//! otherwise): no panic, no hang (libFuzzer's -timeout), memory bounded by the limits
//! (-rss_limit_mb), and every error has a position inside the text.
#![no_main]

use asyncapi_guard::engine::document::{self, Limits, json, yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let limits = Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let Ok(text) = document::check_bytes(bytes, &limits) else {
        return;
    };
    let lines = text.split(['\n', '\r']).count().max(1);
    let check = |result: Result<document::Stream<'_>, document::LoadError>| match result {
        Ok(stream) => {
            for root in stream.roots() {
                let _ = document::value::to_json(root, limits.max_depth);
            }
        }
        Err(error) => {
            let pos = error.pos();
            assert!(
                pos.line as usize <= lines + 1,
                "{error} at {pos:?}, past the {lines} lines of the text"
            );
        }
    };
    check(document::load(text, &limits));
    check(yaml::parse(text, &limits));
    if json::may_be_json(text) {
        check(json::parse(text, &limits, true));
    }
});
