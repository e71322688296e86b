//! Prometheus metrics (`[metrics]`): `GET /metrics` in the text exposition format, with
//! gobetween's metric names (namespace `gobetween`) and betwixt's own (namespace `betwixt`).
//! Nothing is updated on the data path: every value is read from the control state at scrape time.

mod additions;
mod family;
mod gobetween;

use crate::api::reply::{text, ApiError};
use crate::api::serve;
use crate::control::Control;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Where metrics are served when `[metrics]` names no `bind`, as in gobetween's sample.
pub const DEFAULT_BIND: &str = ":9284";

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn registry(control: Arc<Control>) -> Registry {
    let mut registry = Registry::default();
    registry
        .sub_registry_with_prefix("gobetween")
        .register_collector(Box::new(gobetween::Compatible(control.clone())));
    registry.sub_registry_with_prefix("betwixt").register_collector(Box::new(additions::Additions(control)));
    registry
}

/// Renders every metric as the scrape endpoint would.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Result<Response, ApiError> {
    let body = render(&registry)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics"))?;
    Ok(text(StatusCode::OK, CONTENT_TYPE, body))
}

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry(control)))
        .fallback(|| async { ApiError::not_found("metrics are served at /metrics") })
}

/// Starts the metrics endpoint when `[metrics] enabled`. Must run inside the control runtime.
pub fn start(control: &Arc<Control>) -> Result<(), String> {
    let Some(metrics) = control.base_config().metrics.clone().filter(|m| m.enabled) else {
        return Ok(());
    };
    let bind = metrics.bind.as_deref().unwrap_or(DEFAULT_BIND);
    let listener = serve::listen(bind).map_err(|e| format!("metrics: cannot listen on {bind}: {e}"))?;
    let addr = listener.local_addr().map_or(bind.to_string(), |a| a.to_string());
    log::info!("metrics (GET /metrics): listening on {addr}");
    serve::spawn("metrics", listener, None, router(control.clone()));
    Ok(())
}
