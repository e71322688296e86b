//! Proxies from the environment, read as Go's `http.ProxyFromEnvironment` reads them (gobetween's
//! plaintext and json discovery, its Docker and LXD clients, `from-url`, `from-consul` and its
//! ACME client all go through it; betwixt's discovery client, ACME client and `src/fetch` use
//! this): `HTTP_PROXY` for `http://` URLs, `HTTPS_PROXY` for `https://` ones (the upper-case
//! name wins over the lower-case one), `NO_PROXY` for the hosts to reach directly; `localhost`
//! and loopback addresses never go through a proxy. A proxy is spoken to in plain HTTP
//! (`http://host:port`, user and password sent as `Proxy-Authorization`) or SOCKS5 (`socks5://`
//! and `socks5h://`, user and password as its username/password authentication); an `https://`
//! proxy (TLS to the proxy) is not supported yet and fails the fetch saying so. Which proxy, if
//! any, is pure logic here; the clients speak to it ([`super::tunnel`]).

use base64::Engine;
use percent_encoding::percent_decode_str;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// The proxy settings, read once per process (as Go reads them once).
#[derive(Debug)]
pub struct Proxies {
    http: Option<Result<Proxy, String>>,
    https: Option<Result<Proxy, String>>,
    /// `HTTP_PROXY` is not used when `REQUEST_METHOD` is set (a CGI program's request may
    /// carry a `Proxy:` header that the CGI server turns into `HTTP_PROXY`).
    cgi: bool,
    direct: Vec<Direct>,
}

/// A proxy to send requests through.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    /// User and password, when the proxy's URL carries a user (percent-decoded).
    pub credentials: Option<(String, String)>,
}

/// How a proxy is spoken to, by its URL's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `http://`: a `CONNECT` tunnel for TLS; plain HTTP requests go to it naming the whole URL.
    Http,
    /// `socks5://` or `socks5h://` (alike in Go: the proxy is given the host's name and
    /// resolves it): a SOCKS5 tunnel for every request.
    Socks5,
}

/// Never the password: settings are printed in debug logs.
impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.credentials.as_ref().map(|(user, _)| user.as_str());
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &user)
            .finish()
    }
}

/// One `NO_PROXY` entry.
#[derive(Debug, PartialEq)]
enum Direct {
    All,
    Network {
        ip: IpAddr,
        prefix: u8,
    },
    Ip {
        ip: IpAddr,
        port: Option<u16>,
    },
    /// `.example.com`: its subdomains; with `and_itself`, `example.com` too.
    Domain {
        suffix: String,
        and_itself: bool,
        port: Option<u16>,
    },
}

impl Proxies {
    /// This process's environment, read at the first call.
    pub fn from_env() -> Arc<Proxies> {
        static READ: OnceLock<Arc<Proxies>> = OnceLock::new();
        READ.get_or_init(|| {
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            Arc::new(Proxies::from_vars(|name| var(name).or_else(|| var(&name.to_lowercase()))))
        })
        .clone()
    }

    /// The settings `var` gives (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, `REQUEST_METHOD`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Proxies {
        Proxies {
            http: var("HTTP_PROXY").and_then(|v| Proxy::parse(&v)),
            https: var("HTTPS_PROXY").and_then(|v| Proxy::parse(&v)),
            cgi: var("REQUEST_METHOD").is_some(),
            direct: var("NO_PROXY").map(|v| no_proxy(&v)).unwrap_or_default(),
        }
    }

    /// The proxy for a request to `host:port` over `https` or not, or `None` to go directly.
    pub fn for_target(&self, https: bool, host: &str, port: u16) -> Result<Option<&Proxy>, String> {
        let proxy = match (https, &self.http, &self.https) {
            (true, _, Some(proxy)) => proxy,
            (false, Some(_), _) if self.cgi => {
                return Err("HTTP_PROXY is not used where REQUEST_METHOD is set (a CGI environment)".into())
            }
            (false, Some(proxy), _) => proxy,
            _ => return Ok(None),
        };
        if !self.proxied(host, port) {
            return Ok(None);
        }
        proxy.as_ref().map(Some).map_err(Clone::clone)
    }

    fn proxied(&self, host: &str, port: u16) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        !self.direct.iter().any(|entry| match (entry, ip) {
            (Direct::All, _) => true,
            (Direct::Network { ip: net, prefix }, Some(ip)) => in_network(ip, *net, *prefix),
            (Direct::Ip { ip: entry, port: p }, Some(ip)) => *entry == ip && p.is_none_or(|p| p == port),
            (Direct::Domain { suffix, and_itself, port: p }, None) => {
                (host.ends_with(suffix.as_str()) || *and_itself && host == suffix[1..])
                    && p.is_none_or(|p| p == port)
            }
            _ => false,
        })
    }
}

