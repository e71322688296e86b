//! A backend as discovery reports it: `host:port [weight=N] [priority=N] [max_connections=N] [sni=NAME]`.
//! This is the one line format shared by `static_list`, plaintext discovery and exec discovery.

use crate::text::is_unsafe;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
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

impl FromStr for BackendSpec {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let mut parts = line.split_whitespace();
        let address = parts.next().ok_or("empty backend line")?;
        let (host, port) = split_host_port(address)?;
        if host.is_empty() {
            return Err(format!("missing host in backend {line:?}"));
        }
        // No host name holds one, and the host is written into logs and metric labels.
        if host.contains(is_unsafe) {
            return Err(format!("control character in the host of backend {line:?}"));
        }
        let mut spec = BackendSpec::new(host, port);
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {option:?} in backend {line:?}"))?;
            let bad = |what: &str| format!("invalid {key} {value:?} in backend {line:?}: {what}");
            match key {
                "weight" => spec.weight = value.parse().map_err(|_| bad("not a whole number"))?,
                "priority" => spec.priority = value.parse().map_err(|_| bad("not a number"))?,
                "max_connections" => {
                    spec.max_connections = value.parse().map_err(|_| bad("not a whole number"))?
                }
                "sni" if value.contains(is_unsafe) => return Err(bad("control character")),
                "sni" => spec.sni = Some(value.to_string()),
                _ => {
                    return Err(format!(
                        "unknown option {key:?} in backend {line:?} (known: weight, priority, max_connections, sni)"
                    ))
                }
            }
        }
        Ok(spec)
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

impl Serialize for BackendSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackendSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rejects_bad_lines() {
        assert!("localhost".parse::<BackendSpec>().is_err());
        assert!("localhost:http".parse::<BackendSpec>().is_err());
        assert!("localhost:80 weight=x".parse::<BackendSpec>().is_err());
        assert!("localhost:80 color=red".parse::<BackendSpec>().is_err());
        assert!("evil\u{1b}[2J:80".parse::<BackendSpec>().unwrap_err().contains("control character"));
        assert!("[::1\u{7f}]:80".parse::<BackendSpec>().is_err());
        assert!("localhost:80 sni=a\u{202e}b".parse::<BackendSpec>().is_err());
    }

    #[test]
    fn weight_zero_is_allowed() {
        assert_eq!("localhost:80 weight=0".parse::<BackendSpec>().unwrap().weight, 0);
    }

    #[test]
    fn display_round_trips() {
        let b: BackendSpec = "10.0.0.1:81 weight=3 priority=2 max_connections=5 sni=x".parse().unwrap();
        assert_eq!(b.to_string().parse::<BackendSpec>().unwrap(), b);
    }
}
