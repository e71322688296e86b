//! The endpoints, with gobetween's paths, methods, JSON field names and status codes, and
//! betwixt's draining additions.

use super::dashboard;
use super::extract::{Params, QueryParams};
use super::gofmt;
use super::prepared::Prepared;
use super::reply::{json, page_not_found, text, ApiError, TEXT};
use super::stats::ServerStats;
use crate::backend::split_host_port;
use crate::config::depth::check_json_depth;
use crate::config::repeated::first_value_end;
use crate::config::validate::server_name;
use crate::config::{
    duration, enforce_strict, parse_as, ConfigError, ConfigWarning, DiscoveryKind, Format, GoDuration,
    HealthcheckKind, Server,
};
use crate::control::{Control, ControlError, Drain};
use crate::server::ServerHandle;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

type Shared = State<Arc<Control>>;

/// One path's methods.
pub type Route = MethodRouter<Arc<Control>>;

/// Every endpoint that needs authentication when `[api.basic_auth]` is set; `guard` adds it
/// (and the body-read bound) to each path's methods.
pub fn protected(control: Arc<Control>, guard: impl Fn(Route) -> Route) -> Router {
    Router::new()
        .route("/", guard(get(root)))
        .route(dashboard::PAGE_PATH, guard(get(dashboard::page)))
        .route(dashboard::SCRIPT_PATH, guard(get(dashboard::script)))
        .route(dashboard::STYLE_PATH, guard(get(dashboard::style)))
        .route("/dump", guard(get(dump)))
        .route("/servers", guard(get(list)))
        .route("/servers/{name}", guard(get(show).post(create).delete(remove)))
        .route("/servers/{name}/stats", guard(get(stats)))
        .route("/servers/{name}/backends/{backend}/drain", guard(post(drain_backend).delete(undrain_backend)))
        .route("/reload", guard(post(super::reload::reload)))
        .route("/config", guard(put(super::reload::put_config)))
        .method_not_allowed_fallback(not_found)
        .with_state(control)
}

/// Endpoints open to anyone, as in gobetween: a liveness probe.
pub fn public() -> Router {
    Router::new().route("/ping", get(ping)).method_not_allowed_fallback(not_found)
}

/// A path, or a method, with no route: gobetween (gin) answers both with a plain 404, except
/// that a path with a trailing slash is redirected to the route without it (`301` for `GET`,
/// `307` otherwise, as gin's `RedirectTrailingSlash`).
pub async fn not_found(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let trimmed = path.strip_suffix('/').filter(|p| is_route(&method, p));
    let Some(trimmed) = trimmed else { return page_not_found() };
    let status =
        if method == Method::GET { StatusCode::MOVED_PERMANENTLY } else { StatusCode::TEMPORARY_REDIRECT };
    let location = match uri.query() {
        Some(query) => format!("{trimmed}?{query}"),
        None => trimmed.to_string(),
    };
    match HeaderValue::try_from(location) {
        Ok(location) => (status, [(header::LOCATION, location)]).into_response(),
        Err(_) => page_not_found(),
    }
}

/// Whether gobetween has a route for `method` on `path`.
pub(crate) fn is_route(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let get = method == Method::GET;
    match segments[..] {
        ["ping" | "dump" | "servers"] => get,
        ["servers", name] => !name.is_empty() && (get || method == Method::POST || method == Method::DELETE),
        ["servers", name, "stats"] => !name.is_empty() && get,
        _ => false,
    }
}

async fn ping() -> Response {
    text(StatusCode::OK, TEXT, "OK".into())
}

/// `GET /`, keys in gobetween's (sorted) order.
#[derive(Serialize)]
struct Info<'a> {
    configuration: Source<'a>,
    /// betwixt: the last reload's time, cause and result; left out before the first, so that
    /// until then the answer has gobetween's keys only.
    #[serde(rename = "lastReload", skip_serializing_if = "Option::is_none")]
    last_reload: Option<LastReload>,
    pid: u32,
    #[serde(rename = "startTime")]
    start_time: String,
    time: String,
    uptime: String,
    version: &'static str,
}

