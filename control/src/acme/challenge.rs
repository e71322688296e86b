//! The answers to the CA's challenges while an order is open.
//!
//! HTTP-01: a small HTTP/1 server on the control thread at `http_bind` answers
//! `GET /.well-known/acme-challenge/TOKEN` with the key authorization and everything else with
//! 404. Anyone can reach it, so it is bounded: `MAX_CONNECTIONS` at once (more are closed at
//! accept), `MAX_HEAD` bytes of request head, `REQUEST_TIME` per connection, one request per
//! connection.
//!
//! TLS-ALPN-01: the tls server's own listener answers a ClientHello offering ALPN `acme-tls/1`
//! with the host's challenge certificate (RFC 8737). The shards look it up through `ArcSwap`
//! loads only: no lock on their path.

use super::ACME_TLS_ALPN;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

const PREFIX: &str = "/.well-known/acme-challenge/";
/// Connections served at once; the CA makes a handful (several vantage points).
const MAX_CONNECTIONS: usize = 64;
/// The request head: the CA's is a few hundred bytes.
const MAX_HEAD: usize = 4096;
/// Everything one connection may take: reading the head and writing the answer.
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// The open challenges, by HTTP-01 token and by TLS-ALPN-01 host.
#[derive(Default)]
pub struct Challenges {
    http: ArcSwap<HashMap<String, String>>,
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Challenges({} http, {} tls-alpn)", self.http.load().len(), self.alpn.load().len())
    }
}

/// An answer put up for one challenge, taken down when this is dropped (the order ended,
/// however it ended).
pub struct Posted {
    challenges: Arc<Challenges>,
    http_token: Option<String>,
    alpn_host: Option<String>,
}

impl Drop for Posted {
    fn drop(&mut self) {
        if let Some(token) = &self.http_token {
            self.challenges.http.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.remove(token);
                map
            });
        }
        if let Some(host) = &self.alpn_host {
            self.challenges.alpn.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.remove(host);
                map
            });
        }
    }
}

impl Challenges {
    pub fn post_http(self: &Arc<Self>, token: &str, key_authorization: &str) -> Posted {
        self.http.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(token.to_string(), key_authorization.to_string());
            map
        });
        Posted { challenges: self.clone(), http_token: Some(token.to_string()), alpn_host: None }
    }

    /// Builds the TLS-ALPN-01 certificate for `host` (RFC 8737: the host as its only name, the
    /// SHA-256 of the key authorization in the critical acmeIdentifier extension) and serves it.
    pub fn post_alpn(
        self: &Arc<Self>,
        host: &str,
        digest: &[u8],
        provider: &CryptoProvider,
    ) -> Result<Posted, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| format!("no key for the challenge: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec![host.to_string()])
            .map_err(|e| format!("challenge certificate: {e}"))?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key).map_err(|e| format!("challenge certificate: {e}"))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        // Not `CertifiedKey::from_der`: its check parses the certificate, and webpki refuses the
        // critical acmeIdentifier extension this certificate exists for.
        let signer =
            provider.key_provider.load_private_key(der).map_err(|e| format!("challenge key: {e}"))?;
        let certified = Arc::new(CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signer));
        self.alpn.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(host.to_string(), certified.clone());
            map
        });
        Ok(Posted { challenges: self.clone(), http_token: None, alpn_host: Some(host.to_string()) })
    }

    fn http_answer(&self, token: &str) -> Option<String> {
        self.http.load().get(token).cloned()
    }
}

/// Whether a ClientHello asks for a TLS-ALPN-01 answer.
pub fn wants_challenge(hello: &ClientHello<'_>) -> bool {
    hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
}

/// The resolver of the tls server's second configuration, used only for handshakes offering
/// `acme-tls/1`: the challenge certificate of the name asked for, or none (the handshake fails).
#[derive(Debug)]
pub struct ChallengeResolver(pub Arc<Challenges>);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        self.0.alpn.load().get(&name).cloned()
    }
}

/// Serves HTTP-01 answers on `listener` until the task is aborted or a successor takes the
/// listener over (`upgrade`: it is offered as `acme`, as the API's is).
pub fn serve_http(listener: TcpListener, challenges: Arc<Challenges>) -> JoinHandle<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    crate::api::serve::spawn_accept_loop("acme", listener, move |stream, _| {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            return; // dropped: closed at once
        };
        let challenges = challenges.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REQUEST_TIME, answer(stream, &challenges)).await;
        });
    })
}

