//! Reading a configuration: format choice, `${VAR}` substitution, parsing with key paths and
//! positions, then the checks that need the whole model (`validate`).

use super::depth::check_json_depth;
use super::error::{line_column, suggest_known_key, ConfigError, ConfigWarning};
use super::locate::{place, place_read, toml_array_element};
use super::model::Config;
use super::repeated::{merge_repeated_keys, Merged};
use super::tolerant::{tolerant, KeyNotes};
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
pub fn substitute_env(text: &str) -> (String, Vec<ConfigWarning>) {
    let mut out = String::with_capacity(text.len());
    let mut warnings = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let at = text.len() - rest.len() + start;
        let warn = |message: String| ConfigWarning {
            file: None,
            position: Some(line_column(text, at)),
            key: None,
            message,
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

/// Deserializes any model type (the whole config or one server) from text. Keys are read as
/// gobetween reads them (see `tolerant`); each key read loosely, and each key a JSON object
/// repeats (see `repeated`), comes back as a warning, named by its key path (`parse_config`
/// adds positions).
pub fn parse_as<T: DeserializeOwned>(
    text: &str,
    format: Format,
) -> Result<(T, Vec<ConfigWarning>), ConfigError> {
    parse_merged(text, format).map(|(value, warnings, _)| (value, warnings))
}

/// `parse_as`, with the JSON text as it was read when repeated keys had to be merged (where
/// later errors are placed).
fn parse_merged<T: DeserializeOwned>(
    text: &str,
    format: Format,
) -> Result<(T, Vec<ConfigWarning>, Option<Merged>), ConfigError> {
    let notes = KeyNotes::default();
    let mut merged = None;
    let value = match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, e, None))?;
            serde_path_to_error::deserialize(tolerant(de, &notes)).map_err(|e| {
                let key = e.path().to_string();
                notes.hint(toml_error(text, e.into_inner(), Some(key)))
            })?
        }
        Format::Json => {
            check_json_depth(text)?;
            merged = merge_repeated_keys(text);
            let read = merged.as_ref().map_or(text, |m| m.text.as_str());
            let error = |e: sonic_rs::Error, key| json_error(e, key, text, merged.as_ref());
            let mut de = sonic_rs::Deserializer::from_str(read);
            let value = serde_path_to_error::deserialize(tolerant(&mut de, &notes)).map_err(|e| {
                let key = e.path().to_string();
                notes.hint(error(e.into_inner(), known_path(key)))
            })?;
            de.end().map_err(|e| error(e, None))?;
            value
        }
    };
    let mut warnings = merged.as_mut().map(|m| std::mem::take(&mut m.warnings)).unwrap_or_default();
    warnings.extend(notes.into_warnings());
    Ok((value, warnings, merged))
}

/// Finding a key's line scans the text, so only this many warnings get positions: a text of a
/// few megabytes with a thousand warnings must not take seconds. Real files have far fewer.
const MAX_PLACED: usize = 100;

/// A parse error of JSON `text`, or of its rewrite `merged`, placed in `text`.
fn json_error(e: sonic_rs::Error, key: Option<String>, text: &str, merged: Option<&Merged>) -> ConfigError {
    let position = (e.line() > 0).then(|| match merged {
        Some(merged) => line_column(text, merged.source_offset(e.offset())),
        None => (e.line(), e.column()),
    });
    ConfigError { file: None, position, key, message: suggest_known_key(&json_message(&e)) }
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

/// Parses and validates configuration text. What gobetween tolerates comes back as warnings,
/// in the order of the text.
pub fn parse_config(text: &str, format: Format) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let json = format == Format::Json;
    let (config, mut warnings, merged): (Config, _, _) = parse_merged(text, format)?;
    let place = |e| place_in(e, text, json, merged.as_ref());
    validate(&config).map_err(place)?;
    warnings.extend(config.lint().map_err(place)?);
    for warning in warnings.iter_mut().take(MAX_PLACED) {
        let key =
            ConfigError { position: warning.position, key: warning.key.clone(), ..ConfigError::new("") };
        warning.position = place(key).position;
    }
    warnings.sort_by_key(|w| w.position.unwrap_or((usize::MAX, 0)));
    Ok((config, warnings))
}

