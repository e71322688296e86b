//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz): one function per parser of
//! untrusted input, each taking raw bytes, driving the parser as betwixt does and asserting what
//! must hold of its answer. A panic here is a bug in the parser. Not part of betwixt's API.
//!
//! Inputs that feed a parser several values (patterns and a body, a name and a body) separate
//! them with NUL bytes, which none of the texts can hold usefully.

use crate::access::AccessRules;
use crate::api::routes;
use crate::backend::{split_host_port, BackendSpec};
use crate::config::{
    duration, parse_text, refuse_unsupported, render, validate::validate_server, Access, Config, Discovery,
    Format, GoDuration, LooseDuration, WrittenDuration,
};
use crate::discovery::kubernetes::{credentials, slices::Slices};
use crate::discovery::lines::{collect, document_lines};
use crate::discovery::{consul, docker, exec, json::Json, lxd::Lxd, plaintext::Plaintext, srv, Found};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Every backend discovery hands on must be usable: a host, and no control character anywhere.
fn check_found(found: &Found) {
    for backend in &found.backends {
        assert!(!backend.host.is_empty(), "empty host in {backend:?}");
        assert!(!backend.host.contains(crate::text::is_unsafe), "control character in {backend:?}");
        let sni = backend.sni.as_deref().unwrap_or("");
        assert!(!sni.contains(crate::text::is_unsafe), "control character in the sni of {backend:?}");
    }
}

/// A whole configuration file, as `betwixt check` reads and prints it: the first byte picks
/// the format (even: TOML, odd: JSON) and whether `${VAR}` is substituted. What `check` prints
/// must read back as the same configuration.
pub fn config(data: &[u8]) {
    let Some((&mode, text)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let format = if mode & 1 == 0 { Format::Toml } else { Format::Json };
    let Ok((config, _)) = parse_text(text, format, mode & 2 != 0) else { return };
    let _ = refuse_unsupported(&config);
    let normalized = config.normalized();
    // JSON too: the fuzz crate builds sonic-rs with its `sanitize` feature, whose string
    // writer then stays inside its buffers (see fuzz/Cargo.toml).
    for format in [Format::Toml, Format::Json] {
        let printed = render(&normalized, format);
        match parse_text(&printed, format, false) {
            Ok((again, _)) => assert_eq!(again.normalized(), normalized, "{format:?} round trip"),
            Err(e) => panic!("`check` printed {format:?} that does not read back: {e}\n{printed}"),
        }
    }
}

/// A Go duration, in each of the ways the configuration and the API read one. One that reads
/// prints as a duration that reads back the same.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = WrittenDuration::parse(text);
    let _ = LooseDuration::new(text).limit();
    if let Ok(value) = duration::parse(text) {
        assert!(value <= duration::MAX, "{text:?} read as {value:?}, over the maximum");
        let printed = GoDuration(value).to_string();
        assert_eq!(duration::parse(&printed), Ok(value), "{text:?} printed as {printed:?}");
    }
}

/// Backend lines (`static_list`, exec and plaintext discovery), one per line, and `HOST:PORT`
/// as the drain endpoint of the API reads it. A backend that reads prints as a line that reads
/// back as the same backend.
pub fn backend_lines(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (backends, _) = collect(document_lines(text), &BackendSpec::read_line);
    for backend in &backends {
        let printed = backend.to_string();
        match BackendSpec::read_line(&printed) {
            Ok((again, _)) => assert_eq!(&again, backend, "{printed:?}"),
            Err(e) => panic!("backend {backend:?} printed as {printed:?}, which does not read: {e}"),
        }
    }
    check_found(&exec::read_output(text));
    for line in text.lines() {
        let _ = split_host_port(line);
    }
}

/// An `[access]` section: the first line is `default`, the others are rules. Rules that read
/// give a verdict for any client.
pub fn access_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let section =
        Access { default: lines.next().map(String::from), rules: Some(lines.map(String::from).collect()) };
    let Ok(rules) = AccessRules::from_section(&section) else { return };
    let clients: [IpAddr; 4] = [
        [127, 0, 0, 1].into(),
        [10, 1, 2, 3].into(),
        [0u16; 8].into(),
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1].into(),
    ];
    for client in clients {
        rules.verdict(client);
    }
}

/// The body of `POST /servers/NAME`: `NAME`, a NUL, the body. What the API accepts goes through
/// the checks the control plane makes before it starts a server.
pub fn api_server(data: &[u8]) {
    let Some(split) = data.iter().position(|&b| b == 0) else { return };
    let Ok(name) = std::str::from_utf8(&data[..split]) else { return };
    let body = &data[split + 1..];
    let Ok((server, _)) = routes::read_server(name, body, false) else { return };
    routes::runs_commands(&server);
    if validate_server(name, &server).is_err() {
        return;
    }
    let single =
        Config { servers: BTreeMap::from([(name.to_string(), server.clone())]), ..Config::default() };
    let _ = refuse_unsupported(&single);
    server.resolve(name, None);
}

/// A request's method (first byte) and path with query: the routing the API does itself (its
/// 404s and gin's trailing-slash redirects) and the `?drain=` duration of `DELETE`.
pub fn api_path(data: &[u8]) {
    use axum::http::{Method, Uri};
    let Some((&pick, rest)) = data.split_first() else { return };
    let methods = [Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::OPTIONS];
    let method = methods[pick as usize % methods.len()].clone();
    let Ok(uri) = Uri::try_from(rest) else { return };
    routes::is_route(&method, uri.path());
    let answer = poll_ready(routes::not_found(method, uri.clone()));
    assert!(!answer.status().is_server_error(), "{uri} answered {}", answer.status());
    for pair in uri.query().unwrap_or("").split('&') {
        if let Some(drain) = pair.strip_prefix("drain=") {
            let _ = duration::parse(drain);
        }
    }
}

