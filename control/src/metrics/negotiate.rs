//! Choosing the exposition format from the scraper's `Accept` header, the way Prometheus' Go
//! client does when OpenMetrics is enabled (`expfmt.NegotiateIncludingOpenMetrics`): the
//! acceptable media ranges in order of preference, the first one betwixt can write wins, and
//! the classic text format is the answer when none matches or no header is sent.
//! Go's client also offers protobuf; betwixt does not, and a scraper that asks for it with a
//! text fallback (as Prometheus does) gets the fallback.

use super::exposition::Format;

/// The chosen format and the `Content-Type` that announces it.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice {
    pub format: Format,
    pub content_type: String,
}

/// More media ranges than any scraper sends; the rest of a longer header is ignored.
const MAX_RANGES: usize = 32;

/// Metric-name escaping schemes a scraper may ask for (`escaping=`). betwixt's names are plain
/// `[a-z_]` in every scheme, so the answer only echoes the scheme, as Go's client does.
const ESCAPINGS: [&str; 4] = ["allow-utf-8", "underscores", "dots", "values"];

struct Range<'a> {
    media: String,
    q: f64,
    version: Option<&'a str>,
    escaping: Option<&'a str>,
}

fn parse_range(text: &str) -> Range<'_> {
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut range = Range { media, q: 1.0, version: None, escaping: None };
    for param in parts {
        let Some((key, value)) = param.split_once('=') else { continue };
        let value = value.trim().trim_matches('"');
        match key.trim() {
            // An unreadable weight counts as 0: not acceptable.
            "q" => range.q = value.parse().ok().filter(|q: &f64| q.is_finite()).unwrap_or(0.0),
            "version" => range.version = Some(value),
            "escaping" => range.escaping = Some(value),
            _ => {}
        }
    }
    range
}

pub fn negotiate(accept: Option<&str>) -> Choice {
    let mut ranges: Vec<Range> =
        accept.unwrap_or("").split(',').take(MAX_RANGES).map(parse_range).filter(|r| r.q > 0.0).collect();
    // Highest weight first; among equals a concrete type before a wildcard. The sort is stable,
    // so the header's own order breaks the remaining ties.
    let wildcards = |r: &Range| (r.media.starts_with("*/") as u8) + (r.media.ends_with("/*") as u8);
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q).then(wildcards(a).cmp(&wildcards(b))));

    let mut escaping = "underscores";
    for range in &ranges {
        if let Some(asked) = range.escaping.and_then(|e| ESCAPINGS.iter().find(|&&known| known == e)) {
            escaping = asked;
        }
        let version = range.version.unwrap_or("");
        match range.media.as_str() {
            "text/plain" if matches!(version, "" | "0.0.4") => break,
            "application/openmetrics-text" if matches!(version, "" | "0.0.1" | "1.0.0") => {
                let version = if version == "1.0.0" { "1.0.0" } else { "0.0.1" };
                return Choice {
                    format: Format::OpenMetrics,
                    content_type: format!(
                        "application/openmetrics-text; version={version}; charset=utf-8; escaping={escaping}"
                    ),
                };
            }
            _ => {}
        }
    }
    Choice {
        format: Format::Text,
        content_type: format!("text/plain; version=0.0.4; charset=utf-8; escaping={escaping}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(accept: &str) -> Format {
        negotiate(Some(accept)).format
    }

    #[test]
    fn classic_text_unless_openmetrics_is_asked_for() {
        let text = negotiate(None);
        assert_eq!(text.format, Format::Text);
        assert_eq!(text.content_type, "text/plain; version=0.0.4; charset=utf-8; escaping=underscores");
        assert_eq!(format(""), Format::Text);
        assert_eq!(format("*/*"), Format::Text);
        assert_eq!(format("text/plain"), Format::Text);
        assert_eq!(format("application/json, text/html;q=0.9"), Format::Text);
        // A version betwixt cannot write is skipped.
        assert_eq!(format("application/openmetrics-text; version=2.0.0"), Format::Text);
    }

    #[test]
    fn prometheus_scrape_header_gets_openmetrics() {
        // What Prometheus 2.x sends by default.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let choice = negotiate(Some(prometheus));
        assert_eq!(choice.format, Format::OpenMetrics);
        assert_eq!(
            choice.content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text")).content_type,
            "application/openmetrics-text; version=0.0.1; charset=utf-8; escaping=underscores"
        );
    }

    #[test]
    fn weights_order_and_protobuf_fallback() {
        assert_eq!(format("text/plain;q=0.5, application/openmetrics-text;q=0.9"), Format::OpenMetrics);
        assert_eq!(format("application/openmetrics-text;q=0.2, text/plain;q=0.5"), Format::Text);
        assert_eq!(format("application/openmetrics-text;q=0"), Format::Text);
        assert_eq!(format("application/openmetrics-text;q=nonsense"), Format::Text);
        assert_eq!(format("APPLICATION/OpenMetrics-Text; version=\"1.0.0\""), Format::OpenMetrics);
        let protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8";
        assert_eq!(format(protobuf), Format::OpenMetrics);
    }

    #[test]
    fn escaping_scheme_is_echoed() {
        let choice = negotiate(Some("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8"));
        assert!(choice.content_type.ends_with("; escaping=allow-utf-8"), "{}", choice.content_type);
        let unknown = negotiate(Some("text/plain;version=0.0.4;escaping=sideways"));
        assert!(unknown.content_type.ends_with("; escaping=underscores"), "{}", unknown.content_type);
    }

    #[test]
    fn long_headers_are_bounded() {
        let header = "x/y;q=0.9,".repeat(100_000) + "application/openmetrics-text";
        assert_eq!(format(&header), Format::Text);
    }
}