/// `GET /`'s `lastReload`.
#[derive(Serialize)]
struct LastReload {
    time: String,
    trigger: String,
    /// `ok` or `rejected`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<crate::reload::Summary>,
    /// When a reload last succeeded (this one or an earlier one).
    #[serde(rename = "lastSuccess")]
    last_success: Option<String>,
}

impl LastReload {
    fn of(control: &Control) -> Option<LastReload> {
        let last = control.reload.last()?;
        let (result, error, summary) = match last.result {
            Ok(summary) => ("ok", None, Some(summary)),
            Err(reason) => ("rejected", Some(reason), None),
        };
        Some(LastReload {
            time: gofmt::rfc3339_local(last.at),
            trigger: last.trigger,
            result,
            error,
            summary,
            last_success: control.reload.last_success().map(gofmt::rfc3339_local),
        })
    }
}

/// Where the configuration came from, with gobetween's fields for each kind.
#[derive(Serialize)]
#[serde(untagged)]
enum Source<'a> {
    File { kind: &'a str, path: &'a str },
    Url { kind: &'a str, url: &'a str },
    Consul { kind: &'a str, host: &'a str, key: &'a str },
}

impl<'a> Source<'a> {
    fn of(source: &'a crate::control::ConfigSource) -> Source<'a> {
        let kind = source.kind.as_str();
        match kind {
            "url" => Source::Url { kind, url: &source.path },
            "consul" => {
                let (host, key) = source.consul_parts();
                Source::Consul { kind, host, key }
            }
            _ => Source::File { kind, path: &source.path },
        }
    }
}

/// `GET /`: gobetween's JSON, or the dashboard for a browser that asks for a page.
async fn root(State(control): Shared, headers: HeaderMap) -> Response {
    let mut response = if dashboard::wants_page(&headers) { dashboard::page().await } else { info(&control) };
    // One URL, two representations: caches must keep them apart.
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn info(control: &Control) -> Response {
    let now = SystemTime::now();
    let info = Info {
        configuration: Source::of(&control.source),
        last_reload: LastReload::of(control),
        pid: std::process::id(),
        start_time: gofmt::rfc3339_local(control.started),
        time: gofmt::rfc3339_local(now),
        uptime: gofmt::duration(now.duration_since(control.started).unwrap_or_default()),
        version: env!("CARGO_PKG_VERSION"),
    };
    json(StatusCode::OK, &info)
}

#[derive(Deserialize)]
struct DumpQuery {
    format: Option<String>,
}

/// `GET /dump`: plain text in both formats, as gobetween serves it. An unknown format is the
/// caller's mistake: 400 with gobetween's message (gobetween answers 500, which says the
/// server failed and makes clients and API checkers retry or alarm).
async fn dump(
    State(control): Shared,
    QueryParams(query): QueryParams<DumpQuery>,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref().unwrap_or("toml") {
        "toml" => Format::Toml,
        "json" => Format::Json,
        other => return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("Unknown format {other}"))),
    };
    let servers = sections(&control.servers());
    let dump = super::dump::render(&control.base_config(), &servers, format)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(text(StatusCode::OK, TEXT, dump))
}

/// The running servers' names and sections, read once (a reload may swap them meanwhile).
fn sections(servers: &[Arc<ServerHandle>]) -> Vec<(String, Arc<Server>)> {
    servers.iter().map(|h| (h.name.clone(), h.config())).collect()
}

/// `GET /servers`: every running server's configuration, by name, as gobetween shows it.
async fn list(State(control): Shared) -> Response {
    let servers = sections(&control.servers());
    let base = control.base_config();
    let defaults = base.defaults.as_ref();
    let prepared: BTreeMap<&str, Prepared> =
        servers.iter().map(|(name, config)| (name.as_str(), Prepared::of(config, defaults))).collect();
    json(StatusCode::OK, &prepared)
}

/// `GET /servers/NAME`; an unknown name answers `null`, as in gobetween.
async fn show(State(control): Shared, Params(name): Params<String>) -> Response {
    let config = control.server(&name).map(|server| server.config());
    let base = control.base_config();
    json(StatusCode::OK, &config.as_deref().map(|config| Prepared::of(config, base.defaults.as_ref())))
}

