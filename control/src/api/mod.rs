//! The REST API (`[api]`): gobetween's endpoints served on the control thread, with optional
//! basic auth, CORS and HTTPS.

pub mod admission;
pub mod auth;
pub mod cors;
pub mod dashboard;
pub mod dump;
pub mod extract;
pub mod gofmt;
pub mod prepared;
pub mod reload;
pub mod reply;
pub mod routes;
pub mod serve;
pub mod stats;
pub mod tls;

use crate::balance::canonical_ip;
use crate::config::{Api, Config};
use crate::control::Control;
use admission::ConnectionLimits;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where the API listens when `[api]` names no `bind` (or `""`), as in gobetween's sample
/// configuration. gobetween itself then listens on Go's empty address, `:80` (`:443` with
/// `[api.tls]`); the configuration warns.
pub const DEFAULT_BIND: &str = ":8888";

/// The bounds `[api]` sets on its clients, with betwixt's defaults for what it leaves out.
pub fn limits(api: &Api) -> serve::Limits {
    let defaults = serve::Limits::default();
    serve::Limits {
        request_timeout: api.request_timeout.map_or(defaults.request_timeout, |t| t.as_limit()),
        connections: ConnectionLimits {
            total: api.max_connections.unwrap_or(defaults.connections.total),
            per_client: api.max_connections_per_client.unwrap_or(defaults.connections.per_client),
        },
    }
}

/// True when the API answers beyond this machine and asks for no password: anyone who reaches
/// the port can then create, change and delete servers.
pub fn open_to_everyone(addr: SocketAddr, api: &Api) -> bool {
    api.basic_auth.is_none() && !canonical_ip(addr.ip()).is_loopback()
}

/// The whole API as configured: routes, auth, CORS, JSON fallbacks.
pub fn router(control: Arc<Control>, api: &Api) -> Router {
    let timeout = limits(api).request_timeout;
    let credentials = api.basic_auth.as_ref().map(|pair| auth::Credentials::new(&pair.login, &pair.password));
    // Layered on each route's methods only: a path or method with no route is a plain 404
    // without authentication, as in gobetween.
    let guard = move |route: routes::Route| {
        let route = match timeout {
            // Inside authentication: nobody unauthenticated gets a body read.
            Some(timeout) => {
                route.route_layer(axum::middleware::from_fn_with_state(timeout, serve::read_body_within))
            }
            None => route,
        };
        match &credentials {
            Some(credentials) => {
                route.route_layer(axum::middleware::from_fn_with_state(credentials.clone(), auth::require))
            }
            None => route,
        }
    };
    let protected = routes::protected(control, guard);
    let app = routes::public().merge(protected).fallback(routes::not_found);
    if !api.cors {
        return app;
    }
    // Outermost, as gobetween's global middleware: preflights are answered before
    // authentication is asked for, and every answer (401 and 404 too) carries the headers.
    app.layer(axum::middleware::from_fn(cors::apply))
}

/// Starts the API when `[api] enabled`. Must run inside the control runtime; a bind or
/// certificate error is returned so that startup fails loudly.
pub fn start(control: &Arc<Control>) -> Result<(), String> {
    let Some(api) = control.base_config().api.clone().filter(|a| a.enabled) else {
        return Ok(());
    };
    let bind = api.bind.as_deref().filter(|b| !b.is_empty()).unwrap_or(DEFAULT_BIND);
    let tls = acceptor(&api)?;
    let listener = serve::listen(bind).map_err(|e| format!("api: cannot listen on {bind}: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr = listener.local_addr().map_err(|e| format!("api: cannot listen on {bind}: {e}"))?;
    log::info!("api ({scheme}): listening on {addr}");
    if open_to_everyone(addr, &api) {
        log::warn!(
            "api: listening on {addr} without [api.basic_auth]: anyone who can reach it can create and \
             delete servers; set basic_auth, or bind to 127.0.0.1"
        );
    }
    serve::spawn_with("api", listener, tls, router(control.clone(), &api), limits(&api));
    Ok(())
}

/// `[api.tls]`'s certificate and key, read as `start` reads them.
fn acceptor(api: &Api) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    api.tls.as_ref().map(tls::acceptor).transpose().map_err(|e| format!("api.tls: {e}"))
}

/// What `start` reads before it listens (`[api.tls]`), for `betwixt check`.
pub fn check(config: &Config) -> Result<(), String> {
    match config.api.as_ref().filter(|a| a.enabled) {
        Some(api) => acceptor(api).map(drop),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BasicAuth, GoDuration};

    #[test]
    fn open_only_beyond_loopback_without_auth() {
        let open = Api::default();
        let guarded = Api { basic_auth: Some(BasicAuth::default()), ..Api::default() };
        for (addr, exposed) in [
            ("127.0.0.1:8888", false),
            ("[::1]:8888", false),
            ("[::ffff:127.0.0.1]:1", false),
            ("0.0.0.0:8888", true),
            ("[::]:8888", true),
            ("192.0.2.1:8888", true),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(open_to_everyone(addr, &open), exposed, "{addr}");
            assert!(!open_to_everyone(addr, &guarded), "{addr}");
        }
    }

    #[test]
    fn limits_default_and_configured() {
        assert_eq!(limits(&Api::default()), serve::Limits::default());
        let api = Api {
            request_timeout: Some(GoDuration::ZERO),
            max_connections: Some(0),
            max_connections_per_client: Some(2),
            ..Api::default()
        };
        let limits = limits(&api);
        assert_eq!(limits.request_timeout, None, "\"0\" is no limit");
        assert_eq!(limits.connections, ConnectionLimits { total: 0, per_client: 2 });
    }
}
