//! The HTTP client that reads a configuration source (`from-url`, `from-consul`, a reload, the
//! watch) as gobetween's Go client does: TLS verified against the system's CAs, or
//! against what `from-consul`'s environment names (its CAs, a client certificate, the server
//! name to expect, or no verification at all); the proxy Go would pick from the environment,
//! spoken to as Go speaks to it ([`forward`] for plain `http` through an HTTP proxy); and, for
//! `from-consul unix:///path`, the agent's socket ([`unix`]).

use betwixt_control::backend::host_port;
use betwixt_control::discovery::http::proxy::Kind as ProxyKind;
use betwixt_control::discovery::http::Proxies;
use forward::ForwardConnector;
use std::path::{Path, PathBuf};
use std::time::Duration;
use unix::UnixConnector;
use ureq::http::uri::{Authority, Uri};
use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, DefaultConnector, NextTimeout, RustlsConnector, TcpConnector};
use ureq::ProxyProtocol;

mod forward;
mod unix;

/// One source's request: its URL, its headers, and how `https` is spoken to it.
#[derive(Debug)]
pub struct Get {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub tls: Tls,
    /// A unix socket every request goes to instead of the URL's host (whose name is then
    /// only the `Host` header and, for `https`, the name TLS expects).
    pub unix: Option<PathBuf>,
}

/// How an `https` source is spoken to (unused for `http`).
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// The CAs the server's certificate must chain to; `None`: the system's bundle.
    pub roots: Option<Vec<Certificate<'static>>>,
    pub client: Option<ClientCert>,
    /// The server's certificate is not verified at all.
    pub unverified: bool,
    /// The name the server's certificate must carry, sent as SNI, instead of the URL's host.
    pub server_name: Option<String>,
}

/// Makes requests to one source; keep it to reuse its connections.
pub struct Client {
    agent: ureq::Agent,
    /// The server name to expect, and the authority (`host:port`) of the source's URL.
    renamed: Option<(String, String)>,
}

