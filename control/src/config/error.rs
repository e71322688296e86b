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

/// Appends "did you mean `x`?" to serde's "unknown field `k`, expected one of `a`, `b`" and
/// "unknown variant …" messages.
pub fn suggest_known_key(message: &str) -> String {
    let Some(rest) =
        message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    match closest(unknown, expected.split('`').skip(1).step_by(2)) {
        Some(candidate) => format!("{message}; did you mean `{candidate}`?"),
        None => message.to_string(),
    }
}

/// The candidate most like `word`, when one is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// Something gobetween accepts and betwixt accepts too, but reads in a way worth saying: an
/// unknown key, a key in other case, a loose value. Under strict mode each one is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigWarning {
    pub file: Option<PathBuf>,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted key path as written, such as `servers.web.healthcheck.fails`.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigWarning {
    pub fn at_key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigWarning { file: None, position: None, key: Some(key.into()), message: message.into() }
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }

    /// The same finding as an error, for strict mode.
    pub fn to_error(&self) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: self.position,
            key: self.key.clone(),
            message: format!("{} (strict mode)", self.message),
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let as_error = ConfigError { message: self.message.clone(), ..self.to_error() };
        let text = as_error.to_string();
        write!(f, "config warning{}", text.strip_prefix("config error").unwrap_or(&text))
    }
}

/// The first warning as an error when strict mode is on.
pub fn enforce_strict(warnings: &[ConfigWarning], strict: bool) -> Result<(), ConfigError> {
    match warnings.first() {
        Some(first) if strict => Err(first.to_error()),
        _ => Ok(()),
    }
}

/// At most this many warnings are kept from one reading: a body of a million bad backend lines
/// must not make the control thread format and log a million lines.
pub const MAX_WARNINGS: usize = 1000;

/// Warnings gathered while reading one part of a configuration, keyed under a common prefix.
#[derive(Debug, Default)]
pub struct Warnings {
    prefix: String,
    list: Vec<ConfigWarning>,
    /// Warnings beyond `MAX_WARNINGS`, only counted.
    more: usize,
}

impl Warnings {
    /// `prefix` is the dotted path the keys are under (`servers.web`), or empty for the root.
    pub fn new(prefix: impl Into<String>) -> Self {
        Warnings { prefix: prefix.into(), list: Vec::new(), more: 0 }
    }

    pub fn push(&mut self, warning: ConfigWarning) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(warning);
        } else {
            self.more += 1;
        }
    }

    /// Takes in the warnings of a part (a server), counting those it left out.
    pub fn absorb(&mut self, part: Warnings) {
        self.more += part.more;
        for warning in part.list {
            self.push(warning);
        }
    }

    /// The warnings, with a last one counting those left out.
    pub fn finish(mut self) -> Vec<ConfigWarning> {
        if self.more > 0 {
            let key = (!self.prefix.is_empty()).then(|| self.prefix.clone());
            let message = format!("{} more warnings not shown", self.more);
            self.list.push(ConfigWarning { key, ..ConfigWarning::at_key("", message) });
        }
        self.list
    }

    pub fn key(&self, field: &str) -> String {
        if self.prefix.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.prefix)
        }
    }

    /// Records `message` against `field`, when there is one.
    pub fn note(&mut self, field: &str, message: Option<String>) {
        if let Some(message) = message {
            self.push(ConfigWarning::at_key(self.key(field), message));
        }
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
    fn warnings_print_like_errors() {
        let w = ConfigWarning { position: Some((3, 1)), ..ConfigWarning::at_key("a.b", "odd") }
            .in_file(Path::new("x.toml"));
        assert_eq!(w.to_string(), "config warning in x.toml at line 3, column 1, key `a.b`: odd");
        assert_eq!(
            w.to_error().to_string(),
            "config error in x.toml at line 3, column 1, key `a.b`: odd (strict mode)"
        );
        assert!(enforce_strict(std::slice::from_ref(&w), false).is_ok());
        assert!(enforce_strict(&[w], true).is_err());
    }

    #[test]
    fn warnings_are_bounded() {
        let mut warnings = Warnings::new("servers.a");
        for _ in 0..MAX_WARNINGS + 5 {
            warnings.note("x", Some("odd".into()));
        }
        let mut all = Warnings::new("");
        all.note("y", Some("odd".into()));
        all.absorb(warnings);
        let list = all.finish();
        assert_eq!(list.len(), MAX_WARNINGS + 1);
        assert_eq!(list[MAX_WARNINGS].message, "6 more warnings not shown");
        assert_eq!(list[MAX_WARNINGS].key, None);
    }

    #[test]
    fn suggests_closest_key() {
        let m = suggest_known_key("unknown variant `roundrobbin`, expected one of `weight`, `roundrobin`");
        assert!(m.ends_with("did you mean `roundrobin`?"), "{m}");
        let m = suggest_known_key("unknown field `balanse`, expected one of `bind`, `balance`");
        assert!(m.ends_with("did you mean `balance`?"), "{m}");
        let m = suggest_known_key("unknown field `zzz`, expected one of `bind`, `balance`");
        assert!(!m.contains("did you mean"), "{m}");
    }
}
