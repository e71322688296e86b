//! Reading a configuration: format choice, `${VAR}` substitution, parsing with key paths and
//! positions, then the checks that need the whole model (`validate`).

use super::depth::check_json_depth;
use super::error::{line_column, suggest_known_key, ConfigError};
use super::locate::{place, toml_array_element};
use super::model::Config;
use super::validate::validate;
use serde::de::DeserializeOwned;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format, String> {
        match name {
            "toml" => Ok(Format::Toml),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown config format {other:?} (use toml or json)")),
        }
    }

    /// `.json` files are JSON; everything else is TOML, as in gobetween.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Toml,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Json => "json",
        }
    }
}

/// Replaces `${NAME}` with the environment variable's value, as gobetween's `-e` does: an unset
/// variable becomes the empty string, and a `${` with no `}` on its line is left as written.
/// Each of those is returned as a warning (with its position), since an empty value can start
/// a server on the wrong address.
pub fn substitute_env(text: &str) -> (String, Vec<ConfigError>) {
    let mut out = String::with_capacity(text.len());
    let mut warnings = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let at = text.len() - rest.len() + start;
        let warn = |message: String| ConfigError {
            position: Some(line_column(text, at)),
            ..ConfigError::new(message)
        };
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // gobetween's pattern, `\${.*?}`, does not cross a line end.
        let Some(end) = after.find(['}', '\n']).filter(|&end| after.as_bytes()[end] == b'}') else {
            warnings.push(warn("unclosed ${ left as written".into()));
            out.push_str("${");
            rest = after;
            continue;
        };
        let name = &after[..end];
        match std::env::var_os(name) {
            Some(value) => out.push_str(&value.to_string_lossy()),
            None => {
                warnings.push(warn(format!("environment variable {name} is not set; using an empty value")))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    (out, warnings)
}

/// Deserializes any model type (the whole config or one server) from text.
pub fn parse_as<T: DeserializeOwned>(text: &str, format: Format) -> Result<T, ConfigError> {
    match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, e, None))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                toml_error(text, e.into_inner(), Some(key))
            })
        }
        Format::Json => {
            check_json_depth(text)?;
            let mut de = sonic_rs::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let position = (inner.line() > 0).then(|| (inner.line(), inner.column()));
                ConfigError {
                    file: None,
                    position,
                    key: known_path(key),
                    message: suggest_known_key(&json_message(&inner)),
                }
            })
        }
    }
}

/// serde_path_to_error writes `.` for the root and `?` where it lost track (e.g. a document cut
/// off mid-way); neither names a key.
fn known_path(path: String) -> Option<String> {
    (path != "." && path != "?").then_some(path)
}

fn toml_error(text: &str, e: toml::de::Error, key: Option<String>) -> ConfigError {
    // toml reports an array's span for a bad element; narrow it to the element itself.
    let element = key.as_deref().and_then(|k| k.strip_suffix(']')?.rsplit_once('[')?.1.parse::<usize>().ok());
    let offset = e.span().map(|span| match element {
        Some(index) => toml_array_element(text, span.start, index).unwrap_or(span.start),
        None => span.start,
    });
    ConfigError {
        file: None,
        position: offset.map(|at| line_column(text, at)),
        key: key.and_then(known_path),
        message: suggest_known_key(e.message().trim()),
    }
}

/// sonic-rs appends its own "at line X column Y" and a source excerpt; keep only the reason.
fn json_message(e: &sonic_rs::Error) -> String {
    let full = e.to_string();
    let reason = full.split(" at line ").next().unwrap_or(&full);
    reason.trim().to_string()
}

/// Parses and validates configuration text.
pub fn parse_config(text: &str, format: Format) -> Result<Config, ConfigError> {
    let config: Config = parse_as(text, format)?;
    validate(&config).map_err(|e| place(e, text, format == Format::Json))?;
    Ok(config)
}

/// Reads, substitutes (when asked) and parses a configuration file. Every error names the file.
pub fn load_file(path: &Path, format: Option<Format>, env_vars: bool) -> Result<Config, ConfigError> {
    let format = format.unwrap_or_else(|| Format::from_path(path));
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("cannot read file: {e}")).in_file(path))?;
    let text = if env_vars {
        let (text, warnings) = substitute_env(&text);
        for warning in warnings {
            log::warn!("{}", warning.in_file(path));
        }
        text
    } else {
        text
    };
    parse_config(&text, format).map_err(|e| e.in_file(path))
}

