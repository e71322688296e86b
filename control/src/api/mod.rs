//! The REST API (`[api]`): gobetween's endpoints served on the control thread, with optional
//! basic auth, CORS and HTTPS.

pub mod auth;
pub mod reply;
pub mod routes;
pub mod serve;
pub mod stats;
pub mod tls;

use crate::config::Api;
use crate::control::Control;
use axum::http::{header, Method};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{Any, CorsLayer};

/// Where the API listens when `[api]` names no `bind`, as in gobetween's sample configuration.
pub const DEFAULT_BIND: &str = ":8888";

/// How long browsers may cache a CORS preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// The whole API as configured: routes, auth, CORS, JSON fallbacks.
pub fn router(control: Arc<Control>, api: &Api) -> Router {
    let mut protected = routes::protected(control);
    if let Some(pair) = &api.basic_auth {
        let credentials = auth::Credentials::new(&pair.login, &pair.password);
        protected = protected.layer(axum::middleware::from_fn_with_state(credentials, auth::require));
    }
    let app = routes::public().merge(protected).fallback(routes::not_found);
    if !api.cors {
        return app;
    }
    // Outermost, so that preflight requests are answered before authentication is asked for.
    app.layer(
        CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(CORS_MAX_AGE),
    )
}

/// Starts the API when `[api] enabled`. Must run inside the control runtime; a bind or
/// certificate error is returned so that startup fails loudly.
pub fn start(control: &Arc<Control>) -> Result<(), String> {
    let Some(api) = control.base_config().api.clone().filter(|a| a.enabled) else {
        return Ok(());
    };
    let bind = api.bind.as_deref().unwrap_or(DEFAULT_BIND);
    let tls = api.tls.as_ref().map(tls::acceptor).transpose().map_err(|e| format!("api.tls: {e}"))?;
    let listener = serve::listen(bind).map_err(|e| format!("api: cannot listen on {bind}: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr = listener.local_addr().map_or(bind.to_string(), |a| a.to_string());
    log::info!("api ({scheme}): listening on {addr}");
    serve::spawn("api", listener, tls, router(control.clone(), &api));
    Ok(())
}
