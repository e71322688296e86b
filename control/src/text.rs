//! Text from configurations and peers that ends up in log lines, metric labels and URL paths:
//! which characters are unsafe there, and how log lines escape them.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters that can forge or disguise output: control characters (C0 with newline and
/// carriage return, DEL, C1), the Unicode line and paragraph separators, and the
/// bidirectional-text controls that reorder how a line is displayed ("Trojan Source").
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every unsafe character written as an escape (`\n`, `\r`, `\t`, `\u{1b}`), so that
/// one log entry stays one line and shows what it holds. Safe text is returned as it is.
pub fn escape_for_log(text: &str) -> Cow<'_, str> {
    if !text.contains(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    escape_into(text, Escapes::Log, &mut out);
    Cow::Owned(out)
}

/// Appends `text` to `out` as a JSON string: quoted, with `"`, `\` and every unsafe character
/// escaped (`\u202e`), so that it also stays one harmless line on a terminal.
pub fn push_json_string(text: &str, out: &mut String) {
    out.push('"');
    escape_into(text, Escapes::Json, out);
    out.push('"');
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escapes {
    /// Rust's `\u{1b}`; quotes and backslashes as they are.
    Log,
    /// JSON's `\u001b`, `\"` and `\\`.
    Json,
}

fn escape_into(text: &str, escapes: Escapes, out: &mut String) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' | '\\' if escapes == Escapes::Json => {
                out.push('\\');
                out.push(c);
            }
            // Every unsafe character is in the Basic Multilingual Plane: one `\uXXXX` in JSON.
            c if is_unsafe(c) && escapes == Escapes::Json => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_text_is_untouched() {
        for text in ["web", "db-1.internal", "a \"quoted\" name", "Zürich/東京", "back\\slash"] {
            assert!(matches!(escape_for_log(text), Cow::Borrowed(t) if t == text), "{text}");
        }
    }

    #[test]
    fn unsafe_characters_are_escaped() {
        assert_eq!(escape_for_log("a\"\n[INFO] forged"), "a\"\\n[INFO] forged");
        assert_eq!(escape_for_log("x\r\ty"), "x\\r\\ty");
        assert_eq!(escape_for_log("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_for_log("\u{85}\u{2028}\u{202e}\u{7f}"), "\\u{85}\\u{2028}\\u{202e}\\u{7f}");
        assert!(!escape_for_log("\u{0}\u{9f}\u{2029}\u{2066}").contains(is_unsafe));
    }
}