impl Client {
    /// A client for the source `get` names (its URL's host is where every request goes).
    pub fn new(get: &Get, timeout: Duration) -> Result<Client, String> {
        let tls = &get.tls;
        let roots = match &tls.roots {
            Some(certs) => RootCerts::new_with_certs(certs),
            None => system_roots(),
        };
        let tls_config = TlsConfig::builder()
            .root_certs(roots)
            .client_cert(tls.client.clone())
            .disable_verification(tls.unverified)
            .build();
        let uri: Uri = get.url.parse().map_err(|e| format!("not a URL ({e}): {}", get.url))?;
        let authority = uri.authority().ok_or_else(|| format!("no host in {}", get.url))?.clone();
        let route = match get.unix {
            Some(_) => Route::Direct,
            None => route(&uri, &authority)?,
        };
        let tunnel = match &route {
            Route::Tunnel(proxy) => Some(proxy.clone()),
            _ => None,
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .tls_config(tls_config)
            .proxy(tunnel)
            .build();
        let mut resolver = Renamed { name: tls.server_name.clone(), to: authority.clone(), http_to: None };
        let agent = match (&get.unix, route) {
            // TLS, when the scheme asks for it, runs over the socket.
            (Some(socket), _) => {
                let connector = ().chain(UnixConnector(socket.clone())).chain(RustlsConnector::default());
                ureq::Agent::with_parts(config, connector, resolver)
            }
            (None, Route::Forward { proxy, authorization }) => {
                resolver.http_to = Some(proxy);
                let connector =
                    ().chain(TcpConnector::default())
                        .chain(ForwardConnector { authorization })
                        .chain(RustlsConnector::default());
                ureq::Agent::with_parts(config, connector, resolver)
            }
            (None, _) => ureq::Agent::with_parts(config, DefaultConnector::default(), resolver),
        };
        let renamed = tls.server_name.as_ref().map(|name| (name.clone(), authority.to_string()));
        Ok(Client { agent, renamed })
    }

    /// GET `url` (on the source's host) with `headers`. With a server name, the URL's host is
    /// replaced by it, so TLS sends and verifies that name; `Renamed` still connects to the
    /// source's host, and `Host` names it as it would without a server name (as Go does).
    pub fn get(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut request = match &self.renamed {
            Some((name, authority)) => self.agent.get(&with_host(url, name)?).header("Host", authority),
            None => self.agent.get(url),
        };
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.call().map_err(|e| format!("cannot fetch {url}: {e}"))
    }
}

/// How a source's requests reach it.
enum Route {
    Direct,
    /// Plain `http` through an HTTP proxy (`proxy`, its `http://host:port`), as [`forward`]
    /// sends it.
    Forward {
        proxy: Uri,
        authorization: Option<String>,
    },
    /// Through a tunnel ureq opens: `CONNECT` to an HTTP proxy, or SOCKS5.
    Tunnel(ureq::Proxy),
}

/// The proxy for the source's URL, chosen as Go's `http.ProxyFromEnvironment` chooses (as
/// discovery chooses: `HTTP_PROXY` for `http`, `HTTPS_PROXY` for `https`, `NO_PROXY`, never for
/// loopback), rather than by ureq's own reading of the environment, which takes `ALL_PROXY`
/// and one proxy for both schemes. The choice is made for the source's URL and kept for its
/// redirects. With a server name (`CONSUL_TLS_SERVER_NAME`) ureq names that in `CONNECT`,
/// where Go names the address.
fn route(uri: &Uri, authority: &Authority) -> Result<Route, String> {
    let https = uri.scheme_str() == Some("https");
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let proxies = Proxies::from_env();
    let Some(chosen) = proxies.for_target(https, host, port)? else {
        return Ok(Route::Direct);
    };
    // SOCKS5 as Go speaks it for `socks5://` and `socks5h://` alike: the proxy resolves the name.
    let protocol = match chosen.kind {
        ProxyKind::Http if !https => {
            let proxy = format!("http://{}/", chosen.authority());
            let proxy = proxy.parse().map_err(|e| format!("proxy {}: {e}", chosen.authority()))?;
            return Ok(Route::Forward { proxy, authorization: chosen.authorization() });
        }
        ProxyKind::Http => ProxyProtocol::Http,
        ProxyKind::Socks5 => ProxyProtocol::Socks5h,
    };
    let mut builder = ureq::Proxy::builder(protocol).host(&chosen.host).port(chosen.port);
    if let Some((user, password)) = &chosen.credentials {
        builder = builder.username(user).password(password);
    }
    builder.build().map(Route::Tunnel).map_err(|e| format!("proxy {}: {e}", chosen.authority()))
}

/// `url` with its host replaced by `name`, its port kept (made explicit).
fn with_host(url: &str, name: &str) -> Result<String, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL ({e}): {url}"))?;
    let scheme = uri.scheme_str().unwrap_or("https");
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = uri.authority().and_then(Authority::port_u16).unwrap_or(default_port);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(format!("{scheme}://{}{path}", host_port(name, port)))
}

/// Resolves the server name, when there is one, to the source's own host, and with a
/// forwarding proxy every `http` URL's host to the proxy; every other name as usual.
#[derive(Debug)]
struct Renamed {
    name: Option<String>,
    to: Authority,
    /// The HTTP proxy plain `http` requests are sent to (see [`forward`]).
    http_to: Option<Uri>,
}

impl Resolver for Renamed {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(proxy) = self.http_to.as_ref().filter(|_| uri.scheme_str() == Some("http")) {
            return DefaultResolver::default().resolve(proxy, config, timeout);
        }
        let host = uri.host().map(|h| h.trim_start_matches('[').trim_end_matches(']'));
        if host.is_none() || host != self.name.as_deref() {
            return DefaultResolver::default().resolve(uri, config, timeout);
        }
        let mut parts = uri.clone().into_parts();
        parts.authority = Some(self.to.clone());
        let real = Uri::from_parts(parts).map_err(|e| ureq::Error::BadUri(e.to_string()))?;
        DefaultResolver::default().resolve(&real, config, timeout)
    }
}

/// The system's CAs, as Go's client verifies with; Mozilla's roots (built in) where
/// there are none.
fn system_roots() -> RootCerts {
    match betwixt_control::system_roots::certificates() {
        Some(certs) => certs.iter().map(|der| Certificate::from_der(der.as_ref()).to_owned()).into(),
        None => RootCerts::WebPki,
    }
}

/// The certificates in PEM text; none at all is an error, as Go's `AppendCertsFromPEM` says.
pub fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in parse_pem(pem) {
        if let PemItem::Certificate(cert) = item.map_err(|e| e.to_string())? {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// A certificate chain and its key, from two PEM files.
pub fn client_cert(cert: &Path, key: &Path) -> Result<ClientCert, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let chain = certificates(&read(cert)?).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKey::from_pem(&read(key)?).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(ClientCert::new_with_certs(&chain, key))
}