/// `GET /servers/NAME/stats`; an unknown name answers `null`, as in gobetween.
async fn stats(State(control): Shared, Params(name): Params<String>) -> Response {
    let stats = control.server(&name).map(|server| ServerStats::of(&server, &control.rates));
    json(StatusCode::OK, &stats)
}

/// `POST /servers/NAME`: 400 for a body that cannot be decoded into a server (not JSON, or
/// JSON of the wrong type), 409 for every server that cannot be created (as gobetween answers),
/// 403 for one that would run commands without `[api] allow_exec`, 503 during shutdown.
async fn create(
    State(control): Shared,
    Params(name): Params<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (server, mut warnings) = read_server(&name, &body, control.strict())?;
    let allow_exec = control.base_config().api.as_ref().and_then(|api| api.allow_exec).unwrap_or(false);
    if let (Some(what), false) = (runs_commands(&server), allow_exec) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what} would run commands as betwixt's user; servers created through the API may not, unless [api] allow_exec = true"),
        ));
    }
    let (_, more) = control.add_server(&name, server).map_err(|e| match e {
        ControlError::ShuttingDown => shutting_down(),
        ControlError::Invalid(_) => ApiError::conflict(format!("invalid server config: {e}")),
        _ => ApiError::conflict(e.to_string()),
    })?;
    warnings.extend(more);
    for warning in warnings {
        log::warn!("server {name}: {warning}");
    }
    Ok(json(StatusCode::OK, &()))
}

/// The server section a `POST /servers/NAME` body holds, with its warnings (refused in strict
/// mode), before the control plane checks it against the running servers. The body is read as
/// gobetween (gin's `BindJSON`, a `json.Decoder`) reads it: its first JSON value, whatever
/// follows left unread.
pub fn read_server(name: &str, body: &[u8], strict: bool) -> Result<(Server, Vec<ConfigWarning>), ApiError> {
    // A body that is not one well-formed value is read whole, for the parser to say why.
    let body = first_value_end(body).map_or(body, |end| &body[..end]);
    let body = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    undecodable(body).map_or(Ok(()), Err)?;
    server_name(name).map_err(|e| ApiError::conflict(format!("invalid server name: {}", e.message)))?;
    let invalid = |e: ConfigError| {
        let message = format!("invalid server config: {e}");
        // A value of the wrong JSON type is a decoding error to gobetween.
        if e.message.starts_with("invalid type") {
            ApiError::bad_request(message)
        } else {
            ApiError::conflict(message)
        }
    };
    // `null` decodes into gobetween's empty server, which its manager refuses for want of a bind.
    if body.trim() == "null" {
        return Err(invalid(ConfigError::at_key("bind", "missing field `bind` (the body is null)")));
    }
    let (server, warnings): (Server, _) = parse_as(body, Format::Json).map_err(invalid)?;
    enforce_strict(&warnings, strict).map_err(invalid)?;
    Ok((server, warnings))
}

/// Why `body` is not JSON at all (too deep, malformed, empty), if it is not.
fn undecodable(body: &str) -> Option<ApiError> {
    let problem = match check_json_depth(body) {
        Err(e) => e.to_string(),
        Ok(()) => sonic_rs::from_str::<sonic_rs::Value>(body).err()?.to_string(),
    };
    Some(ApiError::bad_request(format!("invalid server config: {problem}")))
}

#[derive(Deserialize)]
struct RemoveQuery {
    drain: Option<String>,
}

/// `DELETE /servers/NAME`: closes the server's connections at once, as gobetween does; with
/// `?drain=DURATION` (betwixt) they may finish within that time (`0`: however long they take).
/// An unknown name answers `null` as a deleted one does, as in gobetween. A udp server's
/// sessions drain on its socket, which stays open (and its port taken) until they end.
async fn remove(
    State(control): Shared,
    Params(name): Params<String>,
    QueryParams(query): QueryParams<RemoveQuery>,
) -> Result<Response, ApiError> {
    let drain = match query.drain.as_deref() {
        None => Drain::None,
        Some(text) => {
            let limit =
                duration::parse(text).map_err(|e| ApiError::bad_request(format!("invalid drain: {e}")))?;
            Drain::For(GoDuration(limit).as_limit())
        }
    };
    match control.remove_server(&name, drain) {
        Ok(()) | Err(ControlError::NotFound(_)) => Ok(json(StatusCode::OK, &())),
        Err(ControlError::ShuttingDown) => Err(shutting_down()),
        Err(e) => Err(ApiError::conflict(e.to_string())),
    }
}

