//! Finds where a dotted key stands in the source text, for errors found after parsing
//! (semantic checks have no parser span). A best-effort scan: when the key cannot be found,
//! the error still names the file and the key.

use super::error::{line_column, ConfigError};

/// Line number (1-based) of `path` (e.g. `["servers", "web", "discovery", "kind"]`) in TOML text.
pub fn toml_line(text: &str, path: &[&str]) -> Option<usize> {
    toml_offset(text, path).map(|at| line_column(text, at).0)
}

/// Byte offset of the line that sets `path` in TOML text. Keys are compared as written first,
/// then in any case (gobetween matches keys in any case, and paths name the known key).
fn toml_offset(text: &str, path: &[&str]) -> Option<usize> {
    toml_offset_by(text, path, |a, b| a == b)
        .or_else(|| toml_offset_by(text, path, str::eq_ignore_ascii_case))
}

fn toml_offset_by(text: &str, path: &[&str], same: fn(&str, &str) -> bool) -> Option<usize> {
    let starts_with = |full: &[&str], prefix: &[&str]| {
        full.len() >= prefix.len() && full.iter().zip(prefix).all(|(a, b)| same(a, b))
    };
    let mut table: Vec<String> = Vec::new();
    let mut fallback = None;
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let at = offset;
        offset += raw.len();
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            let name = header.split(']').next().unwrap_or("");
            table = name.split('.').map(|s| s.trim().trim_matches('"').to_string()).collect();
            // The table itself, or the first table under it.
            let names: Vec<&str> = table.iter().map(String::as_str).collect();
            if fallback.is_none() && starts_with(&names, path) {
                fallback = Some(at);
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let mut full: Vec<&str> = table.iter().map(String::as_str).collect();
        full.extend(key.trim().split('.').map(|s| s.trim().trim_matches('"')));
        if full.len() == path.len() && starts_with(&full, path) {
            return Some(at);
        }
        if fallback.is_none() && starts_with(path, &full) {
            fallback = Some(at);
        }
    }
    fallback
}

/// Byte offset of element `index` of the TOML array that starts at or after `from`.
/// Handles arrays of scalars and strings (what the configuration has); `None` otherwise.
pub fn toml_array_element(text: &str, from: usize, index: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = from + text.get(from..)?.find('[')? + 1;
    let skip_blank = |mut at: usize| {
        while at < bytes.len() {
            match bytes[at] {
                b' ' | b'\t' | b'\r' | b'\n' => at += 1,
                b'#' => at += text[at..].find('\n').unwrap_or(text.len() - at),
                _ => break,
            }
        }
        at
    };
    for count in 0.. {
        at = skip_blank(at);
        match bytes.get(at)? {
            b']' => return None,
            b'[' | b'{' => return None,
            _ if count == index => return Some(at),
            b'"' => {
                at += 1;
                while *bytes.get(at)? != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'\'' => at += 1 + text[at + 1..].find('\'')? + 1,
            _ => at += text[at..].find([',', ']'])?,
        }
        at = skip_blank(at);
        if bytes.get(at) == Some(&b',') {
            at += 1;
        }
    }
    None
}

/// Line number of `path` in JSON text: each segment's quoted name, searched in order.
pub fn json_line(text: &str, path: &[&str]) -> Option<usize> {
    json_offset(text, path).map(|at| line_column(text, at).0)
}

fn json_offset(text: &str, path: &[&str]) -> Option<usize> {
    let mut offset = 0;
    let mut found = None;
    for segment in path {
        let needle = format!("\"{segment}\"");
        match text[offset..].find(&needle) {
            Some(at) => {
                offset += at + needle.len();
                found = Some(offset - needle.len());
            }
            None => break,
        }
    }
    found
}

/// Adds the position of `error.key` to an error raised by a check that ran after parsing. A key
/// ending in `[N]` (`servers.a.discovery.static_list[2]`) is placed at that array element, a
/// key not in the text at the nearest section that is.
pub fn place(error: ConfigError, text: &str, json: bool) -> ConfigError {
    place_read(error, text, json, text, |at| at)
}

/// `place`, with the key looked up in `read`, the text as it was parsed (a rewrite of `text`,
/// see `repeated`), and the position given in `text` through `to_text`, which maps an offset
/// of `read` to one of `text`.
pub fn place_read(
    mut error: ConfigError,
    read: &str,
    json: bool,
    text: &str,
    to_text: impl Fn(usize) -> usize,
) -> ConfigError {
    if error.position.is_none() {
        if let Some(key) = &error.key {
            error.position = key_offset(key, read, json).map(|(at, element)| {
                let (line, column) = line_column(text, to_text(at));
                (line, if element { column } else { 1 })
            });
        }
    }
    error
}

/// Where `place` puts `key`: a byte offset, and whether it is an array element's own (else
/// the error names the offset's line only).
fn key_offset(key: &str, text: &str, json: bool) -> Option<(usize, bool)> {
    let (key, element) = match key.strip_suffix(']').and_then(|k| k.rsplit_once('[')) {
        Some((key, index)) => (key, index.parse::<usize>().ok()),
        None => (key, None),
    };
    // A key that is missing (the error says so) is placed at its section.
    let path: Vec<&str> = key.split('.').collect();
    let at = (1..=path.len()).rev().find_map(|len| {
        let path = &path[..len];
        if json {
            json_offset(text, path)
        } else {
            toml_offset(text, path)
        }
    })?;
    Some(match element.and_then(|i| toml_array_element(text, at, i)) {
        Some(element) => (element, true),
        None => (at, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = "[servers.web]\nbind = \"x\"\n\n  [servers.web.discovery]\n  kind = \"static\"\n";

    #[test]
    fn finds_toml_keys() {
        assert_eq!(toml_line(TOML, &["servers", "web", "bind"]), Some(2));
        assert_eq!(toml_line(TOML, &["servers", "web", "discovery", "kind"]), Some(5));
        assert_eq!(toml_line(TOML, &["servers", "web", "discovery"]), Some(4));
    }

    #[test]
    fn finds_array_elements() {
        let text = "list = [\n  \"a,b\",  # first\n  'c',\n  3 ]";
        assert_eq!(toml_array_element(text, 0, 0), Some(11));
        assert_eq!(&text[toml_array_element(text, 0, 1).unwrap()..][..3], "'c'");
        assert_eq!(&text[toml_array_element(text, 0, 2).unwrap()..][..1], "3");
        assert_eq!(toml_array_element(text, 0, 3), None);
    }

    #[test]
    fn finds_keys_in_other_case_and_elements() {
        let text =
            "[Servers.web]\nBind = \"x\"\n[servers.web.discovery]\nstatic_list = [\n  \"a\",\n  \"b\" ]\n";
        assert_eq!(toml_line(text, &["servers", "web", "bind"]), Some(2));
        let e = place(ConfigError::at_key("servers.web.discovery.static_list[1]", "x"), text, false);
        assert_eq!(e.position, Some((6, 3)));
        let json = "{\"servers\": {\"web\": {\"discovery\": {\n \"static_list\": [\"a\",\n  \"b\"]}}}}";
        let e = place(ConfigError::at_key("servers.web.discovery.static_list[1]", "x"), json, true);
        assert_eq!(e.position, Some((3, 3)));
    }

    #[test]
    fn finds_json_keys() {
        let json = "{\n \"servers\": {\n  \"web\": {\n   \"bind\": \"x\"\n  }\n }\n}";
        assert_eq!(json_line(json, &["servers", "web", "bind"]), Some(4));
    }
}
