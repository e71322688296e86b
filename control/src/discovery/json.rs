//! `kind = "json"`: GETs `json_endpoint`, whose body must be a JSON array with one element per
//! backend; the `json_*_pattern` paths say where in an element each value sits (defaults:
//! `host`, `port`, `weight`, `priority`, `sni`, `max_connections`).
//!
//! Paths read as gobetween's (the `gojq` library's): parts separated by `.`, a part `[N]` is
//! the Nth element of an array, any other part a key of an object; single or double quotes
//! group a part that holds a `.` (`'a.b'.c`) and are removed. A missing or non-string host, or
//! a missing port, fails the whole fetch, as in gobetween; weight, priority and
//! max_connections are used when they are numbers (fractions cut off) and take their defaults
//! (1, 1, 0) otherwise; sni when it is a string.

use super::http::{Endpoint, Proxies};
use super::{Found, SectionError, Source};
use crate::backend::{is_host_name, BackendSpec};
use crate::config::depth::check_json_depth;
use crate::config::Discovery;
use crate::text::is_unsafe;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::time::Duration;

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path into a JSON value, as `gojq` reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    text: String,
    steps: Vec<Step>,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut parts = vec![String::new()];
        let mut quote: Option<char> = None;
        for c in text.chars() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(open), _) if c == open => quote = None,
                (None, '.') => parts.push(String::new()),
                _ => parts.last_mut().expect("never empty").push(c),
            }
        }
        let steps = parts
            .into_iter()
            .map(|part| match part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
                Some(index) if !index.is_empty() => index
                    .parse()
                    .map(Step::Index)
                    .map_err(|_| format!("[{index}] in path {text:?} is not an array index")),
                _ => Ok(Step::Key(part)),
            })
            .collect::<Result<_, _>>()?;
        Ok(Path { text: text.to_string(), steps })
    }

    fn find<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.steps.iter().try_fold(value, |at, step| match step {
            Step::Key(key) => at.as_object()?.get(key),
            Step::Index(index) => at.as_array()?.get(*index),
        })
    }
}

/// Where each value of a backend sits in an element of the array.
#[derive(Clone, Debug, PartialEq)]
struct Paths {
    host: Path,
    port: Path,
    weight: Path,
    priority: Path,
    sni: Path,
    max_connections: Path,
}

pub struct Json {
    endpoint: Endpoint,
    paths: Paths,
}

/// Why an element gives no backend: the whole answer is refused (`Fail`, where gobetween
/// refuses it), or the element is left out (`Skip`, where gobetween would install a backend
/// nothing can connect to).
enum Problem {
    Fail(String),
    Skip(String),
}
use Problem::{Fail, Skip};

impl Json {
    pub fn from_section(d: &Discovery) -> Result<Json, SectionError> {
        // Go's http.Get, as gobetween fetches: proxies from the environment.
        let endpoint = Endpoint::parse("json_endpoint", d.json_endpoint.as_deref().unwrap_or(""))?
            .with_proxies(Proxies::from_env());
        let path = |field: &'static str, given: &Option<String>, default: &str| {
            let text = given.as_deref().filter(|t| !t.is_empty()).unwrap_or(default);
            Path::parse(text).map_err(|e| SectionError::new(field, e))
        };
        let paths = Paths {
            host: path("json_host_pattern", &d.json_host_pattern, "host")?,
            port: path("json_port_pattern", &d.json_port_pattern, "port")?,
            weight: path("json_weight_pattern", &d.json_weight_pattern, "weight")?,
            priority: path("json_priority_pattern", &d.json_priority_pattern, "priority")?,
            sni: path("json_sni_pattern", &d.json_sni_pattern, "sni")?,
            max_connections: path(
                "json_max_connections_pattern",
                &d.json_max_connections_pattern,
                "max_connections",
            )?,
        };
        Ok(Json { endpoint, paths })
    }

    pub(crate) fn read(&self, body: &str) -> Result<Found, String> {
        check_json_depth(body).map_err(|e| format!("unreadable answer: {}", e.message))?;
        let document: Value = sonic_rs::from_str(body).map_err(|e| format!("answer is not JSON: {e}"))?;
        let elements = document.as_array().ok_or("answer is not a JSON array")?;
        let mut found = Found::default();
        for (index, element) in elements.iter().enumerate() {
            match self.backend(element) {
                Ok(spec) => found.backends.push(spec),
                Err(Skip(why)) => found.notes.push(format!("element [{index}]: {why}: skipped")),
                Err(Fail(why)) => return Err(format!("element [{index}]: {why}")),
            }
        }
        Ok(found)
    }

    fn backend(&self, element: &Value) -> Result<BackendSpec, Problem> {
        let p = &self.paths;
        let host = p.host.find(element).ok_or_else(|| Fail(format!("no {:?}", p.host.text)))?;
        let host = host.as_str().ok_or_else(|| Fail(format!("{:?} is not a string", p.host.text)))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = p.port.find(element).ok_or_else(|| Fail(format!("no {:?}", p.port.text)))?;
        if !is_host_name(host) {
            return Err(Skip(format!("host {host:?} is no host name")));
        }
        let port = port_of(port).ok_or_else(|| Skip(format!("port {port} is not a port number")))?;
        let mut spec = BackendSpec::new(host, port);
        let number = |path: &Path, default: i64, low: i64, high: i64| -> i64 {
            // Go's int64(float64) cuts the fraction off; JSON numbers are floats to gojq.
            path.find(element)
                .and_then(|v| v.as_f64())
                .map_or(default, |n| (n.trunc() as i64).clamp(low, high))
        };
        spec.weight = number(&p.weight, 1, 0, u32::MAX.into()) as u32;
        spec.priority = number(&p.priority, 1, i32::MIN.into(), i32::MAX.into()) as i32;
        spec.max_connections = number(&p.max_connections, 0, 0, u32::MAX.into()) as u32;
        spec.sni = p.sni.find(element).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(String::from);
        if spec.sni.as_deref().is_some_and(|s| s.contains(is_unsafe)) {
            return Err(Skip("control character in sni".into()));
        }
        Ok(spec)
    }
}

