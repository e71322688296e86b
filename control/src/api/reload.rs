//! betwixt's reload endpoints: `POST /reload` reads the configuration source again, `PUT
//! /config` takes a whole configuration in its body. Both answer the diff they applied, or the
//! reason the configuration was rejected (the running one then stays as it was).

use super::extract::QueryParams;
use super::reply::{json, ApiError};
use super::routes::runs_commands;
use crate::config::Format;
use crate::control::{Control, ControlError};
use crate::reload::{is_new_or_changed, Summary};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

/// `POST /reload`: reloads from the source the process was started with.
pub async fn reload(State(control): State<Arc<Control>>) -> Result<Response, ApiError> {
    answer(control.reload_from_source("api").await)
}

#[derive(Deserialize)]
pub struct ConfigQuery {
    format: Option<String>,
}

/// `PUT /config`: the body is a whole configuration, TOML or JSON by `?format=` or else by
/// its Content-Type (`application/json` is JSON, anything else TOML). Servers that would run
/// commands, new or changed, need `[api] allow_exec` as `POST /servers/NAME` does.
pub async fn put_config(
    State(control): State<Arc<Control>>,
    QueryParams(query): QueryParams<ConfigQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref() {
        Some(name) => Format::parse(name).map_err(ApiError::bad_request)?,
        None => {
            let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            if kind.trim_start().starts_with("application/json") {
                Format::Json
            } else {
                Format::Toml
            }
        }
    };
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    let allow_exec = control.base_config().api.as_ref().and_then(|api| api.allow_exec).unwrap_or(false);
    let mut forbidden = false;
    let result = control
        .reload_from_text(text, format, |config, running| {
            if allow_exec {
                return Ok(());
            }
            for (name, server) in &config.servers {
                if let (Some(what), true) = (runs_commands(server), is_new_or_changed(name, server, running)) {
                    forbidden = true;
                    return Err(format!(
                        "server {name}: {what} would run commands as betwixt's user; a configuration sent through the API may not add one, unless [api] allow_exec = true"
                    ));
                }
            }
            Ok(())
        })
        .await;
    match result {
        Err(reason) if forbidden => Err(ApiError::new(StatusCode::FORBIDDEN, reason)),
        other => answer(other),
    }
}

/// 200 with the diff; 503 during shutdown; 422 with the reason for a rejected configuration.
fn answer(result: Result<Summary, String>) -> Result<Response, ApiError> {
    match result {
        Ok(summary) => Ok(json(StatusCode::OK, &summary)),
        Err(reason) if reason == ControlError::ShuttingDown.to_string() => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason))
        }
        Err(reason) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason)),
    }
}
