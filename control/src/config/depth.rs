//! A bound on how deeply a JSON document may nest, checked before the parser sees it.
//!
//! sonic-rs limits the depth of what it deserializes, but not of what it skips: a value it
//! throws away (the content of a unit enum variant such as `{"level": {"info": [[[[...]]]]}}`)
//! is walked recursively with no limit, and 80,000 levels overflow the stack and abort the
//! whole process. One linear scan over brackets outside strings refuses such documents first.
//! (TOML needs no such scan: the toml crate stops at 80 levels of arrays, inline tables and
//! dotted keys by itself; `load::tests` pins that.)

use super::error::{line_column, ConfigError};

/// Deepest nesting of objects and arrays accepted. Real configurations nest about five deep
/// (`servers.NAME.discovery.static_list[i]`); this leaves ample room and keeps the parser's
/// recursion far from the stack's end.
pub const MAX_DEPTH: usize = 64;

/// Refuses JSON text whose objects and arrays nest deeper than `MAX_DEPTH`, naming the line
/// and column where the limit is crossed. Malformed text passes: the parser reports it.
pub fn check_json_depth(text: &str) -> Result<(), ConfigError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ConfigError {
                        position: Some(line_column(text, at)),
                        ..ConfigError::new(format!("objects and arrays nest deeper than {MAX_DEPTH} levels"))
                    });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn accepts_up_to_the_limit() {
        assert!(check_json_depth(&nested(MAX_DEPTH)).is_ok());
        assert!(check_json_depth("{\"a\": [1, {\"b\": []}], \"c\": {}}").is_ok());
    }

    #[test]
    fn refuses_deeper_and_names_the_place() {
        let e = check_json_depth(&format!("{{\n  \"a\": {}", nested(100_000))).unwrap_err();
        // The brace is level 1, so the 64th '[' (the first is in column 8 of line 2) crosses it.
        assert_eq!(e.position, Some((2, 8 + MAX_DEPTH - 1)), "{e}");
        assert!(e.message.contains("deeper than 64"), "{e}");
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(1000), "{".repeat(1000));
        assert!(check_json_depth(&text).is_ok());
        // An escaped backslash ends before the quote, which then closes the string.
        let text = format!("[\"\\\\\", {}]", nested(10));
        assert!(check_json_depth(&text).is_ok());
        let text = format!("[\"\\\\\", {}]", nested(MAX_DEPTH));
        assert!(check_json_depth(&text).is_err());
    }
}
