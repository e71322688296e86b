//! PROXY protocol settings: the header betwixt sends to backends (`[proxy_protocol] version`,
//! gobetween's key) and the header it reads from clients (`[accept_proxy_protocol]`, betwixt's
//! addition for running behind another L4 balancer). The wire format is the data plane's
//! (`src/proxy_protocol.rs`).

use crate::config::{AcceptProxyProtocol, GoDuration, ProxyProtocol};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptSettings {
    pub versions: Accepted,
    /// Never zero: a client cannot hold a connection open without sending its header.
    pub read_timeout: Duration,
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
        Ok(AcceptSettings { versions, read_timeout })
    }
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
                read_timeout: None,
            })
        };
        assert_eq!(accept(None).unwrap().versions, Accepted::Any);
        assert_eq!(accept(Some("")).unwrap().versions, Accepted::Any);
        assert_eq!(accept(Some("2")).unwrap().versions, Accepted::Only(Version::V2));
        assert!(accept(Some("v2")).is_err());
        assert!(Accepted::Any.admits(Version::V1) && !Accepted::Only(Version::V2).admits(Version::V1));
        let zero = AcceptProxyProtocol { version: None, read_timeout: Some(GoDuration::ZERO.into()) };
        assert_eq!(AcceptSettings::from_section(&zero).unwrap_err().field, "read_timeout");
    }
}
