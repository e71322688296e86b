//! `[logging]`: level, output (stdout, stderr or a file) and format (text or json lines).

use crate::config::{LogFormat, LogLevel, Logging};
use crate::text::escape_for_log;
use std::io::Write;

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
    }
}

/// Installs the global logger. `RUST_LOG`, when set, overrides the configured level. Level and
/// format are read as gobetween reads them (`config::loose`); the loader has already warned
/// about loose ones and refused an unknown level.
pub fn init(logging: Option<&Logging>) -> Result<(), String> {
    let default = Logging::default();
    let logging = logging.unwrap_or(&default);
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level_filter(logging.level()?.0));
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    match logging.output.as_deref().unwrap_or("") {
        "" | "stdout" => builder.target(env_logger::Target::Stdout),
        "stderr" => builder.target(env_logger::Target::Stderr),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {path}: {e}"))?;
            builder.target(env_logger::Target::Pipe(Box::new(file)))
        }
    };
    if logging.format().0 == LogFormat::Json {
        // Keys in the order gobetween's logrus writes them (sorted), and its level names.
        builder.format(|out, record| {
            let level = match record.level() {
                log::Level::Warn => "warning".to_string(),
                other => other.as_str().to_lowercase(),
            };
            let text = |value: &str| sonic_rs::to_string(value).unwrap_or_else(|_| "\"\"".to_string());
            writeln!(
                out,
                "{{\"level\":{},\"msg\":{},\"target\":{},\"time\":{}}}",
                text(&level),
                text(&record.args().to_string()),
                text(record.target()),
                text(&humantime_now())
            )
        });
    } else {
        // JSON lines escape by themselves; a text line must escape what the message carries
        // (a server name, a backend host, a peer's reply), or a newline in it forges a line.
        builder.format(|out, record| {
            let message = match record.args().as_str() {
                Some(fixed) => std::borrow::Cow::Borrowed(fixed),
                None => std::borrow::Cow::Owned(record.args().to_string()),
            };
            writeln!(
                out,
                "{} [{:<5}] ({}): {}",
                humantime_now(),
                record.level(),
                record.target(),
                escape_for_log(&message)
            )
        });
    }
    builder.try_init().map_err(|e| e.to_string())
}

/// RFC 3339 UTC timestamp with milliseconds, without pulling in a date crate.
pub fn humantime_now() -> String {
    rfc3339(std::time::SystemTime::now())
}

pub fn rfc3339(time: std::time::SystemTime) -> String {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)),
            "2026-11-18T11:06:40.123Z"
        );
    }
}
