//! Finds where a dotted key stands in the source text, for errors found after parsing
//! (semantic checks have no parser span). A best-effort scan: when the key cannot be found,
//! the error still names the file and the key.

use super::error::ConfigError;

/// Line number (1-based) of `path` (e.g. `["servers", "web", "discovery", "kind"]`) in TOML text.
pub fn toml_line(text: &str, path: &[&str]) -> Option<usize> {
    let mut table: Vec<String> = Vec::new();
    let mut fallback = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            let name = header.split(']').next().unwrap_or("");
            table = name.split('.').map(|s| s.trim().trim_matches('"').to_string()).collect();
            if table.iter().map(String::as_str).eq(path.iter().copied()) {
                fallback = Some(index + 1);
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let mut full: Vec<&str> = table.iter().map(String::as_str).collect();
        full.extend(key.trim().split('.').map(|s| s.trim().trim_matches('"')));
        if full == path {
            return Some(index + 1);
        }
        if fallback.is_none() && path.starts_with(&full) {
            fallback = Some(index + 1);
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
    found.map(|at| text[..at].matches('\n').count() + 1)
}

/// Adds the line of `error.key` to an error raised by a check that ran after parsing.
pub fn place(mut error: ConfigError, text: &str, json: bool) -> ConfigError {
    if error.position.is_none() {
        if let Some(key) = &error.key {
            let path: Vec<&str> = key.split('.').collect();
            let line = if json { json_line(text, &path) } else { toml_line(text, &path) };
            error.position = line.map(|line| (line, 1));
        }
    }
    error
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
    fn finds_json_keys() {
        let json = "{\n \"servers\": {\n  \"web\": {\n   \"bind\": \"x\"\n  }\n }\n}";
        assert_eq!(json_line(json, &["servers", "web", "bind"]), Some(4));
    }
}
