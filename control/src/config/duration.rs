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

/// The longest duration Go's `time.Duration` holds (about 292 years); longer ones are refused,
/// as `time.ParseDuration` refuses them, rather than wrapping around to a short one.
pub const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Parses `[+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+` or a bare `0` as Go's
/// `time.ParseDuration` does: whole units in exact integer arithmetic, fractions as Go computes
/// them, and an error instead of any overflow. Negative durations are refused.
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
    let too_large =
        || format!("duration {text:?} is too large (at most {}, about 292 years)", GoDuration(MAX));
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (whole, after) = split_digits(rest);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => split_digits(after),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(format!("invalid duration {text:?}"));
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let nanos_per_unit: u64 = match &after[..unit_len] {
            "" => return Err(format!("missing unit in duration {text:?} (use ms, s, m or h)")),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(format!("unknown unit {other:?} in duration {text:?} (use ms, s, m or h)")),
        };
        rest = &after[unit_len..];
        let part = whole_nanos(whole, nanos_per_unit)
            .and_then(|nanos| nanos.checked_add(fraction_nanos(fraction, nanos_per_unit)))
            .ok_or_else(too_large)?;
        total = total.checked_add(part).filter(|&t| t <= MAX.as_nanos() as u64).ok_or_else(too_large)?;
    }
    Ok(Duration::from_nanos(total))
}

/// Splits off the leading ASCII digits.
fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// `digits` units in nanoseconds; `None` past `MAX`.
fn whole_nanos(digits: &str, nanos_per_unit: u64) -> Option<u64> {
    let limit = MAX.as_nanos() as u64;
    let mut value: u64 = 0;
    for digit in digits.bytes() {
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0')).filter(|&v| v <= limit)?;
    }
    value.checked_mul(nanos_per_unit).filter(|&v| v <= limit)
}

/// `0.digits` units in nanoseconds, computed as Go computes it (in floating point, truncated;
/// digits past 63 bits of precision ignored), so that every fraction means what it means to
/// gobetween. The result is below `nanos_per_unit`.
fn fraction_nanos(digits: &str, nanos_per_unit: u64) -> u64 {
    let mut value: u64 = 0;
    let mut scale = 1.0_f64;
    for digit in digits.bytes() {
        match value.checked_mul(10).map(|v| v + u64::from(digit - b'0')) {
            Some(next) if value <= i64::MAX as u64 / 10 && next <= 1 << 63 => {
                value = next;
                scale *= 10.0;
            }
            _ => break,
        }
    }
    (value as f64 * (nanos_per_unit as f64 / scale)) as u64
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

/// A duration as the configuration wrote it: parsed once, and shown as written (`"90s"` stays
/// `"90s"`) by the API and `/dump`, as gobetween shows it. Reads as the `GoDuration` it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenDuration {
    pub text: String,
    pub value: GoDuration,
}

impl WrittenDuration {
    pub fn parse(text: &str) -> Result<WrittenDuration, String> {
        Ok(WrittenDuration { text: text.to_string(), value: GoDuration(parse(text)?) })
    }
}

impl From<GoDuration> for WrittenDuration {
    fn from(value: GoDuration) -> Self {
        WrittenDuration { text: value.to_string(), value }
    }
}

impl std::ops::Deref for WrittenDuration {
    type Target = GoDuration;

    fn deref(&self) -> &GoDuration {
        &self.value
    }
}

impl Serialize for WrittenDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for WrittenDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        WrittenDuration::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
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
    fn follows_go_arithmetic() {
        for (text, nanos) in [
            // Exact beyond f64's 53 bits of mantissa.
            ("9007199254740993ns", 9_007_199_254_740_993),
            // Fractions truncated, as Go truncates them.
            ("1.9ns", 1),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("1.000000000000000000000001h", 3_600_000_000_000),
            // What Go's float arithmetic makes of a fraction that does not end.
            ("0.333333333333333333333333333333h", 1_200_000_000_000),
            ("1h1m1s1ms1us1µs1μs1ns", 3_661_001_003_001),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
        assert!(parse(".s").is_err());
        assert!(parse("1.2.3s").is_err());
    }

    #[test]
    fn overflow_is_an_error() {
        // Go's limit, exactly: `time.ParseDuration` accepts the first and refuses the rest.
        assert_eq!(parse("2562047h47m16.854775807s").unwrap(), MAX);
        assert_eq!(parse("9223372036854775807ns").unwrap(), MAX);
        for text in [
            "2562047h47m16.854775808s",
            "9223372036854775808ns",
            "2562048h",
            "99999999999999999999h",
            "18446744073709551616ns",
            // A part past u128 once wrapped the sum around to 1ns (and 0 means "no limit").
            "340282366920938463463374607431768211455ns1ns",
            "340282366920938463463374607431768211455ns340282366920938463463374607431768211457ns",
            "1000000000000000000000000000000000000000000000000000000000000000000000000000000h",
            "2562047h2562047h",
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains("too large"), "{text}: {e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0", "500ms", "5s", "1m30s", "2h", "1h1m1s", "2562047h47m16s854ms775us807ns"] {
            let d = GoDuration(parse(text).unwrap());
            assert_eq!(d.to_string(), text);
        }
    }
}
