//! `kind = "plaintext"`: GETs `plaintext_endpoint` and reads its body line by line (empty lines
//! left out). Without `plaintext_regex_pattern` a line is a backend line, read exactly as a
//! static list's; with it, the pattern's named groups `host`, `port`, `weight`, `priority`,
//! `max_connections` and `sni` give the backend, as in gobetween. A line the pattern does not
//! match, or whose host or port do not read, is skipped with a warning.

use super::http::{Endpoint, Proxies};
use super::lines::{collect, document_lines};
use super::{Found, SectionError, Source};
use crate::backend::BackendSpec;
use crate::config::Discovery;
use crate::text::is_unsafe;
use regex::Regex;
use std::time::Duration;

/// Larger patterns are refused: a pattern is compiled once, but its size bounds every match.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

pub struct Plaintext {
    endpoint: Endpoint,
    /// `None`: gobetween's default pattern, which is the backend line format.
    pattern: Option<Regex>,
}

impl Plaintext {
    pub fn from_section(discovery: &Discovery) -> Result<Plaintext, SectionError> {
        // Go's http.Get, as gobetween fetches: proxies from the environment.
        let endpoint =
            Endpoint::parse("plaintext_endpoint", discovery.plaintext_endpoint.as_deref().unwrap_or(""))?
                .with_proxies(Proxies::from_env());
        let pattern = match discovery.plaintext_regex_pattern.as_deref() {
            None | Some("") => None,
            Some(text) => {
                Some(regex::RegexBuilder::new(text).size_limit(PATTERN_SIZE_LIMIT).build().map_err(|e| {
                    SectionError::new("plaintext_regex_pattern", format!("not a valid pattern: {e}"))
                })?)
            }
        };
        if let Some(pattern) = &pattern {
            for group in ["host", "port"] {
                if !pattern.capture_names().flatten().any(|name| name == group) {
                    return Err(SectionError::new(
                        "plaintext_regex_pattern",
                        format!("has no named group (?P<{group}>...): every backend needs its {group}"),
                    ));
                }
            }
        }
        Ok(Plaintext { endpoint, pattern })
    }

    pub(crate) fn read(&self, body: &str) -> Found {
        let (backends, notes) = match &self.pattern {
            None => collect(document_lines(body), &BackendSpec::read_line),
            Some(pattern) => collect(document_lines(body), &|line| read_with(pattern, line)),
        };
        Found { backends, notes: notes.into_iter().map(|(_, note)| note).collect() }
    }
}

impl Source for Plaintext {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    const RETRY_WAIT: Duration = Duration::from_secs(2);

    async fn fetch(&self) -> Result<Found, String> {
        let body = self.endpoint.get().await?;
        Ok(self.read(&String::from_utf8_lossy(&body)))
    }
}

/// One line through a custom pattern, on the trimmed line as gobetween matches it. Numbers read
/// as Go's `strconv.Atoi`; one that does not read takes gobetween's default (weight 1,
/// priority 1, max_connections 0 = no limit), one out of betwixt's range is capped.
fn read_with(pattern: &Regex, line: &str) -> Result<(BackendSpec, Option<String>), String> {
    let line = line.trim();
    let captures = pattern.captures(line).ok_or_else(|| format!("pattern does not match {line:?}"))?;
    let group = |name: &str| captures.name(name).map_or("", |m| m.as_str());
    let host = group("host");
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.contains(is_unsafe) || host.contains(char::is_whitespace) {
        return Err(format!("no usable host in {line:?}"));
    }
    let port = group("port");
    let port: u16 = port.parse().map_err(|_| format!("port {port:?} is not a port number in {line:?}"))?;
    let mut spec = BackendSpec::new(host, port);
    let number = |name: &str, default: i64, low: i64, high: i64| -> i64 {
        group(name).parse::<i64>().map_or(default, |n| n.clamp(low, high))
    };
    spec.weight = number("weight", 1, 0, u32::MAX.into()) as u32;
    spec.priority = number("priority", 1, i32::MIN.into(), i32::MAX.into()) as i32;
    spec.max_connections = number("max_connections", 0, 0, u32::MAX.into()) as u32;
    let sni = group("sni");
    if sni.contains(is_unsafe) {
        return Err(format!("control character in the sni of {line:?}"));
    }
    spec.sni = (!sni.is_empty()).then(|| sni.to_string());
    Ok((spec, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plaintext(pattern: Option<&str>) -> Result<Plaintext, SectionError> {
        Plaintext::from_section(&Discovery {
            plaintext_endpoint: Some("http://127.0.0.1:1/list".into()),
            plaintext_regex_pattern: pattern.map(String::from),
            ..Discovery::default()
        })
    }

    #[test]
    fn default_pattern_is_the_backend_line() {
        let found = plaintext(None)
            .unwrap()
            .read("a:1 weight=2 priority=3 max_connections=4 sni=x\n\nb:2 priority=1 weight=2\n");
        assert_eq!(found.backends.len(), 1);
        let a = &found.backends[0];
        assert_eq!((a.weight, a.priority, a.max_connections, a.sni.as_deref()), (2, 3, 4, Some("x")));
        assert_eq!(found.notes.len(), 1, "{:?}", found.notes);
        assert!(plaintext(Some("")).unwrap().pattern.is_none());
    }

    #[test]
    fn named_groups_give_the_backend() {
        let p = plaintext(Some(r"^(?P<host>\S+) (?P<port>\d+)(?: w(?P<weight>-?\d+))?(?: s=(?P<sni>\S+))?$"))
            .unwrap();
        let found = p.read(
            "  10.0.0.1 80 w5 s=web  \n10.0.0.2 81\n10.0.0.3 81 w-4\n10.0.0.4 99999\nnonsense\n[::1] 82\n",
        );
        let got: Vec<(String, u16, u32, Option<&str>)> =
            found.backends.iter().map(|b| (b.host.clone(), b.port, b.weight, b.sni.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1".into(), 80, 5, Some("web")),
                ("10.0.0.2".into(), 81, 1, None),
                ("10.0.0.3".into(), 81, 0, None),
                ("::1".into(), 82, 1, None),
            ]
        );
        assert_eq!(found.notes.len(), 2, "{:?}", found.notes);
        assert!(found.backends.iter().all(|b| b.priority == 1 && b.max_connections == 0));
    }

    #[test]
    fn patterns_are_checked_when_read() {
        assert_eq!(plaintext(Some("(")).err().unwrap().field, "plaintext_regex_pattern");
        assert!(plaintext(Some(r"(?P<host>\S+)")).is_err(), "no port group");
        assert!(plaintext(Some(r"(?P<host>\S+):(?P<port>\d+)")).is_ok());
    }
}
