//! What Consul's Go client (which gobetween uses for `from-consul` and for consul discovery)
//! makes of an address and of its environment, shared by both: the address forms
//! (`host:port`, `http://`, `https://`, `unix://`, a path prefix), the ACL token from
//! `CONSUL_HTTP_TOKEN_FILE` or `CONSUL_HTTP_TOKEN`, and URL encoding as Go writes it.

/// Where Consul's HTTP API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub scheme: Scheme,
    /// `host:port` (`http`, `https`) or the socket's path (`unix`).
    pub host: String,
    /// A path the API sits under (`http://proxy/consul` → `/consul`), without a final `/`.
    pub prefix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Unix,
}

/// Consul's client's address when none is given and `CONSUL_HTTP_ADDR` is unset.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";

pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Address {
    /// Reads `address` as Consul's client does, `https` when `tls` (an explicit `https` is never
    /// turned back into `http`). A `unix://` address has no prefix: all of it is the path.
    pub fn parse(address: &str, tls: bool) -> Result<Address, String> {
        let mut scheme = if tls { Scheme::Https } else { Scheme::Http };
        let mut rest = address;
        if let Some((prefix, after)) = address.split_once("://") {
            match prefix {
                "http" => {}
                "https" => scheme = Scheme::Https,
                "unix" => {
                    if after.is_empty() {
                        return Err(format!("missing socket path in Consul address {address:?}"));
                    }
                    return Ok(Address {
                        scheme: Scheme::Unix,
                        host: after.to_string(),
                        prefix: String::new(),
                    });
                }
                other => {
                    return Err(format!("unknown protocol scheme {other:?} in Consul address {address:?}"))
                }
            }
            rest = after;
        }
        let (host, prefix) = match rest.split_once('/') {
            Some((host, prefix)) => (host, format!("/{}", prefix.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        if host.is_empty() {
            return Err(format!("missing host in Consul address {address:?} (expected host:port)"));
        }
        let prefix = if prefix == "/" { String::new() } else { prefix };
        Ok(Address { scheme, host: host.to_string(), prefix })
    }

    /// `http://host:port/prefix`, or `unix:PATH` (for messages).
    pub fn base(&self) -> String {
        match self.scheme {
            Scheme::Http => format!("http://{}{}", self.host, self.prefix),
            Scheme::Https => format!("https://{}{}", self.host, self.prefix),
            Scheme::Unix => format!("unix:{}", self.host),
        }
    }
}

/// Percent-encodes what Go's URL writer would: everything but unreserved characters, the
/// sub-delimiters Go leaves in paths, and `/` when `path`.
pub fn encode(text: &str, path: bool) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b) || path && b"/$&+,:;=@".contains(&b);
    text.bytes().map(|b| if keep(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The token Consul's client falls back on: `CONSUL_HTTP_TOKEN_FILE` wins over
/// `CONSUL_HTTP_TOKEN`; a file holding only whitespace means no token.
pub fn env_token() -> Result<Option<String>, String> {
    match env("CONSUL_HTTP_TOKEN_FILE") {
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read CONSUL_HTTP_TOKEN_FILE {file}: {e}"))?;
            Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
        }
        None => Ok(env("CONSUL_HTTP_TOKEN")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms_as_consuls_client_reads_them() {
        let parse = |text, tls| Address::parse(text, tls).map(|a| a.base());
        assert_eq!(parse("127.0.0.1:8500", false).unwrap(), "http://127.0.0.1:8500");
        assert_eq!(parse("c:8500", true).unwrap(), "https://c:8500");
        assert_eq!(parse("https://c:8501", false).unwrap(), "https://c:8501");
        assert_eq!(parse("http://c:8501", true).unwrap(), "https://c:8501");
        assert_eq!(parse("http://proxy:80/consul/", false).unwrap(), "http://proxy:80/consul");
        assert_eq!(parse("c:1/", false).unwrap(), "http://c:1");
        let unix = Address::parse("unix:///run/consul.sock", false).unwrap();
        assert_eq!((unix.scheme, unix.host.as_str()), (Scheme::Unix, "/run/consul.sock"));
        assert!(parse("ftp://c", false).unwrap_err().contains("unknown protocol scheme"));
        assert!(parse("http://", false).unwrap_err().contains("missing host"));
        assert!(parse("unix://", false).unwrap_err().contains("missing socket path"));
    }

    #[test]
    fn encoding_as_go_writes_urls() {
        assert_eq!(encode("a b?#%/", true), "a%20b%3F%23%25/");
        assert_eq!(encode("a b&=/", false), "a%20b%26%3D%2F");
    }
}