/// A port given as a number or a string of digits, as gobetween's `fmt.Sprintf("%v")` passes
/// both on.
fn port_of(value: &Value) -> Option<u16> {
    match value.as_str() {
        Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        Some(_) => None,
        None => value.as_u64().and_then(|n| u16::try_from(n).ok()).or_else(|| {
            let f = value.as_f64()?;
            (f.fract() == 0.0 && (0.0..=65535.0).contains(&f)).then_some(f as u16)
        }),
    }
}

impl Source for Json {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    const RETRY_WAIT: Duration = Duration::from_secs(2);

    async fn fetch(&self) -> Result<Found, String> {
        let body = self.endpoint.get().await?;
        let body = std::str::from_utf8(&body).map_err(|_| "answer is not UTF-8".to_string())?;
        self.read(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(patterns: &[(&str, &str)]) -> Json {
        let mut d = Discovery { json_endpoint: Some("http://127.0.0.1:1/".into()), ..Discovery::default() };
        for (key, value) in patterns {
            let slot = match *key {
                "host" => &mut d.json_host_pattern,
                "port" => &mut d.json_port_pattern,
                "weight" => &mut d.json_weight_pattern,
                "priority" => &mut d.json_priority_pattern,
                "sni" => &mut d.json_sni_pattern,
                _ => &mut d.json_max_connections_pattern,
            };
            *slot = Some(value.to_string());
        }
        Json::from_section(&d).unwrap()
    }

    #[test]
    fn paths_read_as_gojq_reads_them() {
        let steps = |t: &str| Path::parse(t).unwrap().steps;
        assert_eq!(steps("host"), [Step::Key("host".into())]);
        assert_eq!(steps("a.[1].b"), [Step::Key("a".into()), Step::Index(1), Step::Key("b".into())]);
        assert_eq!(steps("'a.b'.\"c.d\""), [Step::Key("a.b".into()), Step::Key("c.d".into())]);
        assert_eq!(steps("[]"), [Step::Key("[]".into())]);
        assert!(Path::parse("[x]").is_err());
        assert!(Path::parse("[-1]").is_err());
    }

    #[test]
    fn defaults_and_numbers_as_gobetween() {
        let found = json(&[])
            .read(
                r#"[{"host":"a","port":80},
                    {"host":"b","port":"81","weight":2.9,"priority":-3,"sni":"s","max_connections":7},
                    {"host":"c","port":82,"weight":"5","sni":3}]"#,
            )
            .unwrap();
        let got: Vec<_> = found
            .backends
            .iter()
            .map(|b| (b.host.as_str(), b.port, b.weight, b.priority, b.max_connections, b.sni.as_deref()))
            .collect();
        assert_eq!(got, [("a", 80, 1, 1, 0, None), ("b", 81, 2, -3, 7, Some("s")), ("c", 82, 1, 1, 0, None)]);
    }

    #[test]
    fn nested_patterns() {
        let j = json(&[("host", "addr.ip"), ("port", "ports.[1]"), ("weight", "meta.'w.x'")]);
        let found = j.read(r#"[{"addr":{"ip":"10.0.0.1"},"ports":[1,2],"meta":{"w.x":4}}]"#).unwrap();
        assert_eq!(found.backends[0].address(), "10.0.0.1:2");
        assert_eq!(found.backends[0].weight, 4);
    }

    #[test]
    fn what_fails_and_what_is_skipped() {
        let j = json(&[]);
        assert!(j.read("{}").is_err(), "not an array");
        assert!(j.read("[").is_err());
        assert!(j.read(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))).is_err(), "too deep");
        assert!(j.read(r#"[{"port":1}]"#).is_err(), "no host");
        assert!(j.read(r#"[{"host":1,"port":1}]"#).is_err(), "host not a string");
        assert!(j.read(r#"[{"host":"a"}]"#).is_err(), "no port");
        assert!(j.read(r#"["a:1"]"#).is_err(), "element not an object");
        let found = j
            .read(
                r#"[{"host":"a","port":70000},{"host":"b","port":true},{"host":"c","port":1.5},
                    {"host":"d e","port":1},{"host":"f","port":1}]"#,
            )
            .unwrap();
        assert_eq!(found.backends.len(), 1);
        assert_eq!(found.notes.len(), 4, "{:?}", found.notes);
        assert_eq!(j.read("[]").unwrap(), Found::default());
    }
}