/// `place`; with repeated keys merged, the key is looked up in the text as read, so that it is
/// found where its value came from and not at an earlier appearance that was overridden.
fn place_in(error: ConfigError, text: &str, json: bool, merged: Option<&Merged>) -> ConfigError {
    match merged {
        Some(merged) => place_read(error, &merged.text, json, text, |at| merged.source_offset(at)),
        None => place(error, text, json),
    }
}

/// Substitutes `${NAME}` (when asked, see `substitute_env`) and parses configuration text. The
/// substitution's warnings come first, then those of `parse_config`.
pub fn parse_text(
    text: &str,
    format: Format,
    env_vars: bool,
) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let (text, mut warnings) = if env_vars { substitute_env(text) } else { (text.to_string(), Vec::new()) };
    let (config, parsed) = parse_config(&text, format)?;
    warnings.extend(parsed);
    Ok((config, warnings))
}

/// Reads, substitutes (when asked) and parses a configuration file. Every error and warning
/// names the file.
pub fn load_file(
    path: &Path,
    format: Option<Format>,
    env_vars: bool,
) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let format = format.unwrap_or_else(|| Format::from_path(path));
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("cannot read file: {e}")).in_file(path))?;
    let (config, warnings) = parse_text(&text, format, env_vars).map_err(|e| e.in_file(path))?;
    Ok((config, warnings.into_iter().map(|w| w.in_file(path)).collect()))
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
    use crate::config::tolerant::MAX_KEY_NOTES;

    #[test]
    fn unknown_key_is_a_warning_with_line_key_and_suggestion() {
        let text = "[servers.web]\nbind = \"127.0.0.1:1\"\nbalanse = \"weight\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n";
        let (config, warnings) = parse_config(text, Format::Toml).unwrap();
        assert_eq!(config.servers["web"].bind, "127.0.0.1:1");
        let [w] = &warnings[..] else { panic!("{warnings:?}") };
        assert_eq!(w.position.map(|p| p.0), Some(3), "{w}");
        assert_eq!(w.key.as_deref(), Some("servers.web.balanse"), "{w}");
        assert!(w.message.contains("did you mean `balance`"), "{w}");
    }

    #[test]
    fn keys_in_other_case_are_read_in_both_formats() {
        let text = "[Servers.web]\nBIND = \"127.0.0.1:1\"\n[Servers.web.Discovery]\nKind = \"static\"\nstatic_list = []\n";
        let (config, warnings) = parse_config(text, Format::Toml).unwrap();
        assert_eq!(config.servers["web"].bind, "127.0.0.1:1");
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert_eq!(warnings[1].key.as_deref(), Some("Servers.web.BIND"));
        assert_eq!(warnings[1].position.map(|p| p.0), Some(2));
        let json = "{\"Servers\": {\"web\": {\"Bind\": \"127.0.0.1:1\",\n \"discovery\": {\"kind\": \"static\", \"x\": {\"y\": 1}}}}}";
        let (config, warnings) = parse_config(json, Format::Json).unwrap();
        assert_eq!(config.servers["web"].bind, "127.0.0.1:1");
        let keys: Vec<&str> = warnings.iter().filter_map(|w| w.key.as_deref()).collect();
        assert!(keys.contains(&"Servers.web.discovery.x"), "{keys:?}");
        assert!(keys.contains(&"Servers.web.Bind"), "{keys:?}");
        assert!(!keys.iter().any(|k| k.ends_with(".y")), "inside an unknown key nothing is read: {keys:?}");
    }

    #[test]
    fn unknown_keys_are_bounded() {
        let mut json = String::from("{");
        for i in 0..=MAX_KEY_NOTES {
            json.push_str(&format!("\"k{i}\": 1,"));
        }
        json.push_str("\"servers\": {}}");
        let e = parse_config(&json, Format::Json).unwrap_err();
        assert!(e.message.contains("more than 1000"), "{e}");
        let few = "{\"k\": 1, \"servers\": {}}";
        assert_eq!(parse_config(few, Format::Json).unwrap().1.len(), 1);
    }

    #[test]
    fn a_missing_key_names_its_misspelling() {
        let text = "[servers.web]\nbind = \"127.0.0.1:1\"\n[servers.web.discovry]\nkind = \"static\"\n";
        let e = parse_config(text, Format::Toml).unwrap_err();
        assert!(e.message.starts_with("missing field `discovery`"), "{e}");
        assert!(e.message.contains("`servers.web.discovry` is not a key; did you mean `discovery`?"), "{e}");
    }

    /// serde's derive would fill a struct from an array field by field; Go refuses it.
    #[test]
    fn a_section_written_as_an_array_is_a_type_error() {
        let e = parse_as::<crate::config::Server>("[\"127.0.0.1:1\"]", Format::Json).unwrap_err();
        assert!(e.message.starts_with("invalid type: sequence, expected struct Server"), "{e}");
        let e = parse_config(
            "{\"servers\": {\"a\": {\"bind\": \":1\", \"discovery\": [\"static\"]}}}",
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("servers.a.discovery"), "{e}");
        assert!(e.message.starts_with("invalid type: sequence"), "{e}");
        let e = parse_config("[servers]\na = [\":1\"]\n", Format::Toml).unwrap_err();
        assert!(e.message.starts_with("invalid type: sequence"), "{e}");
    }

    #[test]
    fn trailing_json_is_an_error() {
        assert!(parse_config("{\"servers\": {}} x", Format::Json).is_err());
    }

    #[test]
    fn bad_duration_and_backend_are_located() {
        let text = "[defaults]\nclient_idle_timeout = \"5x\"\n";
        let (_, warnings) = parse_config(text, Format::Toml).unwrap();
        assert_eq!(warnings[0].position.map(|p| p.0), Some(2), "{warnings:?}");
        assert_eq!(warnings[0].key.as_deref(), Some("defaults.client_idle_timeout"));

        let text = "[servers.a]\nbind = \":1\"\n[servers.a.healthcheck]\nkind = \"ping\"\ntimeout = \"5x\"\n";
        let e = parse_config(text, Format::Toml).unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(5), "{e}");
        assert_eq!(e.key.as_deref(), Some("servers.a.healthcheck.timeout"));

        let text = "{\"servers\": {\"a\": {\"bind\": \"127.0.0.1:1\",\n \"discovery\": {\"kind\": \"static\",\n \"static_list\": [\"a:1\", \"nohost\"]}}}}";
        let (config, warnings) = parse_config(text, Format::Json).unwrap();
        assert_eq!(config.servers["a"].discovery.static_list.as_ref().unwrap().len(), 2, "kept as written");
        assert_eq!(warnings[0].key.as_deref(), Some("servers.a.discovery.static_list[1]"));
        assert_eq!(warnings[0].position, Some((3, 25)), "{warnings:?}");
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
    fn loose_values_are_warned_once_with_their_key() {
        let text = "[logging]\nlevel = \"WARNING\"\nformat = \"xml\"\n[defaults]\nbackend_idle_timeout = \"\"\n\
            [servers.a]\nbind = \":1\"\n[servers.a.discovery]\nkind = \"static\"\n\
            [servers.a.healthcheck]\nkind = \"ping\"\nfails = -2\npasses = 0\n\
            [servers.b]\nbind = \":2\"\n[servers.b.discovery]\nkind = \"consul\"\nconsul_service_datacenter = \"dc1\"\n\
            consul_service_name = \"web\"\n";
        let (config, warnings) = parse_config(text, Format::Toml).unwrap();
        let keys: Vec<(&str, usize)> =
            warnings.iter().map(|w| (w.key.as_deref().unwrap(), w.position.unwrap().0)).collect();
        assert_eq!(
            keys,
            [
                ("logging.level", 2),
                ("logging.format", 3),
                ("defaults.backend_idle_timeout", 5),
                ("servers.a.discovery.static_list", 8),
                ("servers.a.healthcheck.fails", 12),
                ("servers.a.healthcheck.passes", 13),
                ("servers.b.discovery.consul_service_datacenter", 18),
            ]
        );
        assert_eq!(config.servers["b"].discovery.datacenter(), Some("dc1"));
        let bad = parse_config("[logging]\nlevel = \"loud\"\n", Format::Toml).unwrap_err();
        assert_eq!((bad.key.as_deref(), bad.position), (Some("logging.level"), Some((2, 1))));
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
