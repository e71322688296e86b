//! Prometheus metrics (`[metrics]`): `GET /metrics` with gobetween's metric names (namespace
//! `gobetween`), the standard `process_*` and `promhttp_*` series a Go exporter such as
//! gobetween has, and betwixt's own (namespace `betwixt`). The classic text format is served
//! unless the scraper's `Accept` header asks for OpenMetrics.
//! Nothing is updated on the data path: every value is read from the control state at scrape time.

mod additions;
mod exposition;
mod gobetween;
mod negotiate;
mod process;

pub use exposition::Format;
pub use negotiate::{negotiate, Choice};

use crate::api::reply::ApiError;
use crate::api::serve;
use crate::bind::resolve_bind;
use crate::config::Config;
use crate::control::Control;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use exposition::Exposition;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Where metrics are served when `[metrics]` names no `bind` (or `""`), as in gobetween's
/// sample. gobetween itself then listens on Go's empty address, `:80`; the configuration warns.
pub const DEFAULT_BIND: &str = ":9284";

/// Scrapes of this endpoint, counted as Go's `promhttp.Handler` counts them: in flight
/// including the one being answered, and completed ones by status code once they are done.
#[derive(Debug, Default)]
struct Scrapes {
    in_flight: AtomicU64,
    completed: AtomicU64,
}

/// Holds one place in `in_flight` for the life of a scrape.
struct InFlight<'a>(&'a Scrapes);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Scrapes {
    fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    fn write(&self, e: &mut Exposition) {
        // Go's handler pre-creates the codes it may answer; betwixt only ever answers 200.
        let completed = self.completed.load(Relaxed);
        e.counters(
            "promhttp_metric_handler_requests",
            "Total number of scrapes by HTTP status code.",
            [("200", completed), ("500", 0), ("503", 0)]
                .map(|(code, n)| (vec![("code", code.to_string())], n)),
        );
        e.gauges(
            "promhttp_metric_handler_requests_in_flight",
            "Current number of scrapes being served.",
            [(Vec::new(), self.in_flight.load(Relaxed))],
        );
    }
}

/// The metrics endpoint's state: what it reports on and how often it was asked.
#[derive(Debug)]
pub struct Endpoint {
    control: Arc<Control>,
    scrapes: Scrapes,
}

impl Endpoint {
    pub fn new(control: Arc<Control>) -> Endpoint {
        Endpoint { control, scrapes: Scrapes::default() }
    }

    /// Every metric, as a scrape in `format` receives it.
    pub fn render(&self, format: Format) -> String {
        let mut e = Exposition::new(format);
        gobetween::write(&mut e, &self.control);
        additions::write(&mut e, &self.control);
        process::write(&mut e);
        self.scrapes.write(&mut e);
        e.finish()
    }
}

async fn scrape(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    let _in_flight = endpoint.scrapes.begin();
    let choice = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = endpoint.render(choice.format);
    // Counted once answered, so a scrape never sees itself among the completed ones.
    endpoint.scrapes.completed.fetch_add(1, Relaxed);
    (StatusCode::OK, [(header::CONTENT_TYPE, choice.content_type)], body).into_response()
}

/// The metrics endpoint's routes (`/metrics`), without a fallback: the listener serving them
/// says what else it serves.
fn router(control: Arc<Control>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(Arc::new(Endpoint::new(control)))
}

/// The address `[metrics]` listens on, when it is enabled.
pub fn bind(config: &Config) -> Option<String> {
    let metrics = config.metrics.as_ref().filter(|m| m.enabled)?;
    Some(metrics.bind.clone().filter(|b| !b.is_empty()).unwrap_or_else(|| DEFAULT_BIND.into()))
}

/// Whether `[metrics]` and `[profiler]` are both enabled on one address. gobetween served both
/// from Go's default handler table, so such a file started there (the second listener failed,
/// logged, and the first answered both paths); betwixt then serves both from one listener.
fn shares_profiler_address(config: &Config) -> bool {
    let (Some(metrics), Some(profiler)) = (bind(config), crate::profiler::bind(config.profiler.as_ref()))
    else {
        return false;
    };
    match (resolve_bind(&metrics), resolve_bind(&profiler)) {
        (Ok(a), Ok(b)) => a == b,
        _ => metrics == profiler,
    }
}

/// Starts the metrics endpoint when `[metrics] enabled`. When it shares the profiler's address,
/// nothing listens here: the answer is the routes for `profiler::start` to serve beside its
/// own. Must run inside the control runtime.
pub fn start(control: &Arc<Control>) -> Result<Option<Router>, String> {
    let config = control.base_config();
    let Some(bind) = bind(&config) else { return Ok(None) };
    if shares_profiler_address(&config) {
        return Ok(Some(router(control.clone())));
    }
    let listener = serve::listen(&bind).map_err(|e| format!("metrics: cannot listen on {bind}: {e}"))?;
    let addr = listener.local_addr().map_or(bind.clone(), |a| a.to_string());
    log::info!("metrics (GET /metrics): listening on {addr}");
    let app =
        router(control.clone()).fallback(|| async { ApiError::not_found("metrics are served at /metrics") });
    serve::spawn("metrics", listener, None, app);
    Ok(None)
}
