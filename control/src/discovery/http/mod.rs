//! The HTTP client of discovery: GETs over `http://`, `https://` (rustls with ring) and
//! `unix://` sockets, one connection per request, with extra headers (tokens, basic auth), the
//! body bounded in size ([`MAX_BODY`]); and a streaming GET ([`Endpoint::stream`]) that yields
//! a long-lived answer line by line, for watch endpoints (Docker's `/events`, Kubernetes'
//! `?watch=1`).
//!
//! Nothing here bounds time: the runner bounds a whole fetch, and a watching source bounds its
//! own steps. Dropping a request's future, or a [`LineStream`], closes its connection.

pub mod address;
mod lines;
pub mod proxy;
pub mod tls;
mod tunnel;

pub use address::{percent_encode, Address, Scheme, Target};
pub use lines::LineStream;
pub use proxy::{Proxies, Proxy};
pub use tunnel::tunnel;

use super::SectionError;
use base64::Engine;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderName, HeaderValue, AUTHORIZATION, HOST, LOCATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;

/// Bodies beyond this fail the fetch: no useful backend list is that long.
pub const MAX_BODY: usize = 16 << 20;

/// How much of an error answer's body goes into the message.
const ERROR_SNIPPET: usize = 200;

/// Go's `http.Client` gives up after this many redirects.
pub const MAX_REDIRECTS: usize = 10;

/// The statuses Go's client follows (with a `Location`); it answers other 3xx as they are.
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

