//! HTTP basic authentication for `[api.basic_auth]`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::Arc;

/// The one accepted `login:password` pair.
#[derive(Debug)]
pub struct Credentials {
    expected: Vec<u8>,
}

impl Credentials {
    pub fn new(login: &str, password: &str) -> Arc<Credentials> {
        Arc::new(Credentials { expected: format!("{login}:{password}").into_bytes() })
    }

    /// True when `authorization` is `Basic base64(login:password)` with the configured pair.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(encoded) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, value)| value.trim())
        else {
            return false;
        };
        STANDARD.decode(encoded).is_ok_and(|given| constant_time_eq(&given, &self.expected))
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// gobetween's realm (gin's `BasicAuth` default): clients and scripts may look for it.
const CHALLENGE: &str = "Basic realm=\"Authorization Required\"";

/// Lets authenticated requests through; answers others as gobetween does: 401 with the
/// challenge and an empty body.
pub async fn require(State(credentials): State<Arc<Credentials>>, request: Request, next: Next) -> Response {
    if credentials.accepts(request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE))])
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_scheme_and_pair() {
        let c = Credentials::new("admin", "1111");
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(c.accepts(Some(&header(&format!("Basic {}", STANDARD.encode("admin:1111"))))));
        assert!(c.accepts(Some(&header(&format!("basic {}", STANDARD.encode("admin:1111"))))));
        assert!(!c.accepts(Some(&header(&format!("Basic {}", STANDARD.encode("admin:1112"))))));
        assert!(!c.accepts(Some(&header(&format!("Bearer {}", STANDARD.encode("admin:1111"))))));
        assert!(!c.accepts(Some(&header("Basic %%%"))));
        assert!(!c.accepts(None));
    }
}
