//! A Service's EndpointSlices (`discovery.k8s.io/v1`) as backends, and the watch events that
//! change them.
//!
//! Per the API reference: a slice's `ports` apply to all its `endpoints`; an endpoint's
//! `addresses` are fungible (the first is used); `conditions.ready` absent or null means
//! ready (unknown state), `false` means not ready (which includes terminating). A watch line is
//! `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`; an ERROR's object is a
//! `Status`, and its code 410 (Gone: the resourceVersion is too old) asks for a new list.

use crate::backend::{is_host_name, BackendSpec};
use crate::config::depth::check_json_depth;
use crate::discovery::Found;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::collections::BTreeMap;

/// Slices beyond this fail the list: a Service has a few (100 endpoints each by default).
pub const MAX_SLICES: usize = 10_000;
/// Endpoints read from one slice (the API allows 1000).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 1000;

/// What a watch line did.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The backends may have changed (ADDED, MODIFIED, DELETED).
    Changed,
    /// Only the resourceVersion moved (BOOKMARK).
    Bookmark,
}

/// Why a watch cannot go on.
#[derive(Debug, PartialEq)]
pub enum WatchEnd {
    /// 410 Gone: list again.
    Gone,
    /// Anything else the watch cannot read or the API reported.
    Failed(String),
}

/// The slices known, by name, as the backends each gives, and the resourceVersion to watch from.
#[derive(Debug, Default, PartialEq)]
pub struct Slices {
    port_name: Option<String>,
    by_name: BTreeMap<String, (Vec<BackendSpec>, Vec<String>)>,
    pub resource_version: String,
}

fn parse(text: &str) -> Result<Value, String> {
    check_json_depth(text).map_err(|e| format!("unreadable answer: {}", e.message))?;
    sonic_rs::from_str(text).map_err(|e| format!("answer is not JSON: {e}"))
}

fn metadata_text<'v>(object: &'v Value, key: &str) -> Option<&'v str> {
    object.get("metadata").and_then(|m| m.get(key)).and_then(|v| v.as_str())
}

impl Slices {
    pub fn new(port_name: Option<String>) -> Slices {
        Slices { port_name, ..Slices::default() }
    }

    /// Replaces everything with the answer of a list (`EndpointSliceList`).
    pub fn list(&mut self, body: &str) -> Result<(), String> {
        let document = parse(body)?;
        if document.get("kind").and_then(|k| k.as_str()) == Some("Status") {
            return Err(status_text(&document));
        }
        let items = match document.get("items") {
            Some(items) if items.is_null() => &[][..],
            Some(items) => items.as_array().ok_or("items is not an array")?.as_slice(),
            None => return Err("answer has no items".into()),
        };
        if items.len() > MAX_SLICES {
            return Err(format!("{} EndpointSlices, more than {MAX_SLICES}", items.len()));
        }
        self.by_name.clear();
        for item in items {
            self.put(item)?;
        }
        self.resource_version = metadata_text(&document, "resourceVersion").unwrap_or_default().to_string();
        Ok(())
    }

    /// Applies one line of a watch stream.
    pub fn apply(&mut self, line: &str) -> Result<Event, WatchEnd> {
        let event = parse(line).map_err(WatchEnd::Failed)?;
        let object = event.get("object").filter(|o| o.is_object());
        let kind = event.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        let object = match (kind, object) {
            ("ERROR", Some(status)) if status.get("code").and_then(|c| c.as_u64()) == Some(410) => {
                return Err(WatchEnd::Gone)
            }
            ("ERROR", Some(status)) => return Err(WatchEnd::Failed(status_text(status))),
            (_, Some(object)) => object,
            _ => return Err(WatchEnd::Failed(format!("watch event {kind:?} without an object"))),
        };
        let outcome = match kind {
            "ADDED" | "MODIFIED" => self.put(object).map(|()| Event::Changed),
            "DELETED" => {
                let name = metadata_text(object, "name").unwrap_or_default();
                self.by_name.remove(name);
                Ok(Event::Changed)
            }
            "BOOKMARK" => Ok(Event::Bookmark),
            other => Err(format!("unknown watch event {other:?}")),
        };
        let event = outcome.map_err(WatchEnd::Failed)?;
        if let Some(version) = metadata_text(object, "resourceVersion").filter(|v| !v.is_empty()) {
            self.resource_version = version.to_string();
        }
        Ok(event)
    }

