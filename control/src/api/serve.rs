//! Serving a router on the control runtime: one listener, optional TLS, HTTP/1.1 per connection.
//! Shared by the API and the metrics endpoint, with the same bounds on what a client may hold:
//! connections (in all and per client address), and time to send a request.

use super::admission::{Admission, ConnectionLimits};
use super::reply::ApiError;
use crate::bind::resolve_bind;
use crate::spare_fd;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
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

/// Binds a gobetween bind string (`":8888"` = every interface), or takes the listener a
/// predecessor handed over for it (`upgrade`). Must run inside the runtime.
pub fn listen(bind: &str) -> io::Result<TcpListener> {
    let addr = resolve_bind(bind)?;
    if let Some(inherited) = crate::upgrade::take_http(addr) {
        inherited.set_nonblocking(true)?;
        return TcpListener::from_std(inherited);
    }
    TcpListener::from_std(crate::bind::http_listener(addr)?)
}

/// Accepts connections for as long as the runtime runs, with the default limits.
pub fn spawn(what: &'static str, listener: TcpListener, tls: Option<TlsAcceptor>, app: Router) {
    spawn_with(what, listener, tls, app, Limits::default());
}

/// The listeners accepting now, by name, for a successor to take over (`upgrade`).
static ACCEPTING: Mutex<Vec<(&'static str, RawFd)>> = Mutex::new(Vec::new());

/// Set once a successor has taken the listeners over: every accept loop ends.
static STOP: OnceLock<watch::Sender<bool>> = OnceLock::new();

fn stop_signal() -> &'static watch::Sender<bool> {
    STOP.get_or_init(|| watch::channel(false).0)
}

fn accepting() -> MutexGuard<'static, Vec<(&'static str, RawFd)>> {
    ACCEPTING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Duplicates of the listeners accepting now, named, for a successor.
pub fn handed_listeners() -> io::Result<Vec<(&'static str, OwnedFd)>> {
    // Under the lock an accept loop takes before it drops its listener: every fd is still open.
    accepting().iter().map(|&(what, fd)| Ok((what, crate::upgrade::dup(fd)?))).collect()
}

/// Ends every accept loop (a successor accepts from here on); requests in progress finish.
pub fn stop_accepting() {
    stop_signal().send_replace(true);
}

/// Accepts connections for as long as the runtime runs, or until `stop_accepting`. A
/// connection over a limit is closed at once, before any byte is read from it.
pub fn spawn_with(
    what: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
) {
    let admission = Admission::new(limits.connections);
    spawn_accept_loop(what, listener, move |stream, peer| match admission.admit(peer.ip()) {
        Some(place) => {
            let served = connection(what, stream, peer, tls.clone(), app.clone(), limits);
            tokio::spawn(async move {
                served.await;
                drop(place);
            });
        }
        None => log::debug!("{what}: connection from {peer} refused: too many connections"),
    });
}

/// A listener offered to a successor (`upgrade`) for as long as it is held: named in
/// `ACCEPTING` until dropped, which takes it out under the lock before the socket closes.
struct Offered {
    what: &'static str,
    listener: TcpListener,
}

impl Offered {
    fn new(what: &'static str, listener: TcpListener) -> Offered {
        accepting().push((what, listener.as_raw_fd()));
        Offered { what, listener }
    }
}

impl Drop for Offered {
    fn drop(&mut self) {
        let fd = self.listener.as_raw_fd();
        accepting().retain(|&(_, open)| open != fd);
        log::info!("{}: no longer accepting", self.what);
    }
}

/// Accepts on `listener` until a successor takes the listeners over (`stop_accepting`) or the
/// task is aborted, handing each connection to `serve`; an accept error (out of descriptors)
/// is logged and waited out. The listener is offered to a successor as `what` meanwhile: the
/// API, metrics and ACME's HTTP-01 responder all accept here.
pub fn spawn_accept_loop(
    what: &'static str,
    listener: TcpListener,
    mut serve: impl FnMut(TcpStream, SocketAddr) + Send + 'static,
) -> JoinHandle<()> {
    let offered = Offered::new(what, listener);
    let mut stop = stop_signal().subscribe();
    tokio::spawn(async move {
        spare_fd::keep();
        loop {
            let accepted = tokio::select! {
                accepted = offered.listener.accept() => accepted,
                // Dropping a pending accept loses no connection: it waits for readiness only.
                _ = stop.wait_for(|&stop| stop) => break,
            };
            match accepted {
                Ok((stream, peer)) => serve(stream, peer),
                Err(e) => {
                    // Out of descriptors, the clients waiting in the queue are refused rather
                    // than left hanging there, as the shards do (see spare_fd).
                    let refused = spare_fd::refuse_if_exhausted(&e, offered.listener.as_raw_fd());
                    // EMFILE repeats every backoff for as long as it lasts: a bounded log.
                    crate::log_limited!(log::Level::Warn, "{what}: accept failed: {e}{refused}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    })
}

async fn connection(
    what: &'static str,
    stream: TcpStream,
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
