//! The fast reader for block-style YAML (to be written).

use crate::engine::document::{Limits, Stream};

pub(super) fn parse<'a>(_text: &'a str, _limits: &Limits) -> Option<Stream<'a>> {
    None
}
