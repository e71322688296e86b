//! kubernetes discovery with the real binary and real backends. No Kubernetes API server is
//! packaged here: the tests run against a replay of its HTTP API built from the published API
//! reference — EndpointSlices (`discovery.k8s.io/v1`) listed by the
//! `kubernetes.io/service-name` label with a list `resourceVersion`, and watched
//! (`?watch=1&resourceVersion=RV`: a chunked stream of ADDED/MODIFIED/DELETED/BOOKMARK/ERROR
//! events for versions after RV, an ERROR Status with code 410 when RV is too old) — served over
//! HTTPS with a test CA and a bearer token, as a kubeconfig describes.

mod common;

use common::backends::{Backend, Behaviour};
use common::replay::{respond, serve, Request, Shared};
use common::{ask_name, free_port, wait_until, Betwixt, TempDir};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(10);
const TOKEN: &str = "t0ken";

/// The API's state: the Service's slices (name → JSON with its version), every event since the
/// start with its version, and versions below `oldest` compacted away (watching from them: 410).
struct Api {
    version: u64,
    slices: Vec<(String, String)>,
    events: Vec<(u64, String)>,
    oldest: u64,
}

impl Api {
    fn slice_json(name: &str, version: u64, endpoints: &[(u16, bool)]) -> String {
        // One slice per backend port would be odd; here each slice has one port, named http,
        // and its endpoints are loopback addresses at that port.
        let port = endpoints.first().map_or(1, |e| e.0);
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|(_, ready)| {
                format!(r#"{{"addresses":["127.0.0.1"],"conditions":{{"ready":{ready},"serving":{ready}}}}}"#)
            })
            .collect();
        format!(
            r#"{{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",
                "metadata":{{"name":"{name}","namespace":"shop","resourceVersion":"{version}",
                "labels":{{"kubernetes.io/service-name":"web"}}}},"addressType":"IPv4",
                "endpoints":[{}],"ports":[{{"name":"http","protocol":"TCP","port":{port}}},
                {{"name":"metrics","protocol":"TCP","port":9}}]}}"#,
            endpoints.join(",")
        )
        // A watch stream is one JSON object per line.
        .replace('\n', " ")
    }

    /// Sets (or, with `None`, deletes) a slice, as one event.
    fn set(&mut self, name: &str, endpoints: Option<&[(u16, bool)]>) {
        self.version += 1;
        let existed = self.slices.iter().any(|(n, _)| n == name);
        let json = Api::slice_json(name, self.version, endpoints.unwrap_or(&[]));
        self.slices.retain(|(n, _)| n != name);
        let kind = match (endpoints, existed) {
            (None, _) => "DELETED",
            (Some(_), true) => "MODIFIED",
            (Some(_), false) => "ADDED",
        };
        if endpoints.is_some() {
            self.slices.push((name.to_string(), json.clone()));
        }
        self.events.push((self.version, format!(r#"{{"type":"{kind}","object":{json}}}"#)));
    }
}

fn chunk(stream: &mut impl Write, line: &str) -> bool {
    let data = format!("{line}\n");
    write!(stream, "{:x}\r\n{data}\r\n", data.len()).and_then(|()| stream.flush()).is_ok()
}

fn answer(shared: &Shared<Api>, request: &Request, stream: &mut impl Write) {
    if request.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {TOKEN}")) {
        return respond(stream, "401 Unauthorized", "", r#"{"kind":"Status","code":401}"#);
    }
    let expected = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";
    if request.path != expected
        || request.query.get("labelSelector").map(String::as_str) != Some("kubernetes.io/service-name=web")
    {
        return respond(stream, "404 Not Found", "", r#"{"kind":"Status","code":404}"#);
    }
    if !request.query.contains_key("watch") {
        let api = shared.lock();
        let items: Vec<&str> = api.slices.iter().map(|(_, json)| json.as_str()).collect();
        let body = format!(
            r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{}"}},"items":[{}]}}"#,
            api.version,
            items.join(",")
        );
        drop(api);
        return respond(stream, "200 OK", "", &body);
    }
    let mut since: u64 = request.query["resourceVersion"].parse().unwrap();
    let seconds: u64 = request.query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800);
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let end = Instant::now() + Duration::from_secs(seconds);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let api = shared.wait_for(left, |api| api.version > since || since < api.oldest);
        if since < api.oldest {
            let gone = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}"#;
            drop(api);
            chunk(stream, gone);
            break;
        }
        let news: Vec<(u64, String)> = api.events.iter().filter(|(v, _)| *v > since).cloned().collect();
        drop(api);
        if news.is_empty() && Instant::now() >= end {
            break;
        }
        for (version, event) in news {
            if !chunk(stream, &event) {
                return;
            }
            since = version;
        }
    }
    let _ = write!(stream, "0\r\n\r\n");
}

