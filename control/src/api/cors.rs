//! CORS for `[api] cors = true`, exactly as gobetween configures it (gin-contrib/cors with
//! every origin allowed, credentials allowed, methods `PUT,POST,DELETE,GET,OPTIONS`, headers
//! `Origin,Authorization`, a 12-hour preflight cache):
//!
//! - A request without `Origin`, or whose `Origin` is this API's own address
//!   (`http://` or `https://` + `Host`), is not a CORS request and passes untouched.
//! - Any `OPTIONS` request with another `Origin` is a preflight: answered `204` with the allowed
//!   methods and headers, on any path and before authentication.
//! - Any other request with another `Origin` runs as usual, with
//!   `Access-Control-Allow-Origin: *` and `Access-Control-Allow-Credentials: true` added.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// What every CORS answer carries.
const NORMAL: [(HeaderName, &str); 2] =
    [(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];

/// What a preflight answer carries besides `NORMAL`.
const PREFLIGHT: [(HeaderName, &str); 3] = [
    (header::ACCESS_CONTROL_ALLOW_METHODS, "PUT,POST,DELETE,GET,OPTIONS"),
    (header::ACCESS_CONTROL_ALLOW_HEADERS, "Origin,Authorization"),
    (header::ACCESS_CONTROL_MAX_AGE, "43200"),
];

pub async fn apply(request: Request, next: Next) -> Response {
    if !is_cross_origin(request.headers()) {
        return next.run(request).await;
    }
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        add(response.headers_mut(), NORMAL.iter().chain(&PREFLIGHT));
        return response;
    }
    let mut response = next.run(request).await;
    add(response.headers_mut(), &NORMAL);
    response
}

/// An `Origin` is present and is not the API's own `http(s)://Host`.
fn is_cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).map(HeaderValue::as_bytes).filter(|o| !o.is_empty())
    else {
        return false;
    };
    let host = headers.get(header::HOST).map_or(&b""[..], HeaderValue::as_bytes);
    let same = |scheme: &[u8]| origin.strip_prefix(scheme) == Some(host);
    !(same(b"http://") || same(b"https://"))
}

fn add<'a>(headers: &mut HeaderMap, pairs: impl IntoIterator<Item = &'a (HeaderName, &'static str)>) {
    for (name, value) in pairs {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (n.clone(), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn own_origin_and_no_origin_are_not_cors() {
        assert!(!is_cross_origin(&headers(&[])));
        assert!(!is_cross_origin(&headers(&[(header::ORIGIN, "")])));
        let host = (header::HOST, "127.0.0.1:8888");
        assert!(!is_cross_origin(&headers(&[(header::ORIGIN, "http://127.0.0.1:8888"), host.clone()])));
        assert!(!is_cross_origin(&headers(&[(header::ORIGIN, "https://127.0.0.1:8888"), host.clone()])));
        assert!(is_cross_origin(&headers(&[(header::ORIGIN, "http://127.0.0.1:8889"), host.clone()])));
        assert!(is_cross_origin(&headers(&[(header::ORIGIN, "http://dash.example"), host])));
        // As gin-contrib/cors compares: no Host makes `http://` the API's own origin.
        assert!(!is_cross_origin(&headers(&[(header::ORIGIN, "http://")])));
    }
}
