//! What the loader targets read: the input as a text, within the limits they load with.

use asyncapi_guard::engine::document::{self, Limits};

/// The default limits, with a 1 MiB bound on the text (libFuzzer's -max_len).
pub fn limits() -> Limits {
    Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    }
}

/// The input as UTF-8 text, or `None` for what the loader refuses before reading it.
pub fn text(bytes: &[u8]) -> Option<&str> {
    document::check_bytes(bytes, &limits()).ok()
}
