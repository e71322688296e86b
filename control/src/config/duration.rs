//! Go-style durations as gobetween writes them: `"0"`, `"500ms"`, `"5s"`, `"1m30s"`, `"1h"`.
//! `"0"` means "no limit" wherever a timeout is expected.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration that reads and writes the Go `time.ParseDuration` notation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(Duration::ZERO);

    /// `None` for zero, which gobetween treats as "no limit".
    pub fn as_limit(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

/// Parses `[-]?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+` or a bare `0`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {text:?}"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?} (use ms, s, m or h)"))?;
        if num_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let number: f64 =
            rest[..num_len].parse().map_err(|_| format!("invalid number in duration {text:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("unknown unit {other:?} in duration {text:?} (use ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        total_nanos += (number * nanos_per_unit).round() as u128;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| format!("duration {text:?} too large"))?;
    Ok(Duration::from_nanos(nanos))
}

impl fmt::Display for GoDuration {
    /// Writes the shortest exact form, e.g. `1m30s`, `500ms`, `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0");
        }
        const UNITS: [(&str, u128); 6] = [
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ];
        for (name, size) in UNITS {
            if nanos >= size {
                write!(f, "{}{}", nanos / size, name)?;
                nanos %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map(GoDuration).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gobetween_forms() {
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("5").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("s").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0", "500ms", "5s", "1m30s", "2h", "1h1m1s"] {
            let d = GoDuration(parse(text).unwrap());
            assert_eq!(d.to_string(), text);
        }
    }
}
