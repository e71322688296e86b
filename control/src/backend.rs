//! A backend as discovery reports it: `host:port [weight=N] [priority=N] [max_connections=N] [sni=NAME]`.
//! This is the one line format shared by `static_list`, plaintext discovery and exec discovery.

use crate::text::is_unsafe;
use std::fmt;
use std::str::FromStr;

/// What discovery knows about a backend. Identity is `(host, port)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub priority: i32,
    /// 0 means unlimited.
    pub max_connections: u32,
    pub sni: Option<String>,
}

impl BackendSpec {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        BackendSpec { host: host.into(), port, weight: 1, priority: 1, max_connections: 0, sni: None }
    }

    /// What identifies a backend across discovery rounds.
    pub fn key(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// `host:port`, bracketing IPv6 literals.
    pub fn address(&self) -> String {
        host_port(&self.host, self.port)
    }
}

/// `host:port` as a URL, request line or dial string writes it: an IPv6 literal in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether a host from a source's answer can name a backend: not empty, no whitespace and no
/// character that would forge log lines.
pub fn is_host_name(host: &str) -> bool {
    !host.is_empty() && !host.contains(is_unsafe) && !host.contains(char::is_whitespace)
}

/// Splits `host:port` or `[v6]:port`.
pub fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| format!("unclosed '[' in address {text:?}"))?;
        let port = after.strip_prefix(':').ok_or_else(|| format!("missing port in address {text:?}"))?;
        (host, port)
    } else {
        text.rsplit_once(':')
            .ok_or_else(|| format!("missing port in address {text:?} (expected host:port)"))?
    };
    let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?} in address {text:?}"))?;
    Ok((host.to_string(), port))
}

/// The separators RE2's `\s` matches: what gobetween's backend pattern allows between parts.
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// The options of a backend line, in the only order gobetween's pattern accepts them.
const OPTIONS: [&str; 4] = ["weight", "priority", "max_connections", "sni"];