impl Proxy {
    /// A proxy URL as Go's `parseProxy` takes it: without a scheme, `http://` is assumed. One
    /// that does not parse at all is ignored, as Go ignores it (the request goes directly).
    fn parse(text: &str) -> Option<Result<Proxy, String>> {
        let url = match url::Url::parse(text) {
            Ok(url) if url.has_host() => url,
            _ => url::Url::parse(&format!("http://{text}")).ok()?,
        };
        let (kind, default_port) = match url.scheme() {
            "http" => (Kind::Http, 80),
            "socks5" | "socks5h" => (Kind::Socks5, 1080),
            scheme => return Some(Err(format!("not supported yet: a {scheme}:// proxy ({text:?})"))),
        };
        let host = url.host_str().filter(|h| !h.is_empty())?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let credentials = (!url.username().is_empty() || url.password().is_some())
            .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))));
        Some(Ok(Proxy { kind, host, port: url.port().unwrap_or(default_port), credentials }))
    }

    /// `Proxy-Authorization`'s value (HTTP basic authentication), when there are credentials.
    pub fn authorization(&self) -> Option<String> {
        let (user, password) = self.credentials.as_ref()?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ))
    }

    /// `host:port` as a request line or socket address names it.
    pub fn authority(&self) -> String {
        crate::backend::host_port(&self.host, self.port)
    }
}

/// `NO_PROXY`'s entries, as Go's httpproxy reads them: comma-separated, `*` for every host,
/// CIDR networks, IP addresses and domains, each with an optional `:port`.
fn no_proxy(value: &str) -> Vec<Direct> {
    let mut entries = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return vec![Direct::All];
        }
        if let Some((ip, prefix)) = entry.split_once('/') {
            if let (Ok(ip), Ok(prefix)) = (ip.parse::<IpAddr>(), prefix.parse::<u8>()) {
                if prefix <= if ip.is_ipv4() { 32 } else { 128 } {
                    entries.push(Direct::Network { ip, prefix });
                }
            }
            continue;
        }
        let (host, port) = split_port(&entry);
        if host.is_empty() {
            continue;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            entries.push(Direct::Ip { ip, port });
            continue;
        }
        let host = host.strip_prefix('*').unwrap_or(host);
        let (suffix, and_itself) = match host.starts_with('.') {
            true => (host.to_string(), false),
            false => (format!(".{host}"), true),
        };
        entries.push(Direct::Domain { suffix, and_itself, port });
    }
    entries
}