    fn put(&mut self, slice: &Value) -> Result<(), String> {
        let name =
            metadata_text(slice, "name").filter(|n| !n.is_empty()).ok_or("EndpointSlice without a name")?;
        if !self.by_name.contains_key(name) && self.by_name.len() >= MAX_SLICES {
            return Err(format!("more than {MAX_SLICES} EndpointSlices"));
        }
        let read = read_slice(slice, self.port_name.as_deref());
        self.by_name.insert(name.to_string(), read);
        Ok(())
    }

    /// The backends of all slices, each address once (an endpoint can sit in two slices while
    /// it moves), with the notes of what was left out.
    pub fn found(&self) -> Found {
        let mut found = Found::default();
        let mut seen = std::collections::HashSet::new();
        for (name, (backends, notes)) in &self.by_name {
            for backend in backends {
                if seen.insert((backend.host.as_str(), backend.port)) {
                    found.backends.push(backend.clone());
                }
            }
            found.notes.extend(notes.iter().map(|note| format!("EndpointSlice {name:?}: {note}")));
        }
        found
    }
}

/// A Status object as one line: its message, reason and code.
fn status_text(status: &Value) -> String {
    let field = |key: &str| status.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    let code = status.get("code").and_then(|c| c.as_u64()).unwrap_or(0);
    format!("API error {code} {}: {}", field("reason"), field("message"))
}

