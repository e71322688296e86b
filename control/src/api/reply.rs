//! Responses: pretty-printed JSON bodies and the JSON error shape `{"message": "..."}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

const JSON: &str = "application/json; charset=utf-8";

/// A pretty-printed JSON response, as gobetween's API answers.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match sonic_rs::to_string_pretty(value) {
        Ok(body) => text(status, JSON, body),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode JSON: {e}"))
            .into_response(),
    }
}

pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// An error answered as `{"message": "..."}` with its status code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = sonic_rs::to_string_pretty(&ErrorBody { message: &self.message })
            .unwrap_or_else(|_| String::from("{}"));
        text(self.status, JSON, body)
    }
}
