//! The YAML block reader against the full parser on arbitrary text: whatever the block
//! reader reads, the full parser must read into the very same tree (nodes, kinds, texts,
//! offsets, heights). Where they differ, the fast path would give a verdict the full parser
//! would not.
#![no_main]

mod input;

use asyncapi_guard::engine::document::yaml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let limits = input::limits();
    let Some(text) = input::text(bytes) else {
        return;
    };
    let Some(fast) = yaml::parse_block(text, &limits) else {
        return;
    };
    match yaml::parse_full(text, &limits) {
        Ok(full) => {
            if let Some(difference) = fast.difference(&full) {
                panic!("the readers differ: {difference}");
            }
        }
        Err(error) => panic!("the block reader read what the full parser refuses: {error}"),
    }
});
