//! Responses as gobetween's API writes them: JSON indented by four spaces (Go's
//! `json.MarshalIndent(v, "", "    ")`), and errors as a bare JSON string with the status code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sonic_rs::format::PrettyFormatter;

pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// `value` as JSON indented by four spaces, gobetween's layout.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> sonic_rs::Result<String> {
    let mut out = Vec::with_capacity(256);
    let mut serializer =
        sonic_rs::Serializer::with_formatter(&mut out, PrettyFormatter::with_indent(b"    "));
    value.serialize(&mut serializer)?;
    // The serializer writes only valid UTF-8.
    Ok(String::from_utf8(out).expect("JSON is UTF-8"))
}

/// An indented JSON response, as gobetween's API answers.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match to_json(value) {
        Ok(body) => text(status, JSON, body),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode JSON: {e}"))
            .into_response(),
    }
}

pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// gobetween's answer for a path or method it has no route for (Go's `http.NotFound` text).
pub fn page_not_found() -> Response {
    text(StatusCode::NOT_FOUND, TEXT, "404 page not found".into())
}

/// An error answered as a JSON string (`"Server with this name already exists: web"`) with its
/// status code, as gobetween's handlers answer them.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
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

    /// Every refusal to create a server: gobetween answers 409 for all of them.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.status, self.message.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn indented_by_four_spaces_like_go() {
        let value: BTreeMap<&str, Vec<u32>> = [("a", vec![1, 2]), ("b", vec![])].into_iter().collect();
        assert_eq!(
            to_json(&value).unwrap(),
            "{\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": []\n}"
        );
        assert_eq!(to_json(&()).unwrap(), "null");
        assert_eq!(to_json("x \"y\"").unwrap(), "\"x \\\"y\\\"\"");
    }
}