/// The value of a future that never waits (a handler with nothing to await).
fn poll_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the future waited"),
    }
}

/// A DNS answer to an SRV question, read as SRV discovery reads it (the query ID is taken from
/// the answer, so that the rest is read).
pub fn srv_answer(data: &[u8]) {
    let Some(id) = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return };
    let Ok(answer) = srv::answer_to(id, data) else { return };
    srv::addresses(answer.answers());
    let Ok(records) = srv::srv_records(&answer) else { return };
    let hosts = srv::addresses(answer.additionals());
    check_found(&srv::backends(&records, &hosts));
}

/// A `json_endpoint` answer: either the body alone (default patterns) or the six
/// `json_*_pattern`s (host, port, weight, priority, sni, max_connections), each followed by a
/// NUL, then the body.
pub fn discovery_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut d = Discovery { json_endpoint: Some("http://127.0.0.1:1/".into()), ..Discovery::default() };
    let fields: Vec<&str> = text.splitn(7, '\0').collect();
    let body = if let [host, port, weight, priority, sni, max_connections, body] = fields[..] {
        d.json_host_pattern = Some(host.into());
        d.json_port_pattern = Some(port.into());
        d.json_weight_pattern = Some(weight.into());
        d.json_priority_pattern = Some(priority.into());
        d.json_sni_pattern = Some(sni.into());
        d.json_max_connections_pattern = Some(max_connections.into());
        body
    } else {
        text
    };
    let Ok(json) = Json::from_section(&d) else { return };
    if let Ok(found) = json.read(body) {
        check_found(&found);
    }
}

/// A `plaintext_endpoint` answer: the body alone (backend lines), or a
/// `plaintext_regex_pattern`, a NUL, then the body.
pub fn discovery_plaintext(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, body) = text.split_once('\0').map_or((None, &*text), |(p, b)| (Some(p.to_string()), b));
    let d = Discovery {
        plaintext_endpoint: Some("http://127.0.0.1:1/".into()),
        plaintext_regex_pattern: pattern,
        ..Discovery::default()
    };
    let Ok(plaintext) = Plaintext::from_section(&d) else { return };
    check_found(&plaintext.read(body));
}

/// Answers of the Docker Engine API: the container list, a container's inspection and an
/// event of the event stream, each read from the same bytes.
pub fn discovery_docker(data: &[u8]) {
    let _ = docker::parse::<Vec<docker::Container>>(data, "the container list");
    let _ = docker::parse::<docker::Inspected>(data, "the container's inspection");
    if let Ok(event) = docker::parse::<sonic_rs::Value>(data, "an event") {
        docker::is_change(&event);
    }
}

/// An answer of Consul's `/v1/health/service`.
pub fn discovery_consul(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else { return };
    if let Ok(found) = consul::read_entries(body) {
        check_found(&found);
    }
}

/// An `EndpointSliceList`, then watch events, one per line (after a NUL); the port name, if
/// any, is the list's first line when the input starts with `port=`.
pub fn discovery_kubernetes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (port_name, text) = match text.strip_prefix("port=").and_then(|t| t.split_once('\n')) {
        Some((name, rest)) => (Some(name.to_string()), rest),
        None => (None, text),
    };
    let (list, events) = text.split_once('\0').unwrap_or((text, ""));
    let mut slices = Slices::new(port_name);
    let _ = slices.list(list);
    for line in events.lines() {
        let _ = slices.apply(line);
    }
    check_found(&slices.found());
}

/// A kubeconfig, as if read from a file in a folder that does not exist (so that the files it
/// names relative to itself are not there).
pub fn kubeconfig(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = credentials::from_kubeconfig_text(text, Path::new("/nonexistent/betwixt-fuzz/config"));
}

/// An answer of LXD's `/1.0/containers?recursion=2`, read with a label, a port key, an
/// interface key and an sni key set (so that each path is taken), the address family from the
/// first byte.
pub fn discovery_lxd(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let d = Discovery {
        lxd_server_address: Some("unix:///nonexistent/lxd.socket".into()),
        lxd_container_port: Some(80),
        lxd_container_port_key: (mode & 1 != 0).then(|| "user.port".into()),
        lxd_container_label_key: (mode & 2 != 0).then(|| "user.label".into()),
        lxd_container_label_value: (mode & 4 != 0).then(|| "web".into()),
        lxd_container_interface_key: (mode & 8 != 0).then(|| "user.interface".into()),
        lxd_container_sni_key: Some("user.sni".into()),
        lxd_container_address_type: Some(if mode & 16 != 0 { "IPv6" } else { "IPv4" }.into()),
        ..Discovery::default()
    };
    let lxd = Lxd::from_section(&d).expect("a valid section");
    if let Ok(found) = lxd.read(body) {
        check_found(&found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What fuzzing found, kept passing: each input as the fuzzer gave it to its target.
    #[test]
    fn past_findings_hold() {
        // An empty host in brackets, then brackets inside the host, both in backend lines.
        backend_lines(b"[]:443");
        backend_lines(b"[[0]]:442\n[0]:442\n[0]]:442");
        // A host of a Unicode blank in brackets, which printed without them read as no host.
        backend_lines(
            b"e\n[U:443\n\n[]:4433333\n33\n[e33$3333\xc2\xa0\xc2\xa0\xc2\xa0\n[]:443\n\n[\xc2\xa0]:443\n",
        );
    }

    /// The committed seeds of the `config` target, through it: each format's printout must
    /// read back (the JSON round trip is new and runs here without a fuzzer too).
    #[test]
    fn config_seeds_round_trip_in_both_formats() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            config(&data);
            seen += 1;
        }
        assert!(seen > 0, "no seeds");
    }
}
