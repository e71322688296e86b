//! The endpoints, with gobetween's paths, methods and JSON field names.

use super::reply::{json, text, ApiError};
use super::stats::ServerStats;
use crate::config::validate::server_name;
use crate::config::{
    enforce_strict, parse_as, render, ConfigError, DiscoveryKind, Format, GoDuration, HealthcheckKind, Server,
};
use crate::control::{Control, ControlError};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

type Shared = State<Arc<Control>>;

/// Every endpoint that needs authentication when `[api.basic_auth]` is set.
pub fn protected(control: Arc<Control>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/dump", get(dump))
        .route("/servers", get(list))
        .route("/servers/{name}", get(show).post(create).delete(remove))
        .route("/servers/{name}/stats", get(stats))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(control)
}

/// Endpoints open to anyone, as in gobetween: a liveness probe.
pub fn public() -> Router {
    Router::new().route("/ping", get(ping)).method_not_allowed_fallback(method_not_allowed)
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

async fn ping() -> Response {
    text(StatusCode::OK, "text/plain; charset=utf-8", "OK".into())
}

#[derive(Serialize)]
struct Info<'a> {
    pid: u32,
    time: String,
    #[serde(rename = "startTime")]
    start_time: String,
    uptime: String,
    version: &'static str,
    configuration: Source<'a>,
}

#[derive(Serialize)]
struct Source<'a> {
    kind: &'a str,
    path: &'a str,
}

async fn root(State(control): Shared) -> Response {
    let now = SystemTime::now();
    let uptime = now.duration_since(control.started).unwrap_or_default();
    let info = Info {
        pid: std::process::id(),
        time: humantime::format_rfc3339_millis(now).to_string(),
        start_time: humantime::format_rfc3339_millis(control.started).to_string(),
        uptime: GoDuration(Duration::from_millis(uptime.as_millis() as u64)).to_string(),
        version: env!("CARGO_PKG_VERSION"),
        configuration: Source { kind: &control.source.kind, path: &control.source.path },
    };
    json(StatusCode::OK, &info)
}

#[derive(Deserialize)]
struct DumpQuery {
    format: Option<String>,
}

/// What `/dump` writes instead of the basic-auth password: a dump is shared more widely than
/// the file it came from. It still parses, and says plainly that it is not the password.
pub const MASKED: &str = "********";

async fn dump(State(control): Shared, Query(query): Query<DumpQuery>) -> Result<Response, ApiError> {
    let format = Format::parse(query.format.as_deref().unwrap_or("toml")).map_err(ApiError::bad_request)?;
    let content_type = match format {
        Format::Toml => "application/toml; charset=utf-8",
        Format::Json => "application/json; charset=utf-8",
    };
    let mut config = control.dump();
    if let Some(auth) = config.api.as_mut().and_then(|api| api.basic_auth.as_mut()) {
        auth.password = MASKED.to_string();
    }
    Ok(text(StatusCode::OK, content_type, render(&config, format)))
}

/// A server's section with `[defaults]` folded in, as gobetween lists it.
fn effective(control: &Control, config: &Server) -> Server {
    config.with_defaults(control.base_config().defaults.as_ref())
}

async fn list(State(control): Shared) -> Response {
    let servers: BTreeMap<String, Server> =
        control.servers().iter().map(|h| (h.name.clone(), effective(&control, &h.config))).collect();
    json(StatusCode::OK, &servers)
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("server {name:?} not found"))
}

async fn show(State(control): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let server = control.server(&name).ok_or_else(|| unknown(&name))?;
    Ok(json(StatusCode::OK, &effective(&control, &server.config)))
}

async fn stats(State(control): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let server = control.server(&name).ok_or_else(|| unknown(&name))?;
    Ok(json(StatusCode::OK, &ServerStats::of(&server, &control.rates)))
}

async fn create(State(control): Shared, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    server_name(&name).map_err(|e| ApiError::bad_request(format!("invalid server name: {}", e.message)))?;
    let body = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    let invalid = |e: ConfigError| ApiError::bad_request(format!("invalid server config: {e}"));
    let (server, mut warnings): (Server, _) = parse_as(body, Format::Json).map_err(invalid)?;
    enforce_strict(&warnings, control.strict()).map_err(invalid)?;
    let allow_exec = control.base_config().api.as_ref().and_then(|api| api.allow_exec).unwrap_or(false);
    if let (Some(what), false) = (runs_commands(&server), allow_exec) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what} would run commands as betwixt's user; servers created through the API may not, unless [api] allow_exec = true"),
        ));
    }
    let (_, more) = control.add_server(&name, server).map_err(|e| match e {
        ControlError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        ControlError::NotFound(_) => ApiError::not_found(e.to_string()),
        ControlError::Invalid(_) => ApiError::bad_request(format!("invalid server config: {e}")),
        ControlError::Bind(_, ref io) if io.kind() == std::io::ErrorKind::AddrInUse => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        ControlError::Bind(..) => ApiError::bad_request(e.to_string()),
        ControlError::ShuttingDown => shutting_down(),
    })?;
    warnings.extend(more);
    for warning in warnings {
        log::warn!("server {name}: {warning}");
    }
    Ok(json(StatusCode::OK, &()))
}

async fn remove(State(control): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    control.remove_server(&name).map_err(|e| match e {
        ControlError::ShuttingDown => shutting_down(),
        _ => unknown(&name),
    })?;
    Ok(json(StatusCode::OK, &()))
}

/// Once shutdown has begun, servers are neither added nor removed.
fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ControlError::ShuttingDown.to_string())
}

/// The part of a server section that makes betwixt run commands, if any.
fn runs_commands(server: &Server) -> Option<&'static str> {
    if server.healthcheck.as_ref().is_some_and(|check| check.kind == HealthcheckKind::Exec) {
        Some("healthcheck kind \"exec\"")
    } else if server.discovery.kind == DiscoveryKind::Exec {
        Some("discovery kind \"exec\"")
    } else {
        None
    }
}
