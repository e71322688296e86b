//! Times and durations written as Go writes them, for `GET /`: `time.Duration.String()`
//! (`"1h2m3.5s"`, `"123.456ms"`) and `time.Time`'s JSON form (RFC 3339 with up to nine
//! fraction digits, in the local time zone).

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Go's `time.Duration.String()`: `"0s"`; below a second one unit with a fraction
/// (`"800ns"`, `"12.5µs"`, `"123.456ms"`); from a second on hours, minutes and seconds with the
/// seconds' fraction (`"45.123456789s"`, `"3m0.5s"`, `"49h0m1s"`).
pub fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 6));
    }
    let seconds = d.as_secs();
    let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if seconds >= 60 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(
        out,
        "{}s",
        decimal(u128::from(seconds % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()), 9)
    );
    out
}

/// `value / 10^digits` with the fraction's trailing zeros (and a bare point) left out.
fn decimal(value: u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `time` as Go's `time.Time` marshals to JSON in the local zone: RFC 3339 with nanoseconds,
/// trailing zeros trimmed, and the zone as `Z` or `±hh:mm`
/// (`"2025-04-27T20:33:25.123456789+03:00"`).
pub fn rfc3339_local(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs() as libc::time_t;
    // SAFETY: `localtime_r` is thread-safe and writes only into `tm`, a plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&seconds, &mut tm) }.is_null() {
        return crate::logging::rfc3339(time);
    }
    rfc3339(&tm, since.subsec_nanos())
}

/// The broken-down time `tm` (with its zone offset) and `nanos` in Go's RFC 3339 layout.
fn rfc3339(tm: &libc::tm, nanos: u32) -> String {
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    if nanos != 0 {
        let _ = write!(out, ".{}", format!("{nanos:09}").trim_end_matches('0'));
    }
    let offset = tm.tm_gmtoff;
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.abs() / 60;
        let _ = write!(out, "{sign}{:02}:{:02}", minutes / 60, minutes % 60);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_writes_them() {
        let ns = Duration::from_nanos;
        for (d, text) in [
            (ns(0), "0s"),
            (ns(1), "1ns"),
            (ns(800), "800ns"),
            (ns(12_500), "12.5µs"),
            (ns(1_000), "1µs"),
            (ns(123_456_000), "123.456ms"),
            (ns(999_999_999), "999.999999ms"),
            (Duration::from_secs(1), "1s"),
            (ns(45_123_456_789), "45.123456789s"),
            (ns(180_500_000_000), "3m0.5s"),
            (Duration::from_secs(60), "1m0s"),
            (ns(3_723_456_789_012), "1h2m3.456789012s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(49 * 3600 + 1), "49h0m1s"),
        ] {
            assert_eq!(duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn times_in_rfc3339_with_nanoseconds_and_zone() {
        // SAFETY: an all-zero `tm` is valid; the fields that matter are set below.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec) = (125, 3, 27, 20, 33, 5);
        tm.tm_gmtoff = 3 * 3600;
        assert_eq!(rfc3339(&tm, 123_456_789), "2025-04-27T20:33:05.123456789+03:00");
        assert_eq!(rfc3339(&tm, 120_000_000), "2025-04-27T20:33:05.12+03:00");
        tm.tm_gmtoff = -(9 * 3600 + 30 * 60);
        assert_eq!(rfc3339(&tm, 0), "2025-04-27T20:33:05-09:30");
        tm.tm_gmtoff = 0;
        assert_eq!(rfc3339(&tm, 7), "2025-04-27T20:33:05.000000007Z");
    }
}