/// `host:port` or `[v6]:port` split as Go's `net.SplitHostPort` would (a bare IPv6 address
/// has no port); a port that is no number leaves the entry whole.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            return (host, port.parse().ok());
        }
        return (rest.trim_end_matches(']'), None);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Proxies::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn via(p: &Proxies, https: bool, host: &str, port: u16) -> Option<String> {
        p.for_target(https, host, port).unwrap().map(Proxy::authority)
    }

    #[test]
    fn the_scheme_picks_the_variable_and_loopback_goes_direct() {
        let p = proxies(&[("HTTP_PROXY", "proxy:3128"), ("HTTPS_PROXY", "http://secure:8443")]);
        assert_eq!(via(&p, false, "lists.test", 80).as_deref(), Some("proxy:3128"));
        assert_eq!(via(&p, true, "lists.test", 443).as_deref(), Some("secure:8443"));
        for host in ["localhost", "127.0.0.1", "127.8.9.1", "::1"] {
            assert_eq!(via(&p, false, host, 80), None, "{host}");
        }
        let only_http = proxies(&[("HTTP_PROXY", "http://proxy")]);
        assert_eq!(via(&only_http, true, "lists.test", 443), None);
        assert_eq!(via(&only_http, false, "lists.test", 80).as_deref(), Some("proxy:80"));
    }

    #[test]
    fn no_proxy_entries_as_go_matches_them() {
        let p = proxies(&[
            ("HTTP_PROXY", "proxy:3128"),
            (
                "NO_PROXY",
                " corp.test, .shop.test,*.edge.test,10.0.0.0/8, 192.0.2.7, api.test:8080, [2001:db8::1]:80",
            ),
        ]);
        let direct = |host: &str, port: u16| via(&p, false, host, port).is_none();
        assert!(direct("corp.test", 80) && direct("a.corp.test", 80) && direct("A.Corp.Test", 80));
        assert!(!direct("xcorp.test", 80));
        assert!(direct("a.shop.test", 80) && !direct("shop.test", 80));
        assert!(direct("a.edge.test", 80) && !direct("edge.test", 80));
        assert!(direct("10.1.2.3", 80) && !direct("11.1.2.3", 80));
        assert!(direct("192.0.2.7", 80) && !direct("192.0.2.8", 80));
        assert!(direct("api.test", 8080) && !direct("api.test", 80));
        assert!(direct("2001:db8::1", 80) && !direct("2001:db8::1", 81));
        // A domain entry never matches an address, nor a network a name.
        assert!(!direct("10.corp.test.example", 80));
        let all = proxies(&[("HTTP_PROXY", "proxy"), ("NO_PROXY", "a.test,*")]);
        assert_eq!(via(&all, false, "b.test", 80), None);
    }

    #[test]
    fn proxy_urls_credentials_and_refusals() {
        let p = proxies(&[("HTTP_PROXY", "http://us%40er:p%3Ass@proxy.test:3128")]);
        let proxy = p.for_target(false, "lists.test", 80).unwrap().unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(proxy.authorization(), Some(format!("Basic {expected}")));
        assert!(!format!("{proxy:?}").contains("p:ss"), "{proxy:?}");
        let tls = proxies(&[("HTTPS_PROXY", "https://proxy:8443")]);
        let e = tls.for_target(true, "lists.test", 443).unwrap_err();
        assert!(e.starts_with("not supported yet: a https:// proxy"), "{e}");
        // Not asked for a loopback target: the bad proxy is never used.
        assert!(tls.for_target(true, "127.0.0.1", 443).unwrap().is_none());
        // SOCKS5 either way, on 1080 unless told.
        for (url, port) in [("socks5://proxy", 1080), ("socks5h://u:p@proxy:9050", 9050)] {
            let socks = proxies(&[("HTTP_PROXY", url)]);
            let proxy = socks.for_target(false, "lists.test", 80).unwrap().unwrap();
            assert_eq!((proxy.kind, proxy.port), (Kind::Socks5, port), "{url}");
        }
        let e = proxies(&[("HTTP_PROXY", "socks4://proxy")]).for_target(false, "a.test", 80).unwrap_err();
        assert!(e.starts_with("not supported yet: a socks4:// proxy"), "{e}");
        let cgi = proxies(&[("HTTP_PROXY", "proxy"), ("REQUEST_METHOD", "GET")]);
        assert!(cgi.for_target(false, "lists.test", 80).is_err());
        let v6 = proxies(&[("HTTP_PROXY", "[2001:db8::2]:3128")]);
        assert_eq!(via(&v6, false, "lists.test", 80).as_deref(), Some("[2001:db8::2]:3128"));
    }
}