/// The backends of one slice: its ready endpoints at the chosen port, and notes on what was
/// left out.
fn read_slice(slice: &Value, port_name: Option<&str>) -> (Vec<BackendSpec>, Vec<String>) {
    let mut notes = Vec::new();
    let ports = slice.get("ports").and_then(|p| p.as_array()).map_or(&[][..], |p| p.as_slice());
    let name_of = |p: &Value| p.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
    let port = match port_name {
        Some(wanted) => ports.iter().find(|p| name_of(p) == wanted),
        None if ports.len() == 1 => ports.first(),
        None => {
            if !ports.is_empty() {
                let names: Vec<String> = ports.iter().map(name_of).collect();
                notes.push(format!("ports {names:?}: set kubernetes_port_name to choose one"));
            }
            None
        }
    };
    let Some(port) = port else {
        if let Some(wanted) = port_name {
            notes.push(format!("no port named {wanted:?}"));
        }
        return (Vec::new(), notes);
    };
    let Some(port) =
        port.get("port").and_then(|p| p.as_u64()).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0)
    else {
        notes.push("the port has no usable number".into());
        return (Vec::new(), notes);
    };
    let endpoints = slice.get("endpoints").and_then(|e| e.as_array()).map_or(&[][..], |e| e.as_slice());
    if endpoints.len() > MAX_ENDPOINTS_PER_SLICE {
        notes.push(format!("{} endpoints: only the first {MAX_ENDPOINTS_PER_SLICE} read", endpoints.len()));
    }
    let mut backends = Vec::new();
    for endpoint in endpoints.iter().take(MAX_ENDPOINTS_PER_SLICE) {
        let ready = endpoint.get("conditions").and_then(|c| c.get("ready")).and_then(|r| r.as_bool());
        if ready == Some(false) {
            continue;
        }
        let address = endpoint.get("addresses").and_then(|a| a.get(0)).and_then(|a| a.as_str());
        match address {
            Some(host) if is_host_name(host) => backends.push(BackendSpec::new(host, port)),
            Some(host) => notes.push(format!("address {host:?} is no host name: skipped")),
            None => notes.push("an endpoint without addresses: skipped".into()),
        }
    }
    (backends, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, version: &str, endpoints: &str, ports: &str) -> String {
        format!(
            r#"{{"kind":"EndpointSlice","metadata":{{"name":"{name}","resourceVersion":"{version}"}},
                "addressType":"IPv4","endpoints":[{endpoints}],"ports":[{ports}]}}"#
        )
    }

    fn addresses(slices: &Slices) -> Vec<String> {
        slices.found().backends.iter().map(|b| b.address()).collect()
    }

    const HTTP: &str = r#"{"name":"http","port":8080,"protocol":"TCP"}"#;
    const METRICS: &str = r#"{"name":"metrics","port":9090}"#;

    #[test]
    fn ready_endpoints_at_the_named_port() {
        let endpoints = r#"{"addresses":["10.0.0.1"],"conditions":{"ready":true}},
                           {"addresses":["10.0.0.2","10.0.0.9"]},
                           {"addresses":["10.0.0.3"],"conditions":{"ready":null}},
                           {"addresses":["10.0.0.4"],"conditions":{"ready":false,"terminating":true}},
                           {"addresses":[]}, {"addresses":["a b"]}"#;
        let list = format!(
            r#"{{"kind":"EndpointSliceList","metadata":{{"resourceVersion":"100"}},"items":[{},{}]}}"#,
            slice("web-a", "90", endpoints, &format!("{HTTP},{METRICS}")),
            slice("web-b", "95", r#"{"addresses":["10.0.0.1"]},{"addresses":["fd00::5"]}"#, HTTP)
        );
        let mut slices = Slices::new(Some("http".into()));
        slices.list(&list).unwrap();
        assert_eq!(slices.resource_version, "100");
        assert_eq!(addresses(&slices), ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "[fd00::5]:8080"]);
        assert_eq!(slices.found().notes.len(), 2, "{:?}", slices.found().notes);

        let mut unnamed = Slices::new(None);
        unnamed.list(&list).unwrap();
        assert_eq!(addresses(&unnamed), ["10.0.0.1:8080", "[fd00::5]:8080"], "only web-b has one port");
        assert!(unnamed.found().notes[0].contains("kubernetes_port_name"), "{:?}", unnamed.found().notes);

        let mut missing = Slices::new(Some("grpc".into()));
        missing.list(&list).unwrap();
        assert!(addresses(&missing).is_empty());
    }

    #[test]
    fn watch_events_change_the_backends() {
        let mut slices = Slices::new(None);
        slices.list(r#"{"metadata":{"resourceVersion":"5"},"items":null}"#).unwrap();
        assert!(addresses(&slices).is_empty());
        let event = |kind: &str, object: &str| format!(r#"{{"type":"{kind}","object":{object}}}"#);
        let a = slice("a", "6", r#"{"addresses":["10.0.0.1"]}"#, HTTP);
        assert_eq!(slices.apply(&event("ADDED", &a)), Ok(Event::Changed));
        assert_eq!(
            (addresses(&slices), slices.resource_version.as_str()),
            (vec!["10.0.0.1:8080".into()], "6")
        );
        let a = slice("a", "7", r#"{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"]}"#, HTTP);
        slices.apply(&event("MODIFIED", &a)).unwrap();
        assert_eq!(addresses(&slices).len(), 2);
        let bookmark = event("BOOKMARK", r#"{"kind":"EndpointSlice","metadata":{"resourceVersion":"12"}}"#);
        assert_eq!(slices.apply(&bookmark), Ok(Event::Bookmark));
        assert_eq!((addresses(&slices).len(), slices.resource_version.as_str()), (2, "12"));
        slices.apply(&event("DELETED", &slice("a", "13", "", HTTP))).unwrap();
        assert!(addresses(&slices).is_empty());
        let gone = event("ERROR", r#"{"kind":"Status","code":410,"reason":"Expired","message":"too old"}"#);
        assert_eq!(slices.apply(&gone), Err(WatchEnd::Gone));
        let denied = event("ERROR", r#"{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}"#);
        assert!(matches!(slices.apply(&denied), Err(WatchEnd::Failed(e)) if e.contains("403")));
        for bad in [
            "{",
            "[]",
            r#"{"type":"ADDED"}"#,
            r#"{"type":"NEW","object":{}}"#,
            r#"{"type":"ADDED","object":{}}"#,
        ] {
            assert!(matches!(slices.apply(bad), Err(WatchEnd::Failed(_))), "{bad}");
        }
        assert_eq!(slices.resource_version, "13");
    }

    #[test]
    fn hostile_lists_are_refused_or_bounded() {
        let mut slices = Slices::new(None);
        assert!(slices.list(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))).is_err());
        assert!(slices
            .list(r#"{"kind":"Status","code":403,"message":"forbidden"}"#)
            .unwrap_err()
            .contains("403"));
        assert!(slices.list("{}").is_err());
        let many = vec![r#"{"metadata":{"name":"x"}}"#; MAX_SLICES + 1].join(",");
        assert!(slices.list(&format!(r#"{{"items":[{many}]}}"#)).is_err());
        let endpoints = vec![r#"{"addresses":["10.0.0.1"]}"#; MAX_ENDPOINTS_PER_SLICE + 5].join(",");
        slices.list(&format!(r#"{{"items":[{}]}}"#, slice("s", "1", &endpoints, HTTP))).unwrap();
        assert_eq!(slices.found().backends.len(), 1, "the same address once");
        assert!(slices.found().notes[0].contains("only the first"));
    }
}
