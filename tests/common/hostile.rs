//! Hostile inputs, shared by tests/hostile.rs and benches/engine.rs.
#![allow(dead_code)]

/// A "billion laughs" document: 10 levels of 10 aliases each.
pub fn alias_bomb() -> String {
    let mut bomb = String::from(
        "asyncapi: 3.0.0\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let previous = vec![format!("*l{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("l{i}: &l{i} [{previous}]\n"));
    }
    bomb
}

/// Block mappings nested `levels` deep, one more space of indentation each.
pub fn deep_block(levels: usize) -> String {
    let mut src = String::from("asyncapi: 3.0.0\nx:\n");
    for level in 0..levels {
        src.push_str(&" ".repeat(level + 1));
        src.push_str("a:\n");
    }
    src
}

pub fn deep_flow(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

pub fn deep_json(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

/// A valid-looking document padded to `bytes`.
pub fn padded(bytes: usize) -> String {
    let mut big = String::from("asyncapi: 3.0.0\ninfo: {title: big, version: '1'}\nx-padding:\n");
    while big.len() < bytes {
        big.push_str("  - 'padding padding padding padding padding padding padding padding'\n");
    }
    big
}