/// A discovery endpoint: where it is, how to speak TLS to it, what to send along.
#[derive(Clone, Debug)]
pub struct Endpoint {
    address: Address,
    tls: Option<Arc<rustls::ClientConfig>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The proxies requests may go through (the kinds whose Go clients in gobetween read them
    /// from the environment); `None`: always directly.
    proxies: Option<Arc<Proxies>>,
}

/// A successful (2xx) answer: its headers (Consul's `X-Consul-Index`) and body.
#[derive(Debug)]
pub struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Endpoint {
    /// An `http://` or `https://` endpoint (`https` with the system's CAs), as plaintext and
    /// json discovery take (Go's `http.Get`, which gobetween uses, speaks both).
    pub fn parse(field: &'static str, text: &str) -> Result<Endpoint, SectionError> {
        Endpoint::parse_with(field, text, &[Scheme::Http, Scheme::Https])
    }

    /// An endpoint of one of the `allowed` schemes; an `https://` one verifies the server
    /// against the system's CAs until [`Endpoint::with_tls`] says otherwise.
    pub fn parse_with(field: &'static str, text: &str, allowed: &[Scheme]) -> Result<Endpoint, SectionError> {
        if text.is_empty() {
            let schemes: Vec<_> = allowed.iter().map(|s| s.prefix()).collect();
            return Err(SectionError::new(
                field,
                format!("required: the {} URL to fetch", schemes.join(" or ")),
            ));
        }
        let address = Address::parse(text, allowed).map_err(|e| SectionError::new(field, e))?;
        let tls = match address.scheme {
            Scheme::Https => Some(tls::client(&tls::Files::default(), &tls::Keys::same(field))?),
            Scheme::Http | Scheme::Unix => None,
        };
        Ok(Endpoint { address, tls, headers: Vec::new(), proxies: None })
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Goes through the proxies `proxies` names for its URL (see [`proxy`]).
    pub fn with_proxies(mut self, proxies: Arc<Proxies>) -> Endpoint {
        self.proxies = Some(proxies);
        self
    }

    /// Speaks TLS with `config` (on a `http://` or socket endpoint too: Docker's
    /// `docker_tls_enabled` turns its `http://` endpoint into HTTPS).
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Endpoint {
        self.tls = Some(config);
        self
    }

    /// Sends `name: value` with every request; a value that is no header value (control
    /// characters) is refused, naming `field`.
    pub fn with_header(
        mut self,
        field: &'static str,
        name: HeaderName,
        value: &str,
    ) -> Result<Endpoint, SectionError> {
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| SectionError::new(field, "holds characters no HTTP header may carry"))?;
        value.set_sensitive(true);
        self.headers.push((name, value));
        Ok(self)
    }

    /// `Authorization: Bearer <token>`.
    pub fn with_bearer(self, field: &'static str, token: &str) -> Result<Endpoint, SectionError> {
        self.with_header(field, AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// `Authorization: Basic ...` (HTTP basic authentication).
    pub fn with_basic_auth(
        self,
        field: &'static str,
        user: &str,
        password: &str,
    ) -> Result<Endpoint, SectionError> {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.with_header(field, AUTHORIZATION, &format!("Basic {credentials}"))
    }

    /// GETs the endpoint's own URL: the body of a 2xx answer, at most `MAX_BODY` bytes.
    /// Redirects are followed as Go's `http.Get` (plaintext and json discovery in gobetween)
    /// follows them: 301, 302, 303, 307 and 308 with a `Location`, at most
    /// [`MAX_REDIRECTS`] of them, to `http://` or `https://` URLs.
    pub async fn get(&self) -> Result<Bytes, String> {
        let mut hop: Option<Endpoint> = None;
        for _ in 0..=MAX_REDIRECTS {
            let at = hop.as_ref().unwrap_or(self);
            let path = &at.address.path;
            let (response, connection) = at.send(path).await?;
            if let Some(location) = redirect(&response) {
                hop = Some(at.redirected(&location)?);
                continue;
            }
            let response = at.successful(path, response).await?;
            return Ok(at.collect(path, response, connection).await?.body);
        }
        let url = self.address.url(&self.address.path);
        Err(format!("GET {url}: stopped after {MAX_REDIRECTS} redirects"))
    }

    /// GETs `path_and_query` (below the endpoint's path, see [`Address::join`]).
    pub async fn get_path(&self, path_and_query: &str) -> Result<Answer, String> {
        self.get_at(&self.address.join(path_and_query)).await
    }

    /// GETs `path_and_query` below the endpoint's path and returns the answer as a stream of
    /// lines, each at most `max_line` bytes. Returns once the answer's head is in.
    pub async fn stream(&self, path_and_query: &str, max_line: usize) -> Result<LineStream, String> {
        let path = self.address.join(path_and_query);
        let (response, connection) = self.request(&path).await?;
        Ok(LineStream::new(response.into_body(), connection, max_line, self.address.url(&path)))
    }

    async fn get_at(&self, path: &str) -> Result<Answer, String> {
        let (response, connection) = self.request(path).await?;
        self.collect(path, response, connection).await
    }

    /// The answer's headers and its body, at most `MAX_BODY` bytes.
    async fn collect(
        &self,
        path: &str,
        response: Response<Incoming>,
        _connection: Connection,
    ) -> Result<Answer, String> {
        let (head, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY).collect().await;
        let body = body.map(|b| b.to_bytes()).map_err(|e| self.fail("reading the answer of", path, &e))?;
        Ok(Answer { headers: head.headers, body })
    }

    /// Where a redirect from this endpoint's URL to `location` leads. Its headers (tokens)
    /// go along only to the same scheme, host and port; TLS to an `https` URL keeps this
    /// endpoint's settings if it speaks TLS, else verifies with the system's CAs.
    fn redirected(&self, location: &str) -> Result<Endpoint, String> {
        let here = self.address.url(&self.address.path);
        let bad = |why: String| format!("GET {here}: redirected to {location:?}: {why}");
        if self.address.host().is_none() {
            return Err(bad("a redirect from a unix socket is not followed".into()));
        }
        let mut next =
            url::Url::parse(&here).and_then(|u| u.join(location)).map_err(|e| bad(e.to_string()))?;
        next.set_fragment(None);
        let address = Address::parse(next.as_str(), &[Scheme::Http, Scheme::Https]).map_err(bad)?;
        let same_origin =
            address.scheme == self.address.scheme && address.authority == self.address.authority;
        let tls = match (address.scheme, &self.tls) {
            (Scheme::Https, Some(tls)) => Some(tls.clone()),
            (Scheme::Https, None) => Some(
                tls::client(&tls::Files::default(), &tls::Keys::same("endpoint"))
                    .map_err(|e| bad(e.message))?,
            ),
            _ => None,
        };
        let headers = if same_origin { self.headers.clone() } else { Vec::new() };
        Ok(Endpoint { address, tls, headers, proxies: self.proxies.clone() })
    }

    /// Connects, sends the GET and waits for the answer's head; a non-2xx status fails (see
    /// [`Endpoint::successful`]).
    async fn request(&self, path: &str) -> Result<(Response<Incoming>, Connection), String> {
        let (response, connection) = self.send(path).await?;
        Ok((self.successful(path, response).await?, connection))
    }

    /// Connects, sends the GET and waits for the answer's head, whatever its status.
    async fn send(&self, path: &str) -> Result<(Response<Incoming>, Connection), String> {
        let proxy = self.proxy().map_err(|e| self.fail("GET", path, &e))?;
        let io = self.connect(proxy).await.map_err(|e| match proxy {
            Some(proxy) => {
                self.fail("cannot connect to", path, &format!("(through {}) {e}", proxy.authority()))
            }
            None => self.fail("cannot connect to", path, &e),
        })?;
        let plain_proxy = self.forwarded_by(proxy);
        let target = match plain_proxy {
            Some(_) => self.address.url(path),
            None => path.to_string(),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.fail("GET", path, &e))?;
        let connection = Connection(tokio::spawn(async move {
            // Its errors show in the request's result.
            let _ = connection.await;
        }));
        let mut request = Request::get(target)
            .header(HOST, self.address.authority.as_str())
            .header(USER_AGENT, concat!("betwixt/", env!("CARGO_PKG_VERSION")));
        if let Some(authorization) = plain_proxy.and_then(Proxy::authorization) {
            request = request.header(PROXY_AUTHORIZATION, authorization);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| self.fail("GET", path, &e))?;
        let response = sender.send_request(request).await.map_err(|e| self.fail("GET", path, &e))?;
        Ok((response, connection))
    }

    /// The response if its status is 2xx; otherwise a failure with the start of its body
    /// (daemons explain themselves there).
    async fn successful(
        &self,
        path: &str,
        response: Response<Incoming>,
    ) -> Result<Response<Incoming>, String> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let start = Limited::new(response.into_body(), 4096).collect().await.map(|b| b.to_bytes());
        let start = start.map(|b| snippet(&b)).unwrap_or_default();
        let said = if start.is_empty() { String::new() } else { format!(": {start}") };
        Err(self.fail("GET", path, &format!("answered {status}{said}")))
    }

    /// The proxy this endpoint's requests go through, if any.
    fn proxy(&self) -> Result<Option<&Proxy>, String> {
        match (&self.proxies, &self.address.target) {
            (Some(proxies), Target::Tcp { host, port }) => {
                // TLS decides, not the scheme: Docker's `docker_tls_enabled` speaks it to an
                // `http://` address, as Go's client then speaks to `https://`.
                proxies.for_target(self.tls.is_some(), host, *port)
            }
            _ => Ok(None),
        }
    }

    /// The proxy that is sent the request itself, naming the whole URL and carrying the
    /// proxy's credentials: an HTTP proxy, for plain HTTP. Every other request goes through
    /// a [`tunnel`].
    fn forwarded_by<'p>(&self, proxy: Option<&'p Proxy>) -> Option<&'p Proxy> {
        proxy.filter(|proxy| proxy.kind == proxy::Kind::Http && self.tls.is_none())
    }

