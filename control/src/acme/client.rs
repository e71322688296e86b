//! The HTTPS client `instant-acme` sends its requests through: HTTP/1.1 over rustls (ring),
//! trusting `root_ca_cert_path` or the system's CAs, one connection per request (an order is
//! a dozen requests, minutes or months apart), through the environment's `HTTPS_PROXY` as
//! Go's client goes. Each request is bounded in time and its answer in size, so a slow or
//! hostile directory cannot hold the control thread's task forever nor fill its memory.

use crate::discovery::http::{tunnel, Proxies};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Connect, handshake, request and answer together.
const REQUEST_TIME: Duration = Duration::from_secs(30);
/// An answer's body: directory objects, orders and certificate chains are a few KiB.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
pub struct DirectoryClient {
    tls: TlsConnector,
}

impl DirectoryClient {
    pub fn new(roots: rustls::RootCertStore) -> Result<DirectoryClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(DirectoryClient { tls: TlsConnector::from(Arc::new(config)) })
    }
}

fn other(message: impl Into<String>) -> Error {
    Error::Other(message.into().into())
}

impl HttpClient for DirectoryClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let target = req.uri().to_string();
            tokio::time::timeout(REQUEST_TIME, send(tls, req))
                .await
                .unwrap_or_else(|_| Err(other(format!("{target}: no answer within {REQUEST_TIME:?}"))))
        })
    }
}

/// A connection to the directory's `host:port`: through `HTTPS_PROXY` where the environment
/// names one for it, as Go's default client (gobetween's `autocert`) goes, else directly.
async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let proxies = Proxies::from_env();
    let tcp = match proxies.for_target(true, host, port)? {
        Some(proxy) => {
            tunnel(proxy, host, port).await.map_err(|e| format!("proxy {}: {e}", proxy.authority()))?
        }
        None => TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?,
    };
    Ok(tcp)
}

async fn send(tls: TlsConnector, mut req: Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, Error> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(other(format!("{uri}: only https:// is used")));
    }
    let authority = uri.authority().ok_or_else(|| other(format!("{uri}: no host")))?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(443);
    let tcp = connect(&host, port).await.map_err(|e| other(format!("{uri}: {e}")))?;
    let name = ServerName::try_from(host).map_err(|e| other(format!("{uri}: {e}")))?;
    let stream = tls.connect(name, tcp).await.map_err(|e| other(format!("{uri}: TLS: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| other(format!("{uri}: {e}")))?;
    // Ends when the answer has been read and `sender` dropped, or with the request's timeout.
    let driver = tokio::spawn(async move {
        let _ = tokio::time::timeout(REQUEST_TIME, connection).await;
    });
    // HTTP/1.1 wants the path in the request line and the host in its header.
    *req.uri_mut() =
        uri.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|_| other("bad path"))?;
    if let Ok(value) = authority.as_str().parse() {
        req.headers_mut().insert(hyper::header::HOST, value);
    }
    let result = async {
        let answer = sender.send_request(req).await.map_err(|e| other(format!("{uri}: {e}")))?;
        let (parts, body) = answer.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| other(format!("{uri}: answer: {e}")))?
            .to_bytes();
        Ok(BytesResponse::from(Response::from_parts(parts, Full::new(body))))
    }
    .await;
    drop(sender);
    driver.abort();
    result
}
