//! The YAML 1.2 core schema: what a plain scalar is (only `true`/`false` are booleans).

use crate::engine::document::ScalarKind;

/// The kind of a scalar. `plain` is false for quoted and block scalars, which are strings;
/// `tag` is the resolved tag, if any, as `(handle, suffix)`.
pub fn scalar_kind(text: &str, plain: bool, tag: Option<(&str, &str)>) -> ScalarKind {
    if let Some((handle, suffix)) = tag {
        if handle == "tag:yaml.org,2002:" {
            match suffix {
                "str" | "binary" | "timestamp" => return ScalarKind::Str,
                "null" => return ScalarKind::Null,
                "bool" => return ScalarKind::Bool,
                "int" => return ScalarKind::Int,
                "float" => return ScalarKind::Float,
                _ => {}
            }
        } else if (handle == "!" && suffix.is_empty()) || (handle.is_empty() && suffix == "!") {
            // The non-specific tag `!` makes a scalar a string.
            return ScalarKind::Str;
        }
    }
    if !plain {
        return ScalarKind::Str;
    }
    plain_kind(text)
}

/// The kind of an untagged plain scalar.
pub(crate) fn plain_kind(text: &str) -> ScalarKind {
    // Most plain scalars are words; one look at the first byte settles them.
    match text.as_bytes().first() {
        None => return ScalarKind::Null,
        Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'~' | b'n' | b'N' | b't' | b'T' | b'f' | b'F') => {
        }
        Some(_) => return ScalarKind::Str,
    }
    match text {
        "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarKind::Bool,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => ScalarKind::Float,
        _ if is_int(text) => ScalarKind::Int,
        _ if is_float(text) => ScalarKind::Float,
        _ => ScalarKind::Str,
    }
}

fn is_int(text: &str) -> bool {
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(oct) = text.strip_prefix("0o") {
        return digits(oct, 8);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return digits(hex, 16);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits(unsigned, 10)
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text).as_bytes();
    let mut i = 0;
    let int_digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp_digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema_plain_scalars() {
        for (text, kind) in [
            ("true", ScalarKind::Bool),
            ("False", ScalarKind::Bool),
            ("yes", ScalarKind::Str),
            ("on", ScalarKind::Str),
            ("~", ScalarKind::Null),
            ("", ScalarKind::Null),
            ("2.6", ScalarKind::Float),
            ("2.6.0", ScalarKind::Str),
            ("3", ScalarKind::Int),
            ("-3", ScalarKind::Int),
            ("0x1F", ScalarKind::Int),
            ("0o17", ScalarKind::Int),
            ("1e3", ScalarKind::Float),
            (".5", ScalarKind::Float),
            ("1.", ScalarKind::Float),
            ("e3", ScalarKind::Str),
            (".inf", ScalarKind::Float),
            ("-.Inf", ScalarKind::Float),
            ("nan", ScalarKind::Str),
            ("nullable", ScalarKind::Str),
            ("+", ScalarKind::Str),
            ("-", ScalarKind::Str),
        ] {
            assert_eq!(plain_kind(text), kind, "{text:?}");
            assert_eq!(scalar_kind(text, true, None), kind, "{text:?}");
        }
    }

    #[test]
    fn quoted_and_tagged_scalars() {
        assert_eq!(scalar_kind("3", false, None), ScalarKind::Str);
        assert_eq!(
            scalar_kind("3", true, Some(("tag:yaml.org,2002:", "str"))),
            ScalarKind::Str
        );
        assert_eq!(
            scalar_kind("x", false, Some(("tag:yaml.org,2002:", "int"))),
            ScalarKind::Int
        );
        assert_eq!(scalar_kind("3", true, Some(("!", ""))), ScalarKind::Str);
        assert_eq!(
            scalar_kind("3", true, Some(("!", "local"))),
            ScalarKind::Int
        );
    }
}