impl BackendSpec {
    /// Reads a backend line exactly as gobetween does: its pattern
    /// `^(?P<host>\S+):(?P<port>\d+)(\sweight=(?P<weight>\d+))?(\spriority=(?P<priority>\d+))?(\smax_connections=(?P<max_connections>\d+))?(\ssni=(?P<sni>[^\s]+))?$`
    /// on the trimmed line. So options come in that order, each after exactly one space, numbers
    /// are digits only; `weight` defaults to 1 and may be 0, `priority` defaults to 1. A number
    /// too long for Go's `int` falls back to its default as in gobetween, and one too large for
    /// betwixt's counters is capped; either comes back as a note.
    pub fn read_line(line: &str) -> Result<(BackendSpec, Option<String>), String> {
        let line = line.trim();
        let mut parts = line.split(is_separator);
        let address = parts.next().unwrap_or_default();
        let (host, port) = address
            .rsplit_once(':')
            .filter(|(host, port)| !host.is_empty() && !port.is_empty())
            .ok_or_else(|| format!("expected host:port at the start of backend {line:?}"))?;
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {port:?} is not a number in backend {line:?}"));
        }
        let port: u16 = port.parse().map_err(|_| format!("port {port} out of range in backend {line:?}"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        // `[]:443` (found by fuzzing) would be a backend with no host at all; `[\u{a0}]:443`
        // (found by fuzzing too) one whose host, printed without brackets, loses its blank
        // ends when the line is read again (Unicode blanks, which trimming takes off).
        if host.is_empty() {
            return Err(format!("expected host:port at the start of backend {line:?}"));
        }
        if host.trim() != host {
            return Err(format!("blank at the start or end of the host of backend {line:?}"));
        }
        // No host name holds one, and the host is written into logs and metric labels.
        if host.contains(is_unsafe) {
            return Err(format!("control character in the host of backend {line:?}"));
        }
        // Brackets enclose an IPv6 address and are no part of any host. Left in (`[[0]]:442`,
        // found by fuzzing, read as host `[0]`), the host printed back as `[0]:442` would read
        // as another backend, `0`; and no such host can be dialled.
        if host.contains(['[', ']']) {
            return Err(format!("brackets only enclose a whole IPv6 address, in backend {line:?}"));
        }
        let mut spec = BackendSpec::new(host, port);
        let mut notes = Vec::new();
        let mut next = 0;
        for option in parts {
            if option.is_empty() {
                return Err(format!("more than one space between options in backend {line:?}"));
            }
            let known = option.split_once('=').and_then(|(key, value)| {
                let position = OPTIONS.iter().position(|k| *k == key)?;
                Some((key, value, position))
            });
            let Some((key, value, position)) = known else {
                return Err(format!(
                    "{option:?} is not an option in backend {line:?} (weight=N, priority=N, max_connections=N, sni=NAME)"
                ));
            };
            if position < next {
                return Err(format!(
                    "{key} out of order in backend {line:?} (options go in the order weight, priority, max_connections, sni)"
                ));
            }
            next = position + 1;
            if value.is_empty() || (key != "sni" && !value.bytes().all(|b| b.is_ascii_digit())) {
                return Err(format!("invalid {key} {value:?} in backend {line:?}"));
            }
            let mut number = |default: u64, cap: u64| -> u64 {
                match value.parse::<i64>() {
                    Err(_) => {
                        notes.push(format!("{key}={value} is too large, read as {default}"));
                        default
                    }
                    Ok(n) if n as u64 > cap => {
                        notes.push(format!("{key}={value} capped at {cap}"));
                        cap
                    }
                    Ok(n) => n as u64,
                }
            };
            match key {
                "weight" => spec.weight = number(1, u32::MAX.into()) as u32,
                "priority" => spec.priority = number(1, i32::MAX as u64) as i32,
                "max_connections" => spec.max_connections = number(0, u32::MAX.into()) as u32,
                _ if value.contains(is_unsafe) => {
                    return Err(format!("control character in the sni of backend {line:?}"))
                }
                _ => spec.sni = Some(value.to_string()),
            }
        }
        let note = (!notes.is_empty()).then(|| format!("backend {line:?}: {}", notes.join("; ")));
        Ok((spec, note))
    }
}

impl FromStr for BackendSpec {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        BackendSpec::read_line(line).map(|(spec, _)| spec)
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} weight={}", self.address(), self.weight)?;
        write!(f, " priority={}", self.priority)?;
        if self.max_connections > 0 {
            write!(f, " max_connections={}", self.max_connections)?;
        }
        if let Some(sni) = &self.sni {
            write!(f, " sni={sni}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_with_blank_ends_is_refused() {
        for line in ["[\u{a0}]:443", "[\u{a0}x]:443", "[x\u{2003}]:443"] {
            assert!(BackendSpec::read_line(line).is_err(), "{line:?}");
        }
        // Blanks inside a name print and read back unchanged.
        let (spec, _) = BackendSpec::read_line("a\u{a0}b:443").unwrap();
        assert_eq!(BackendSpec::read_line(&spec.to_string()).unwrap().0, spec);
    }

    #[test]
    fn brackets_inside_the_host_are_refused() {
        for line in ["[[0]]:442", "[0]]:442", "[[0]:442", "a[0]:442", "[::1]]:80"] {
            assert!(BackendSpec::read_line(line).is_err(), "{line}");
        }
        // Brackets around a name or IPv4 address are dropped, and the line prints and reads back
        // as the same backend.
        let (spec, _) = BackendSpec::read_line("[0]:442").unwrap();
        assert_eq!(spec.host, "0");
        assert_eq!(BackendSpec::read_line(&spec.to_string()).unwrap().0, spec);
    }

    #[test]
    fn empty_brackets_are_no_host() {
        assert!(BackendSpec::read_line("[]:443").is_err());
        assert_eq!(BackendSpec::read_line("[::1]:443").unwrap().0.host, "::1");
    }

    #[test]
    fn parses_full_line() {
        let b: BackendSpec =
            "localhost:8002 weight=100 priority=0 max_connections=10 sni=a.b".parse().unwrap();
        assert_eq!(b.host, "localhost");
        assert_eq!(b.port, 8002);
        assert_eq!(b.weight, 100);
        assert_eq!(b.priority, 0);
        assert_eq!(b.max_connections, 10);
        assert_eq!(b.sni.as_deref(), Some("a.b"));
    }

    #[test]
    fn defaults_and_ipv6() {
        let b: BackendSpec = "[::1]:80".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port, b.weight), ("::1", 80, 1));
        assert_eq!(b.address(), "[::1]:80");
    }

    #[test]
    fn rejects_what_gobetweens_pattern_rejects() {
        for line in [
            "localhost",
            "localhost:http",
            ":80",
            "localhost:",
            "localhost:80 weight=x",
            "localhost:80 weight=-1",
            "localhost:80 weight=+1",
            "localhost:80 weight=",
            "localhost:80 color=red",
            "localhost:80 weight",
            "localhost:80  weight=1",
            "localhost:80 priority=1 weight=2",
            "localhost:80 sni=a weight=2",
            "localhost:80 weight=1 weight=2",
            "localhost:80 sni=",
            "localhost:99999",
            "evil\u{1b}[2J:80",
            "[::1\u{7f}]:80",
            "localhost:80 sni=a\u{202e}b",
        ] {
            assert!(line.parse::<BackendSpec>().is_err(), "{line:?} accepted");
        }
    }

    #[test]
    fn reads_what_gobetweens_pattern_reads() {
        let b: BackendSpec = "  a:b:80\tweight=0 max_connections=3 sni=x=y\n".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port, b.weight, b.priority), ("a:b", 80, 0, 1));
        assert_eq!((b.max_connections, b.sni.as_deref()), (3, Some("x=y")));
        let b: BackendSpec = "::1:080 priority=007".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port, b.priority), ("::1", 80, 7));
        let (b, note) =
            BackendSpec::read_line("h:1 weight=99999999999999999999 priority=9999999999").unwrap();
        assert_eq!((b.weight, b.priority), (1, i32::MAX));
        assert!(note.unwrap().contains("weight=99999999999999999999 is too large, read as 1"));
        assert_eq!(BackendSpec::read_line("h:1 weight=5").unwrap().1, None);
    }

    #[test]
    fn display_round_trips() {
        let b: BackendSpec = "10.0.0.1:81 weight=3 priority=2 max_connections=5 sni=x".parse().unwrap();
        assert_eq!(b.to_string().parse::<BackendSpec>().unwrap(), b);
    }
}
