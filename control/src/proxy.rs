//! PROXY protocol settings: the header betwixt sends to backends (`[proxy_protocol] version`,
//! gobetween's key) and the header it reads from clients (`[accept_proxy_protocol]`, betwixt's
//! addition for running behind another L4 balancer). The wire format is the data plane's
//! (`src/proxy_protocol.rs`).

use crate::access::Network;
use crate::config::{AcceptProxyProtocol, GoDuration, ProxyProtocol};
use std::net::IpAddr;
use std::time::Duration;

/// Time a client has to send its whole header when `read_timeout` is left out.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Which header versions a server reads from its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    Only(Version),
    Any,
}

impl Accepted {
    pub fn admits(self, version: Version) -> bool {
        self == Accepted::Any || self == Accepted::Only(version)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptSettings {
    pub versions: Accepted,
    /// Never zero: a client cannot hold a connection open without sending its header.
    pub read_timeout: Duration,
    /// Peers whose header names the client; `None`: every peer's (`trusted` left out).
    pub trusted: Option<Vec<Network>>,
}

/// A bad value in one of the two sections, with its key.
#[derive(Debug)]
pub struct ProxyError {
    pub field: &'static str,
    pub message: String,
}

fn version(text: &str, any: bool) -> Option<Accepted> {
    match text {
        "1" => Some(Accepted::Only(Version::V1)),
        "2" => Some(Accepted::Only(Version::V2)),
        "" | "any" if any => Some(Accepted::Any),
        _ => None,
    }
}

/// The version `[proxy_protocol]` sends: `"1"` as gobetween, or `"2"`.
pub fn send_version(section: &ProxyProtocol) -> Result<Version, ProxyError> {
    match version(&section.version, false) {
        Some(Accepted::Only(v)) => Ok(v),
        _ if section.version.is_empty() => {
            Err(ProxyError { field: "version", message: "required (\"1\" or \"2\")".into() })
        }
        _ => Err(ProxyError {
            field: "version",
            message: format!("unsupported proxy_protocol version {:?} (use \"1\" or \"2\")", section.version),
        }),
    }
}

impl AcceptSettings {
    pub fn from_section(section: &AcceptProxyProtocol) -> Result<AcceptSettings, ProxyError> {
        let text = section.version.as_deref().unwrap_or_default();
        let versions = version(text, true).ok_or_else(|| ProxyError {
            field: "version",
            message: format!("unsupported version {text:?} (use \"1\", \"2\" or \"any\")"),
        })?;
        let read_timeout = match section.read_timeout.as_deref() {
            Some(GoDuration(d)) if d.is_zero() => {
                return Err(ProxyError {
                    field: "read_timeout",
                    message: "must be greater than 0 (a client must send its header in bounded time)".into(),
                })
            }
            Some(GoDuration(d)) => *d,
            None => DEFAULT_READ_TIMEOUT,
        };
        let trusted = section.trusted.as_deref().map(trusted_networks).transpose()?;
        Ok(AcceptSettings { versions, read_timeout, trusted })
    }

    /// Whether a header from `peer` (the socket's own address) is believed. Another peer's
    /// header is read all the same, and the peer stays the client (nginx's `set_real_ip_from`).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.as_ref().is_none_or(|networks| networks.iter().any(|n| n.contains(peer)))
    }
}

fn trusted_networks(entries: &[String]) -> Result<Vec<Network>, ProxyError> {
    let error = |message: String| ProxyError { field: "trusted", message };
    if entries.is_empty() {
        return Err(error("names no address (leave it out to believe every client's header)".into()));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            Network::parse(entry.trim()).map_err(|why| {
                error(format!("entry {} {entry:?}: {why} (expected an IP address or CIDR)", i + 1))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let send = |v: &str| send_version(&ProxyProtocol { version: v.into() });
        assert_eq!(send("1").unwrap(), Version::V1);
        assert_eq!(send("2").unwrap(), Version::V2);
        assert!(send("").unwrap_err().message.contains("required"));
        assert!(send("any").is_err() && send("v1").is_err() && send("3").is_err());

        let accept = |v: Option<&str>| {
            AcceptSettings::from_section(&AcceptProxyProtocol {
                version: v.map(str::to_string),
                ..Default::default()
            })
        };
        assert_eq!(accept(None).unwrap().versions, Accepted::Any);
        assert_eq!(accept(Some("")).unwrap().versions, Accepted::Any);
        assert_eq!(accept(Some("2")).unwrap().versions, Accepted::Only(Version::V2));
        assert!(accept(Some("v2")).is_err());
        assert!(Accepted::Any.admits(Version::V1) && !Accepted::Only(Version::V2).admits(Version::V1));
        let zero = AcceptProxyProtocol { read_timeout: Some(GoDuration::ZERO.into()), ..Default::default() };
        assert_eq!(AcceptSettings::from_section(&zero).unwrap_err().field, "read_timeout");
    }

    #[test]
    fn trusted_peers() {
        let with = |trusted: &[&str]| {
            AcceptSettings::from_section(&AcceptProxyProtocol {
                trusted: Some(trusted.iter().map(|t| t.to_string()).collect()),
                ..Default::default()
            })
        };
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let every = AcceptSettings::from_section(&AcceptProxyProtocol::default()).unwrap();
        assert!(every.trusted.is_none() && every.trusts(ip("192.0.2.1")) && every.trusts(ip("::1")));

        let some = with(&["10.0.0.0/8", " 192.0.2.7 ", "2001:db8::/32"]).unwrap();
        assert!(
            some.trusts(ip("10.1.2.3")) && some.trusts(ip("192.0.2.7")) && some.trusts(ip("2001:db8::9"))
        );
        assert!(
            !some.trusts(ip("192.0.2.8")) && !some.trusts(ip("11.0.0.1")) && !some.trusts(ip("2001:db9::1"))
        );
        // A dual-stack listener's IPv4 peer, as an IPv4-mapped address.
        assert!(some.trusts(ip("::ffff:10.9.9.9")) && !some.trusts(ip("::ffff:11.0.0.1")));

        let bad = with(&["10.0.0.0/8", "lb.example"]).unwrap_err();
        assert_eq!(bad.field, "trusted");
        assert!(bad.message.contains("entry 2 \"lb.example\""), "{}", bad.message);
        assert!(with(&["10.0.0.0/33"]).is_err());
        assert!(with(&[]).unwrap_err().message.contains("leave it out"));
    }
}
