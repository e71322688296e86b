//! Configuration errors that point at the file, the line and the key.

use crate::text::escape_for_log;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted key path such as `servers.sample.discovery.kind`.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError { file: None, position: None, key: None, message: message.into() }
    }

    pub fn at_key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { key: Some(key.into()), ..ConfigError::new(message) }
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("config error")?;
        if let Some(file) = &self.file {
            write!(f, " in {}", file.display())?;
        }
        if let Some((line, column)) = self.position {
            write!(f, " at line {line}, column {column}")?;
        }
        // Keys and messages may quote what the file or an API caller wrote.
        if let Some(key) = &self.key {
            write!(f, ", key `{}`", escape_for_log(key))?;
        }
        write!(f, ": {}", escape_for_log(&self.message))
    }
}

impl std::error::Error for ConfigError {}

/// 1-based (line, column) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

/// Appends "did you mean `x`?" to serde's "unknown field `k`, expected one of `a`, `b`" messages.
pub fn suggest_known_key(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (strsim::jaro_winkler(unknown, candidate), candidate))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, candidate)) => format!("{message}; did you mean `{candidate}`?"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 8), (2, 3));
    }

    #[test]
    fn suggests_closest_key() {
        let m = suggest_known_key("unknown field `balanse`, expected one of `bind`, `balance`");
        assert!(m.ends_with("did you mean `balance`?"), "{m}");
        let m = suggest_known_key("unknown field `zzz`, expected one of `bind`, `balance`");
        assert!(!m.contains("did you mean"), "{m}");
    }
}
