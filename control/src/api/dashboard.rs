//! betwixt's live dashboard: one HTML page with its script and style sheet, compiled into the
//! binary and served by the API (`/dashboard`, and `/` for browsers). The page reads the API's
//! own `GET /servers` and `GET /servers/NAME/stats` once a second, so it needs nothing the
//! scripts of gobetween's users do not already get, and works behind basic auth and HTTPS alike.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// The page's paths, relative to the API's root (the page refers to its assets relatively, so
/// it also works under a reverse proxy's path prefix).
pub const PAGE_PATH: &str = "/dashboard";
pub const SCRIPT_PATH: &str = "/dashboard/app.js";
pub const STYLE_PATH: &str = "/dashboard/app.css";

/// Only this origin's script, style and API; no inline code, no frames, no forms: a name that
/// slipped through as markup would still run nothing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, &'static str); 6] = [
        (header::CONTENT_TYPE, content_type),
        // Small, and a new binary may bring a new page: always fetched afresh; it is served
        // behind the API's password, so no shared cache keeps it either.
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    let mut response = (StatusCode::OK, body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether a `GET /` asks for the page rather than gobetween's JSON: only when `Accept` names
/// `text/html` itself and ranks it above JSON, as browsers do for a page. `*/*` (curl), no
/// `Accept`, or JSON ranked as high keep gobetween's answer.
pub fn wants_page(headers: &HeaderMap) -> bool {
    let accept: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    prefers_html(&accept.join(","))
}

fn prefers_html(accept: &str) -> bool {
    let (mut html, mut json, mut application, mut any) = (None, None, None, None);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let slot = match media.as_str() {
            "text/html" => &mut html,
            "application/json" => &mut json,
            "application/*" => &mut application,
            "*/*" => &mut any,
            _ => continue,
        };
        let q = parts.find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")));
        // A q that does not parse counts as 1, as most servers read it.
        let q =
            q.and_then(|q| q.trim().parse::<f32>().ok()).filter(|q| (0.0..=1.0).contains(q)).unwrap_or(1.0);
        *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
    }
    // The most specific range naming JSON decides its rank.
    let json = json.or(application).or(any).unwrap_or(0.0);
    html.is_some_and(|html| html > 0.0 && html > json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_the_page_api_clients_json() {
        for (accept, page) in [
            // Chromium and Firefox navigating to a page.
            ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", true),
            ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true),
            ("TEXT/HTML", true),
            // curl, fetch() defaults and API clients.
            ("*/*", false),
            ("", false),
            ("application/json", false),
            ("application/json, text/html", false),
            ("text/html;q=0.5, application/json", false),
            ("text/html;q=0.5, application/*;q=0.4", true),
            ("text/*", false),
            ("text/html;q=0", false),
            ("text/html;q=0, */*", false),
            ("text/html;q=junk, application/json;q=0.9", true),
        ] {
            assert_eq!(prefers_html(accept), page, "{accept:?}");
        }
    }

    #[test]
    fn several_accept_headers_count_together() {
        let mut headers = HeaderMap::new();
        assert!(!wants_page(&headers));
        headers.append(header::ACCEPT, HeaderValue::from_static("application/json;q=0.5"));
        headers.append(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(wants_page(&headers));
    }

    #[test]
    fn assets_carry_their_type_and_the_policy() {
        let response = asset("text/css; charset=utf-8", STYLE);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));
        // The page names its assets by these paths, relatively.
        assert!(PAGE.contains(&format!("\"{}\"", &SCRIPT_PATH[1..])));
        assert!(PAGE.contains(&format!("\"{}\"", &STYLE_PATH[1..])));
    }
}
