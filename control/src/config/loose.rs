//! Values gobetween reads loosely, read here with the same meaning. The model keeps them as
//! written (so the API can show them as written); each reader below says what a value means
//! and, when it was not written the plain way, returns a note saying how it was read. The notes
//! become warnings (errors in strict mode) in `lint` and `resolve`.

use super::duration;
use super::model::Logging;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A value, and a note when it was read loosely.
pub type Read<T> = (T, Option<String>);

/// gobetween (logrus): empty is `info`; otherwise any case of `trace`, `debug`, `info`, `warn`,
/// `warning`, `error`, `fatal`, `panic`; anything else stops it.
pub fn log_level(text: &str) -> Result<Read<LogLevel>, String> {
    if text.is_empty() {
        return Ok((LogLevel::Info, None));
    }
    let lower = text.to_lowercase();
    let (level, name) = match lower.as_str() {
        "trace" => (LogLevel::Trace, "trace"),
        "debug" => (LogLevel::Debug, "debug"),
        "info" => (LogLevel::Info, "info"),
        "warn" | "warning" => (LogLevel::Warn, "warn"),
        "error" => (LogLevel::Error, "error"),
        // Only messages that end the process pass gobetween's `fatal` and `panic`. betwixt has no
        // such level: its process-ending errors go to stderr at any level, so `error` is nearest.
        "fatal" | "panic" => {
            return Ok((
                LogLevel::Error,
                Some(format!("level {text:?} read as \"error\", betwixt's quietest level")),
            ))
        }
        _ => return Err(format!("unknown level {text:?} (use trace, debug, info, warn or error)")),
    };
    let note = (text != name).then(|| format!("level {text:?} read as {name:?}"));
    Ok((level, note))
}

/// gobetween: exactly `json` is JSON; anything else, in any case, is its text format.
pub fn log_format(text: &str) -> Read<LogFormat> {
    match text {
        "json" => (LogFormat::Json, None),
        "" | "text" => (LogFormat::Text, None),
        other => {
            (LogFormat::Text, Some(format!("format {other:?} read as \"text\" (only \"json\" is JSON)")))
        }
    }
}

impl Logging {
    pub fn level(&self) -> Result<Read<LogLevel>, String> {
        log_level(self.level.as_deref().unwrap_or(""))
    }

    pub fn format(&self) -> Read<LogFormat> {
        log_format(self.format.as_deref().unwrap_or(""))
    }
}

/// A healthcheck's `fails` or `passes`: gobetween reads 0 and below as 1.
pub fn at_least_one(value: i64) -> Read<u32> {
    if value <= 0 {
        return (1, Some(format!("{value} read as 1")));
    }
    match u32::try_from(value) {
        Ok(n) => (n, None),
        Err(_) => (u32::MAX, Some(format!("{value} read as {}", u32::MAX))),
    }
}

/// A connection option's duration (`client_idle_timeout`, `backend_idle_timeout`,
/// `backend_connection_timeout`), kept as written. gobetween reads it only when a connection
/// uses it, and reads an empty or unparsable one, or one of zero or less, as 0: no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LooseDuration(pub String);

impl LooseDuration {
    pub fn new(text: impl Into<String>) -> Self {
        LooseDuration(text.into())
    }

    /// The limit it sets; `None` is no limit.
    pub fn limit(&self) -> Read<Option<Duration>> {
        let text = self.0.as_str();
        let no_limit = |why: &str| (None, Some(format!("{text:?} {why}: read as \"0\", no limit")));
        if text.is_empty() {
            return no_limit("is empty");
        }
        // Go's time.ParseDuration takes no surrounding spaces.
        if text.trim() != text {
            return no_limit("has spaces around it");
        }
        if let Some(magnitude) = text.strip_prefix('-') {
            if duration::parse(magnitude).is_ok() {
                return no_limit("is negative");
            }
        }
        match duration::parse(text) {
            Ok(d) if d.is_zero() => (None, None),
            Ok(d) => (Some(d), None),
            Err(e) => no_limit(&format!("is not a duration ({e})")),
        }
    }
}

/// Deserializes a map that JSON may give as `null`, which Go decodes as an empty (nil) map:
/// `"servers": null` is a configuration without servers, as gobetween starts it.
pub fn null_is_empty<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(de: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// Deserializes an optional duration where gobetween reads an empty string as the key's default:
/// `""` is the same as leaving the key out.
pub fn empty_is_unset<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<duration::WrittenDuration>, D::Error> {
    match Option::<String>::deserialize(de)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => duration::WrittenDuration::parse(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_as_gobetween_reads_them() {
        assert_eq!(log_level("").unwrap(), (LogLevel::Info, None));
        assert_eq!(log_level("debug").unwrap(), (LogLevel::Debug, None));
        assert_eq!(log_level("INFO").unwrap().0, LogLevel::Info);
        assert!(log_level("INFO").unwrap().1.is_some());
        assert_eq!(log_level("warning").unwrap().0, LogLevel::Warn);
        assert!(log_level("Warning").unwrap().1.unwrap().contains("\"warn\""));
        assert_eq!(log_level("fatal").unwrap().0, LogLevel::Error);
        assert_eq!(log_level("PANIC").unwrap().0, LogLevel::Error);
        assert!(log_level("fatal").unwrap().1.is_some());
        assert!(log_level("verbose").is_err());
        assert!(log_level(" info").is_err(), "gobetween does not trim");
    }

    #[test]
    fn formats_as_gobetween_reads_them() {
        assert_eq!(log_format("json"), (LogFormat::Json, None));
        assert_eq!(log_format(""), (LogFormat::Text, None));
        assert_eq!(log_format("text"), (LogFormat::Text, None));
        let (format, note) = log_format("JSON");
        assert_eq!(format, LogFormat::Text);
        assert!(note.is_some());
        assert_eq!(log_format("xml").0, LogFormat::Text);
    }

    #[test]
    fn counts_below_one_are_one() {
        assert_eq!(at_least_one(3), (3, None));
        assert_eq!(at_least_one(1), (1, None));
        assert_eq!(at_least_one(0).0, 1);
        assert_eq!(at_least_one(-5).0, 1);
        assert!(at_least_one(-5).1.unwrap().contains("-5"));
        assert_eq!(at_least_one(i64::MIN).0, 1);
        assert_eq!(at_least_one(i64::MAX).0, u32::MAX);
    }

    #[test]
    fn loose_durations() {
        let limit = |text: &str| LooseDuration::new(text).limit();
        assert_eq!(limit("5s"), (Some(Duration::from_secs(5)), None));
        assert_eq!(limit("1m30s"), (Some(Duration::from_secs(90)), None));
        assert_eq!(limit("0"), (None, None));
        assert_eq!(limit("0s"), (None, None));
        for loose in ["", "5", "10 minutes", "-1s", " 5s", "5x"] {
            let (value, note) = limit(loose);
            assert_eq!(value, None, "{loose:?}");
            assert!(note.is_some_and(|n| n.contains("no limit")), "{loose:?}");
        }
    }
}