    async fn connect(&self, proxy: Option<&Proxy>) -> std::io::Result<Box<dyn Io>> {
        let stream: Box<dyn Io> = match (&self.address.target, proxy) {
            (Target::Tcp { host, port }, Some(proxy)) => match self.forwarded_by(Some(proxy)) {
                Some(_) => Box::new(TcpStream::connect((proxy.host.as_str(), proxy.port)).await?),
                None => Box::new(tunnel(proxy, host, *port).await?),
            },
            (Target::Tcp { host, port }, None) => Box::new(TcpStream::connect((host.as_str(), *port)).await?),
            (Target::Unix(path), _) => Box::new(UnixStream::connect(path).await?),
        };
        let Some(config) = &self.tls else { return Ok(stream) };
        // SNI and verification name the URL's host; a socket has none, so "localhost".
        let host = self.address.host().unwrap_or("localhost");
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await?;
        Ok(Box::new(tls))
    }

    fn fail(&self, what: &str, path: &str, e: &dyn std::fmt::Display) -> String {
        format!("{what} {}: {e}", self.address.url(path))
    }
}

/// The start of a body, printable, for a message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(ERROR_SNIPPET).collect();
    text.trim().to_string()
}

/// Where a redirect Go's client follows leads: a 301, 302, 303, 307 or 308 with a `Location`.
fn redirect(response: &Response<Incoming>) -> Option<String> {
    if !REDIRECTS.contains(&response.status().as_u16()) {
        return None;
    }
    response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(String::from)
}

/// A connection's task; dropping this closes the connection.
#[derive(Debug)]
struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A byte stream hyper can speak over: TCP, a unix socket, TLS over either.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

#[cfg(test)]
mod tests;
