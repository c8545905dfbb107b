//! The configuration loader on arbitrary bytes: a configuration or a clear error, never a
//! panic; and a configuration that loads, written back as YAML, loads to the same value.
#![no_main]

use asyncapi_guard::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match Config::parse(bytes, "config.yaml") {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(config) => {
            let written = config.to_yaml();
            let again = Config::parse(written.as_bytes(), "config.yaml")
                .unwrap_or_else(|e| panic!("{e}\n{written}"));
            assert_eq!(config, again, "{written}");
        }
    }
});
