//! Serving a router on the control runtime: one listener, optional TLS, HTTP/1.1 per connection.
//! Shared by the API and the metrics endpoint.

use crate::bind::resolve_bind;
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

/// A client that has not sent a whole request head by then is dropped, so idle or slow
/// connections cannot pile up on the control thread.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after an accept error such as EMFILE, so the control thread does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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

/// Accepts connections for as long as the runtime runs.
pub fn spawn(what: &'static str, listener: TcpListener, tls: Option<TlsAcceptor>, app: Router) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(what, stream, peer, tls.clone(), app.clone()));
                }
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
) {
    let service = TowerToHyperService::new(app);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
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