/// Writes a configuration in either format (used by `check` and `/dump`).
pub fn render(config: &Config, format: Format) -> String {
    match format {
        Format::Toml => toml::to_string_pretty(config).expect("config model always serializes to TOML"),
        Format::Json => sonic_rs::to_string_pretty(config).expect("config model always serializes to JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_line_key_and_suggestion() {
        let text = "[servers.web]\nbind = \"127.0.0.1:1\"\nbalanse = \"weight\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n";
        let e = parse_config(text, Format::Toml).unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("servers.web.balanse"), "{e}");
        assert!(e.message.contains("did you mean `balance`"), "{e}");
    }

    #[test]
    fn bad_duration_and_backend_are_located() {
        let text = "[defaults]\nclient_idle_timeout = \"5x\"\n";
        let e = parse_config(text, Format::Toml).unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("defaults.client_idle_timeout"));

        let text = "{\"servers\": {\"a\": {\"bind\": \"127.0.0.1:1\",\n \"discovery\": {\"kind\": \"static\",\n \"static_list\": [\"nohost\"]}}}}";
        let e = parse_config(text, Format::Json).unwrap_err();
        assert!(e.key.as_deref().unwrap().starts_with("servers.a.discovery.static_list"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
    }

    #[test]
    fn truncated_json_names_no_key() {
        let e = parse_config("{\"servers\": {\"a\": {\"bind\": ", Format::Json).unwrap_err();
        assert!(e.key.as_deref().is_none_or(|k| !k.contains('?')), "{e}");
        assert!(e.position.is_some(), "{e}");
    }

    /// A value sonic-rs skips (a unit variant's content) was walked without a depth limit:
    /// 80,000 levels overflowed the stack and aborted the process.
    #[test]
    fn deep_json_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(80_000), "]".repeat(80_000));
        let text = format!("{{\"logging\": {{\"level\": {{\"info\": {deep}}}}}}}");
        let e = parse_config(&text, Format::Json).unwrap_err();
        assert!(e.message.contains("nest deeper than"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");
        let e =
            parse_as::<crate::config::Server>(&format!("{{\"bind\": {deep}}}"), Format::Json).unwrap_err();
        assert!(e.message.contains("nest deeper than"), "{e}");
    }

    /// The toml crate bounds nesting itself (80 levels); these must stay errors, not crashes.
    #[test]
    fn deep_toml_is_an_error_not_a_crash() {
        let n = 80_000;
        for text in [
            format!("[logging]\nlevel = {{info = {}{}}}\n", "[".repeat(n), "]".repeat(n)),
            format!("a = {}1{}\n", "{b = ".repeat(n), "}".repeat(n)),
            format!("[{}]\n", vec!["a"; n].join(".")),
            format!("{} = 1\n", vec!["a"; n].join(".")),
        ] {
            let e = parse_config(&text, Format::Toml).unwrap_err();
            assert!(e.message.contains("recursion"), "{e}");
        }
    }

    #[test]
    fn env_substitution() {
        std::env::set_var("BETWIXT_TEST_PORT", "4321");
        let (text, warnings) = substitute_env("bind = \":${BETWIXT_TEST_PORT}\"");
        assert_eq!((text.as_str(), warnings.len()), ("bind = \":4321\"", 0));
        // Unset: empty, with a warning where it was.
        let (text, warnings) = substitute_env("a\nb = \"${BETWIXT_SURELY_UNSET}x\"");
        assert_eq!(text, "a\nb = \"x\"");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].position, Some((2, 6)));
        assert!(warnings[0].message.contains("BETWIXT_SURELY_UNSET is not set"), "{}", warnings[0]);
        // A `${` closed only on a later line is left alone; the next reference still counts.
        let (text, warnings) = substitute_env("a = \"${x\"\nb = \"${BETWIXT_TEST_PORT}\" # }");
        assert_eq!(text, "a = \"${x\"\nb = \"4321\" # }");
        assert_eq!(warnings.iter().map(|w| w.position).collect::<Vec<_>>(), [Some((1, 6))]);
    }
}
