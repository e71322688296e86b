//! Serving a router on the control runtime: one listener, optional TLS, HTTP/1.1 per connection.
//! Shared by the API and the metrics endpoint, with the same bounds on what a client may hold:
//! connections (in all and per client address), and time to send a request.

use super::admission::{Admission, ConnectionLimits};
use super::reply::ApiError;
use crate::bind::resolve_bind;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A TLS client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error such as EMFILE, so the control thread does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Largest request body read (a server section), as axum's default limit.
pub const MAX_BODY: usize = 2 << 20;

/// What a listener allows its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's head, and then again its body (`read_body_within`); `None`
    /// waits for ever. Idle keep-alive connections are closed after it too.
    pub request_timeout: Option<Duration>,
    pub connections: ConnectionLimits,
}

impl Limits {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;
    pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u32 = 16;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_timeout: Some(Limits::DEFAULT_REQUEST_TIMEOUT),
            connections: ConnectionLimits {
                total: Limits::DEFAULT_MAX_CONNECTIONS,
                per_client: Limits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            },
        }
    }
}

/// Binds a gobetween bind string (`":8888"` = every interface). Must run inside the runtime.
pub fn listen(bind: &str) -> io::Result<TcpListener> {
    let addr = resolve_bind(bind)?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections for as long as the runtime runs, with the default limits.
pub fn spawn(what: &'static str, listener: TcpListener, tls: Option<TlsAcceptor>, app: Router) {
    spawn_with(what, listener, tls, app, Limits::default());
}

/// Accepts connections for as long as the runtime runs. A connection over a limit is closed at
/// once, before any byte is read from it.
pub fn spawn_with(
    what: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
) {
    let admission = Admission::new(limits.connections);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match admission.admit(peer.ip()) {
                    Some(place) => {
                        let served = connection(what, stream, peer, tls.clone(), app.clone(), limits);
                        tokio::spawn(async move {
                            served.await;
                            drop(place);
                        });
                    }
                    None => log::debug!("{what}: connection from {peer} refused: too many connections"),
                },
                Err(e) => {
                    log::warn!("{what}: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
}

async fn connection(
    what: &'static str,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
) {
    let service = TowerToHyperService::new(app);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new());
    if let Some(timeout) = limits.request_timeout {
        // Runs from the moment a request head is awaited: a slow head, and an idle keep-alive
        // connection, are both closed after it.
        http.header_read_timeout(timeout);
    }
    let served = match tls {
        None => http.serve_connection(TokioIo::new(stream), service).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => http.serve_connection(TokioIo::new(stream), service).await,
            Ok(Err(e)) => return log::debug!("{what}: TLS handshake with {peer} failed: {e}"),
            Err(_) => return log::debug!("{what}: TLS handshake with {peer} timed out"),
        },
    };
    if let Err(e) = served {
        log::debug!("{what}: connection from {peer}: {e}");
    }
}

/// Middleware for routes that read a body: reads the whole body before the handler runs, within
/// `timeout`. A client sending its body slowly, or not at all, is answered 408 and its
/// connection closed, instead of holding it for as long as it likes. Layer it inside
/// authentication, so that only an authenticated client gets a body read at all.
pub async fn read_body_within(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(e)) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("cannot read request body: {e}"))
            .into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {}", crate::config::GoDuration(timeout)),
        )
        .into_response(),
    }
}