/// `POST /servers/NAME/backends/HOST:PORT/drain` (betwixt): the backend gets no new
/// connection, the open ones go on.
async fn drain_backend(
    State(control): Shared,
    Params((name, backend)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    set_draining(&control, &name, &backend, true)
}

/// `DELETE /servers/NAME/backends/HOST:PORT/drain` (betwixt): the backend takes new
/// connections again.
async fn undrain_backend(
    State(control): Shared,
    Params((name, backend)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    set_draining(&control, &name, &backend, false)
}

fn set_draining(control: &Control, name: &str, backend: &str, draining: bool) -> Result<Response, ApiError> {
    let server =
        control.server(name).ok_or_else(|| ApiError::not_found(format!("server {name:?} not found")))?;
    let (host, port) =
        split_host_port(backend).map_err(|e| ApiError::bad_request(format!("invalid backend: {e}")))?;
    if !server.set_draining((&host, port), draining) {
        return Err(ApiError::not_found(format!("server {name:?} has no backend {backend}")));
    }
    Ok(json(StatusCode::OK, &()))
}

/// Once shutdown has begun, servers are neither added nor removed.
fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ControlError::ShuttingDown.to_string())
}

/// The part of a server section that makes betwixt run commands, if any.
pub(crate) fn runs_commands(server: &Server) -> Option<&'static str> {
    if server.healthcheck.as_ref().is_some_and(|check| check.kind == HealthcheckKind::Exec) {
        Some("healthcheck kind \"exec\"")
    } else if server.discovery.kind == DiscoveryKind::Exec {
        Some("discovery kind \"exec\"")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str =
        "{\"bind\": \"127.0.0.1:1\", \"discovery\": {\"kind\": \"static\", \"static_list\": []}}";

    fn status(body: &[u8]) -> Result<Server, (StatusCode, String)> {
        read_server("s", body, false).map(|(server, _)| server).map_err(|e| (e.status, e.message))
    }

    #[test]
    fn what_follows_the_first_value_is_left_unread() {
        for trailing in ["", "trailing", "{\"x\": 1}", "\u{0}", "]]]"] {
            let server = status(format!("{SERVER}{trailing}").as_bytes()).unwrap();
            assert_eq!(server.bind, "127.0.0.1:1", "{trailing:?}");
        }
        assert!(status(&[SERVER.as_bytes(), b"\xff"].concat()).is_ok());
        let deep = format!("{SERVER}{}", "[".repeat(100_000));
        assert!(status(deep.as_bytes()).is_ok());
    }

    #[test]
    fn a_body_that_is_no_server_is_a_400_and_null_a_409_naming_the_bind() {
        for body in ["[]", "[\"127.0.0.1:1\"]", "1", "\"x\"", "true", "{\"discovery\": []}", "", "{", "{]"] {
            let (code, message) = status(body.as_bytes()).unwrap_err();
            assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {message}");
        }
        for body in ["null", " null {}", "null\n"] {
            let (code, message) = status(body.as_bytes()).unwrap_err();
            assert_eq!(code, StatusCode::CONFLICT, "{body}: {message}");
            assert!(message.contains("`bind`"), "{message}");
        }
        assert_eq!(status(b"{}").unwrap_err().0, StatusCode::CONFLICT);
        assert_eq!(status(b"{}x{").unwrap_err().0, StatusCode::CONFLICT);
    }

    #[test]
    fn repeated_keys_are_read_as_gobetween_reads_them_and_refused_in_strict_mode() {
        let body = SERVER.replace("{\"bind\"", "{\"bind\": \"127.0.0.1:9\", \"bind\"");
        let (server, warnings) = read_server("s", body.as_bytes(), false).unwrap();
        assert_eq!(server.bind, "127.0.0.1:1");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key.as_deref(), Some("bind"));
        let e = read_server("s", body.as_bytes(), true).unwrap_err();
        assert_eq!(e.status, StatusCode::CONFLICT, "{}", e.message);
        assert!(e.message.contains("repeated"), "{}", e.message);
    }
}
