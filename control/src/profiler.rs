//! `[profiler]`: CPU profiles in pprof's protobuf format at `GET /debug/pprof/profile?seconds=N`,
//! where gobetween served Go's `net/http/pprof`. The listener runs on a thread and runtime of its
//! own: taking a profile sleeps for its length and symbolizing it is CPU work, and neither may
//! hold up the control thread. Sampling is `SIGPROF`-driven (the `pprof` crate), so it sees every
//! thread of the process: the shards, the control thread and the rest.
//! Go's other profiles (heap, goroutine, ...) have no counterpart here and answer 404 saying so.

use crate::api::reply::ApiError;
use crate::api::serve;
use crate::config::Profiler;
use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pprof::protos::Message;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;

/// Where profiles are served when `[profiler]` names no `bind`: loopback only, since the
/// endpoint has no authentication (gobetween's sample config says `":6060"`).
pub const DEFAULT_BIND: &str = "127.0.0.1:6060";

/// A profile's length when `seconds` is not given, as in Go.
const DEFAULT_SECONDS: u64 = 30;

/// The longest profile asked for at once.
pub const MAX_SECONDS: u64 = 300;

/// Samples a second per thread, as Go's CPU profiler takes them.
const FREQUENCY: i32 = 100;

/// Frames of these libraries are left out: unwinding through them from a signal handler is
/// where stack walks can go wrong (the `pprof` crate's advice).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// The address the profiler listens on, when `[profiler]` is enabled.
pub fn bind(section: Option<&Profiler>) -> Option<String> {
    let section = section.filter(|p| p.enabled)?;
    Some(section.bind.clone().filter(|b| !b.is_empty()).unwrap_or_else(|| DEFAULT_BIND.into()))
}

/// Starts the profiler's listener when `[profiler] enabled`; an error when it cannot listen.
/// `metrics`: the metrics endpoint's routes, served beside the profiles when `[metrics]` names
/// the same address (`metrics::start` returns them). They are served from the profiler's
/// thread then, since profiles must not run on the control thread, and metrics may.
pub fn start(section: Option<&Profiler>, metrics: Option<Router>) -> Result<(), String> {
    let Some(bind) = bind(section) else { return Ok(()) };
    let (app, what, paths) = match metrics {
        Some(metrics) => (
            router().merge(metrics).fallback(|| async {
                ApiError::not_found("metrics are served at /metrics, CPU profiles at /debug/pprof/profile")
            }),
            "metrics and profiler",
            "GET /metrics, /debug/pprof/profile",
        ),
        None => (router(), "profiler", "GET /debug/pprof/profile"),
    };
    let (started, listening) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("profiler".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(started.send(Err(format!("profiler: cannot start its runtime: {e}")))),
            };
            runtime.block_on(async {
                let listener = match serve::listen(&bind) {
                    Ok(listener) => listener,
                    Err(e) => {
                        return drop(started.send(Err(format!("{what}: cannot listen on {bind}: {e}"))))
                    }
                };
                let addr = listener.local_addr().map_or(bind.clone(), |a| a.to_string());
                log::info!("{what} ({paths}): listening on {addr}");
                serve::spawn(what, listener, None, app);
                let _ = started.send(Ok(()));
                std::future::pending::<()>().await
            })
        })
        .map_err(|e| format!("profiler: cannot start its thread: {e}"))?;
    listening.recv().map_err(|_| "profiler: its thread ended at start".to_string())?
}

fn router() -> Router {
    let busy = std::sync::Arc::new(Mutex::new(()));
    Router::new()
        .route("/debug/pprof/", get(index))
        .route("/debug/pprof", get(index))
        .route(
            "/debug/pprof/profile",
            get(move |query: Query<HashMap<String, String>>| profile(busy.clone(), query)),
        )
        .route("/debug/pprof/{name}", get(not_served))
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<html><head><title>/debug/pprof/</title></head><body>\n",
        "<p>betwixt profiles:</p>\n",
        "<table><tr><td><a href=\"profile?seconds=30\">profile</a></td>",
        "<td>CPU profile in pprof's protobuf format; <code>seconds</code> (default 30, at most 300) ",
        "says how long. After you get it, use <code>go tool pprof BINARY FILE</code>.</td></tr></table>\n",
        "<p>Go's other profiles (allocs, block, cmdline, goroutine, heap, mutex, symbol, threadcreate, ",
        "trace) have no counterpart in betwixt and are not served.</p>\n",
        "</body></html>\n"
    ))
}

async fn not_served(Path(name): Path<String>) -> ApiError {
    let name: String = crate::text::escape_for_log(&name).chars().take(64).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "profile {name:?} is not served: betwixt serves the CPU profile only \
             (/debug/pprof/profile); Go's heap, goroutine and other runtime profiles have no counterpart"
        ),
    )
}

/// `seconds` as Go reads it: a whole number of seconds, here 1 to `MAX_SECONDS`.
fn seconds(query: &HashMap<String, String>) -> Result<u64, ApiError> {
    let Some(text) = query.get("seconds") else { return Ok(DEFAULT_SECONDS) };
    match text.parse::<u64>() {
        Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "seconds must be a whole number from 1 to {MAX_SECONDS}, not {:?}",
            text.chars().take(32).collect::<String>()
        ))),
    }
}

/// One profile at a time (the sampler is process-wide): 409 while one is being taken.
async fn profile(busy: std::sync::Arc<Mutex<()>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let seconds = match seconds(&query) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let Ok(_one) = busy.try_lock() else {
        return ApiError::new(StatusCode::CONFLICT, "a profile is being taken; try again when it is done")
            .into_response();
    };
    match take(Duration::from_secs(seconds)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"profile\""),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("profile failed: {e}")).into_response()
        }
    }
}

/// Samples the process for `length` and encodes the profile. Dropping the future (the client
/// went away) stops the sampling.
async fn take(length: Duration) -> Result<Vec<u8>, pprof::Error> {
    let guard = pprof::ProfilerGuardBuilder::default().frequency(FREQUENCY).blocklist(&BLOCKLIST).build()?;
    tokio::time::sleep(length).await;
    let report = guard.report().build()?;
    drop(guard);
    Ok(report.pprof()?.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded() {
        let query = |s: &str| HashMap::from([("seconds".to_string(), s.to_string())]);
        assert_eq!(seconds(&HashMap::new()).unwrap(), 30);
        assert_eq!(seconds(&query("2")).unwrap(), 2);
        assert_eq!(seconds(&query("300")).unwrap(), 300);
        for bad in ["0", "301", "-1", "1.5", "", "99999999999999999999999"] {
            assert_eq!(seconds(&query(bad)).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
