//! Where a discovery endpoint is: `http://host[:port][/path][?query]`, `https://...` (port
//! 443 unless given) or `unix:///path/to/socket` (Docker's and LXD's local sockets; requests
//! then carry `Host: localhost`, which both daemons accept).

use hyper::Uri;
use std::path::PathBuf;

/// The URL schemes a kind accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Unix,
}

impl Scheme {
    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::Http => "http://",
            Scheme::Https => "https://",
            Scheme::Unix => "unix://",
        }
    }
}

/// Where to connect.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// A parsed endpoint URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub scheme: Scheme,
    pub target: Target,
    /// The `Host` header: `host[:port]` as written, `localhost` for a socket.
    pub authority: String,
    /// The path and query of the URL, `/` when it has none (always `/` for a socket).
    pub path: String,
}

impl Address {
    /// Reads `text` as a URL of one of the `allowed` schemes; the error says what is wrong.
    pub fn parse(text: &str, allowed: &[Scheme]) -> Result<Address, String> {
        let invalid = |why: &str| format!("{why}: {text:?}");
        let schemes = || allowed.iter().map(|s| s.prefix()).collect::<Vec<_>>().join(", ");
        if let Some(path) = text.strip_prefix("unix://") {
            if !allowed.contains(&Scheme::Unix) {
                return Err(invalid(&format!("only {} URLs are supported", schemes())));
            }
            if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', '\0']) {
                return Err(invalid("a unix:// URL is unix:// and the socket's absolute path"));
            }
            return Ok(Address {
                scheme: Scheme::Unix,
                target: Target::Unix(PathBuf::from(path)),
                authority: "localhost".into(),
                path: "/".into(),
            });
        }
        let uri: Uri = text.parse().map_err(|e| invalid(&format!("not a URL ({e})")))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(invalid(&format!("only {} URLs are supported", schemes()))),
        };
        if !allowed.contains(&scheme) {
            return Err(invalid(&format!("only {} URLs are supported", schemes())));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host in URL"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user and password in the URL are not supported"));
        }
        let host = authority.host();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("no host in URL"));
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        Ok(Address {
            scheme,
            target: Target::Tcp {
                host: host.to_string(),
                port: authority.port_u16().unwrap_or(default_port),
            },
            authority: authority.to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }

    /// The host of a TCP endpoint (what TLS names as the server), `None` for a socket.
    pub fn host(&self) -> Option<&str> {
        match &self.target {
            Target::Tcp { host, .. } => Some(host),
            Target::Unix(_) => None,
        }
    }

    /// `path_and_query` below the endpoint's own path: `http://h/api/` and `/v1/x` give
    /// `/api/v1/x`, so an API behind a path prefix works.
    pub fn join(&self, path_and_query: &str) -> String {
        let base = self.path.split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
        format!("{base}{path_and_query}")
    }

    /// The URL for messages.
    pub fn url(&self, path: &str) -> String {
        match &self.target {
            Target::Unix(socket) => format!("unix://{}{path}", socket.display()),
            Target::Tcp { .. } => format!("{}{}{path}", self.scheme.prefix(), self.authority),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Scheme; 3] = [Scheme::Http, Scheme::Https, Scheme::Unix];

    fn tcp(a: &Address) -> (&str, u16, &str, &str) {
        match &a.target {
            Target::Tcp { host, port } => (host, *port, a.authority.as_str(), a.path.as_str()),
            Target::Unix(_) => panic!("not tcp: {a:?}"),
        }
    }

    #[test]
    fn http_and_https_urls() {
        let a = Address::parse("http://127.0.0.1:8080/list?a=1", &ALL).unwrap();
        assert_eq!(tcp(&a), ("127.0.0.1", 8080, "127.0.0.1:8080", "/list?a=1"));
        let a = Address::parse("http://[::1]/", &ALL).unwrap();
        assert_eq!(tcp(&a), ("::1", 80, "[::1]", "/"));
        assert_eq!(Address::parse("http://example.com", &ALL).unwrap().path, "/");
        let a = Address::parse("https://consul.example:8501", &ALL).unwrap();
        assert_eq!(
            (a.scheme, tcp(&a)),
            (Scheme::Https, ("consul.example", 8501, "consul.example:8501", "/"))
        );
        assert_eq!(tcp(&Address::parse("https://k8s", &ALL).unwrap()).1, 443);
        assert_eq!(a.host(), Some("consul.example"));
    }

    #[test]
    fn unix_sockets() {
        let a = Address::parse("unix:///var/run/docker.sock", &ALL).unwrap();
        assert_eq!(a.target, Target::Unix("/var/run/docker.sock".into()));
        assert_eq!((a.authority.as_str(), a.path.as_str(), a.host()), ("localhost", "/", None));
        assert_eq!(a.url("/_ping"), "unix:///var/run/docker.sock/_ping");
        for bad in ["unix://", "unix:///", "unix://relative.sock", "unix:///a.sock?x=1"] {
            assert!(Address::parse(bad, &ALL).is_err(), "{bad}");
        }
    }

    #[test]
    fn refused_urls() {
        for bad in ["", "example.com", "ftp://x/", "http://u:p@x/", "http:///x", "tcp://x:2375"] {
            assert!(Address::parse(bad, &ALL).is_err(), "{bad}");
        }
        let e = Address::parse("unix:///s", &[Scheme::Http, Scheme::Https]).unwrap_err();
        assert!(e.contains("only http://, https:// URLs"), "{e}");
        assert!(Address::parse("https://x/", &[Scheme::Http]).is_err());
    }

    #[test]
    fn paths_join_below_the_endpoint() {
        let a = Address::parse("http://h:1/api/?x=1", &ALL).unwrap();
        assert_eq!(a.join("/v1/x?y=2"), "/api/v1/x?y=2");
        assert_eq!(Address::parse("http://h", &ALL).unwrap().join("/_ping"), "/_ping");
        assert_eq!(Address::parse("unix:///s", &ALL).unwrap().join("/1.0"), "/1.0");
    }
}
