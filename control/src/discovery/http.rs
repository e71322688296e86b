//! The HTTP GET that plaintext and json discovery make: `http://` only, one connection per
//! fetch, the body bounded in size. The runner bounds the whole exchange in time; dropping the
//! future closes the connection.

use super::SectionError;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use std::pin::pin;
use tokio::net::TcpStream;

/// Bodies beyond this fail the fetch: no useful backend list is that long.
pub const MAX_BODY: usize = 16 << 20;

/// A discovery endpoint: `http://host[:port][/path][?query]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Endpoint {
    pub fn parse(field: &'static str, text: &str) -> Result<Endpoint, SectionError> {
        let invalid = |why: &str| SectionError::new(field, format!("{why}: {text:?}"));
        if text.is_empty() {
            return Err(SectionError::new(field, "required: the http:// URL to fetch"));
        }
        let uri: Uri = text.parse().map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// URLs are supported"));
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
        Ok(Endpoint {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }

    /// GETs the endpoint: the body of a 2xx answer, at most `MAX_BODY` bytes.
    pub async fn get(&self) -> Result<Bytes, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!("{what} http://{}{}: {e}", self.authority, self.path)
        };
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail("cannot connect to", &e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail("GET", &e))?;
        let request = Request::get(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(USER_AGENT, concat!("betwixt/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail("GET", &e))?;
        let mut exchange = pin!(async {
            let response = sender.send_request(request).await.map_err(|e| fail("GET", &e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(fail("GET", &format!("answered {status}")));
            }
            let body = Limited::new(response.into_body(), MAX_BODY).collect().await;
            body.map(|b| b.to_bytes()).map_err(|e| fail("reading the answer of", &e))
        });
        let mut connection = pin!(connection);
        tokio::select! {
            outcome = &mut exchange => outcome,
            // The connection may finish before the last of the body is taken: then only the
            // exchange is left to finish.
            ended = &mut connection => match ended {
                Ok(()) => exchange.await,
                Err(e) => Err(fail("GET", &e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_read_as_http_urls() {
        let e = Endpoint::parse("x", "http://127.0.0.1:8080/list?a=1").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("127.0.0.1", 8080, "/list?a=1"));
        let e = Endpoint::parse("x", "http://[::1]/").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.authority.as_str()), ("::1", 80, "[::1]"));
        assert_eq!(Endpoint::parse("x", "http://example.com").unwrap().path, "/");
        for bad in ["", "https://example.com/", "example.com", "ftp://x/", "http://u:p@x/", "http:///x"] {
            assert!(Endpoint::parse("x", bad).is_err(), "{bad}");
        }
    }
}
