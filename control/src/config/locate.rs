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
    fn finds_json_keys() {
        let json = "{\n \"servers\": {\n  \"web\": {\n   \"bind\": \"x\"\n  }\n }\n}";
        assert_eq!(json_line(json, &["servers", "web", "bind"]), Some(4));
    }
}