async fn answer(mut stream: TcpStream, challenges: &Challenges) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", PLAIN, "").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = std::str::from_utf8(line).unwrap_or("").split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if let Some(token) = path.strip_prefix(PREFIX) {
        return match challenges.http_answer(token).filter(|_| method == "GET") {
            Some(body) => respond(&mut stream, "200 OK", PLAIN, &body).await,
            None => respond(&mut stream, "404 Not Found", PLAIN, "").await,
        };
    }
    // Anything else is sent to HTTPS, as gobetween's listener (autocert's handler) does: it
    // owns port 80, and its users rely on it for the redirect.
    match (method, https_location(&head, path)) {
        ("GET" | "HEAD", Some(location)) => {
            let body = if method == "GET" {
                format!("<a href=\"{location}\">Found</a>.\n\n")
            } else {
                String::new()
            };
            let headers = format!("Location: {location}\r\nContent-Type: text/html; charset=utf-8\r\n");
            respond(&mut stream, "302 Found", &headers, &body).await
        }
        _ => respond(&mut stream, "400 Bad Request", PLAIN, "Use HTTPS\n").await,
    }
}

/// `https://HOST:443PATH` for a request's `Host` header and path, as autocert builds it (a port
/// in the header is replaced by 443, a host without one is kept as it is); `None` when the header
/// is missing or either holds what does not belong in a URL (the value is echoed to the client).
fn https_location(head: &[u8], path: &str) -> Option<String> {
    let host = head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host").then(|| value.trim())
    })?;
    let fits = |text: &str, extra: &str| {
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b))
    };
    if !fits(host, ".-_:[]") || !path.starts_with('/') || !fits(path, "/-._~%!$&'()*+,;=:@?") {
        return None;
    }
    // The port after the last colon, unless that colon is inside an IPv6 address's brackets.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') && (!name.starts_with('[') || name.ends_with(']')) => name,
        _ => return Some(format!("https://{host}{path}")),
    };
    Some(format!("https://{name}:443{path}"))
}

/// The `Content-Type` of the plain answers, as Go's `net/http` labels them (a 302 is HTML).
const PLAIN: &str = "Content-Type: text/plain; charset=utf-8\r\n";

/// Writes a whole answer and closes; `headers` (each ending in CRLF) include the content type.
async fn respond(stream: &mut TcpStream, status: &str, headers: &str, body: &str) -> std::io::Result<()> {
    let text = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_answers_tokens_and_bounds_the_head() {
        let challenges = Arc::new(Challenges::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve_http(listener, challenges.clone()));
        let ask = |request: Vec<u8>| async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let _ = stream.write_all(&request).await;
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply).await;
            reply
        };
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a.example.com\r\n\r\n").into_bytes();
        let posted = challenges.post_http("tok", "tok.thumb");
        let reply = ask(get("/.well-known/acme-challenge/tok")).await;
        assert!(reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("\r\n\r\ntok.thumb"), "{reply}");
        assert!(ask(get("/.well-known/acme-challenge/other")).await.starts_with("HTTP/1.1 404"));
        // Everything else goes to HTTPS, as autocert's handler sends it.
        let reply = ask(get("/some/page?x=1")).await;
        assert!(
            reply.starts_with(
                "HTTP/1.1 302 Found\r\nLocation: https://a.example.com/some/page?x=1\r\n\
                 Content-Type: text/html; charset=utf-8\r\n"
            ),
            "{reply}"
        );
        let reply = ask(b"HEAD / HTTP/1.1\r\nhost: a.example.com:8080\r\n\r\n".to_vec()).await;
        assert!(reply.contains("Location: https://a.example.com:443/\r\n"), "{reply}");
        assert!(ask(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()).await.starts_with("HTTP/1.1 400"));
        for bad in ["Host: a\"b\r\n", "Host: \r\n", ""] {
            let reply = ask(format!("GET / HTTP/1.1\r\n{bad}\r\n").into_bytes()).await;
            assert!(reply.starts_with("HTTP/1.1 400"), "{bad:?}: {reply}");
        }
        assert!(
            https_location(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n", "/").unwrap() == "https://[::1]:443/"
        );
        assert!(https_location(b"GET / HTTP/1.1\r\nHost: [::1]\r\n", "/").unwrap() == "https://[::1]/");
        drop(posted);
        assert!(ask(get("/.well-known/acme-challenge/tok")).await.starts_with("HTTP/1.1 404"));
        let huge = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 10_000]].concat();
        // Closed with a 431 (the rest unread may turn it into a reset first).
        let reply = ask(huge).await;
        assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 431"), "{reply}");
        server.abort();
    }
}
