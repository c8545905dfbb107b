//! The configuration loader on arbitrary bytes: a configuration or a clear error, never a
//! panic.
#![no_main]

use asyncapi_guard::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Err(error) = Config::parse(bytes, "config.yaml") {
        assert!(!error.to_string().is_empty());
    }
});