/// A test CA, the API's certificate for 127.0.0.1 signed by it, and a kubeconfig naming both.
struct Cluster {
    _dir: TempDir,
    kubeconfig: String,
    shared: Arc<Shared<Api>>,
}

impl Cluster {
    fn start(slices: &[(&str, &[(u16, bool)])]) -> Cluster {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(cert.der().to_vec())],
                    PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
                )
                .unwrap();
        let config = Arc::new(config);
        let mut api = Api { version: 100, slices: Vec::new(), events: Vec::new(), oldest: 0 };
        for (name, endpoints) in slices {
            api.set(name, Some(endpoints));
        }
        let shared = Shared::new(api);
        let wrap = move |tcp: TcpStream| {
            let connection = rustls::ServerConnection::new(config.clone()).ok()?;
            Some(rustls::StreamOwned::new(connection, tcp))
        };
        let port = serve(shared.clone(), wrap, answer);
        let dir = TempDir::new("kubernetes");
        dir.write("ca.crt", &ca.pem());
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: replay\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    certificate-authority: ca.crt\ncontexts:\n- name: test\n  \
             context:\n    cluster: replay\n    user: lb\n    namespace: shop\nusers:\n- name: lb\n  user:\n    \
             token: {TOKEN}\n"
        );
        let kubeconfig = dir.write("kubeconfig", &kubeconfig).display().to_string();
        Cluster { _dir: dir, kubeconfig, shared }
    }

    fn config(&self, port: u16) -> String {
        format!(
            "[servers.s]\nbind = \"127.0.0.1:{port}\"\n[servers.s.discovery]\nkind = \"kubernetes\"\n\
             interval = \"20s\"\ntimeout = \"2s\"\nkubernetes_kubeconfig_path = \"{}\"\n\
             kubernetes_service_name = \"web\"\nkubernetes_port_name = \"http\"\n",
            self.kubeconfig
        )
    }

    fn watches(&self) -> usize {
        self.shared.requests_to("endpointslices").iter().filter(|r| r.query.contains_key("watch")).count()
    }

    fn lists(&self) -> usize {
        self.shared.requests_to("endpointslices").iter().filter(|r| !r.query.contains_key("watch")).count()
    }
}

/// Every name answering on `port` within a few tries each.
fn answers_only(port: u16, names: &[&str]) -> bool {
    wait_until(LONG, || {
        let seen: std::collections::BTreeSet<String> = (0..20).filter_map(|_| ask_name(port)).collect();
        seen.iter().map(String::as_str).eq(names.iter().copied())
    })
}

#[test]
fn watch_events_add_and_remove_backends_at_once_and_not_ready_endpoints_stay_out() {
    let a = Backend::start("a", Behaviour::Named);
    let b = Backend::start("b", Behaviour::Named);
    let c = Backend::start("c", Behaviour::Named);
    let cluster = Cluster::start(&[("web-1", &[(a.port, true)]), ("web-2", &[(b.port, false)])]);
    let port = free_port();
    let bx = Betwixt::start(&cluster.config(port), &[], &[port]);
    assert!(answers_only(port, &["a"]), "{}", bx.log_text());
    assert!(wait_until(LONG, || cluster.watches() > 0));
    std::thread::sleep(Duration::from_millis(300));

    // Each change reaches betwixt through the open watch, long before the 20 s interval.
    let started = Instant::now();
    cluster.shared.change(|api| api.set("web-3", Some(&[(c.port, true)])));
    assert!(answers_only(port, &["a", "c"]), "{}", bx.log_text());
    cluster.shared.change(|api| api.set("web-2", Some(&[(b.port, true)])));
    assert!(answers_only(port, &["a", "b", "c"]), "{}", bx.log_text());
    cluster.shared.change(|api| api.set("web-1", Some(&[(a.port, false)])));
    cluster.shared.change(|api| api.set("web-3", None));
    assert!(answers_only(port, &["b"]), "{}", bx.log_text());
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert_eq!(cluster.lists(), 1, "one list, then watching: {}", bx.log_text());
}

#[test]
fn a_watch_from_a_compacted_version_lists_again() {
    let a = Backend::start("a", Behaviour::Named);
    let b = Backend::start("b", Behaviour::Named);
    let cluster = Cluster::start(&[("web-1", &[(a.port, true)])]);
    let port = free_port();
    let bx = Betwixt::start(&cluster.config(port), &[], &[port]);
    assert!(answers_only(port, &["a"]), "{}", bx.log_text());
    assert!(wait_until(LONG, || cluster.watches() > 0));

    // The history is compacted past betwixt's version and b appears meanwhile: the watch ends
    // with 410 Gone, and only a new list can show b.
    cluster.shared.change(|api| {
        api.set("web-2", Some(&[(b.port, true)]));
        api.events.clear();
        api.oldest = api.version + 1;
    });
    assert!(answers_only(port, &["a", "b"]), "{}", bx.log_text());
    assert!(cluster.lists() >= 2, "listed again");
}
