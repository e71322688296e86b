//! consul discovery with the real binary and real backends. No Consul server is packaged here:
//! the tests run against a replay of Consul's HTTP API built from its published reference
//! (`GET /v1/health/service/:service` with `passing`, `tag`, `dc`; the `X-Consul-Index` header;
//! blocking queries, which hold a request carrying `index` until the index moves past it or
//! `wait` passes). The replay keeps those semantics, so a change arriving well within the
//! `interval` shows betwixt blocks rather than polls.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::replay::{respond, serve, Request, Shared};
use common::{ask_name, closed_without_data, free_port, wait_until, Betwixt};
use sonic_rs::JsonValueTrait;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(10);

/// A registered instance: its backend, tags and whether its checks pass.
struct Instance {
    port: u16,
    tags: Vec<&'static str>,
    passing: bool,
}

struct Catalog {
    index: u64,
    instances: Vec<Instance>,
    /// Down: connections are closed without an answer.
    down: bool,
}

/// Consul's `wait` parameter: a Go duration in `ms` or `s`.
fn wait_of(request: &Request) -> Duration {
    let wait = request.query.get("wait").map(String::as_str).unwrap_or("5m");
    match wait.strip_suffix("ms") {
        Some(ms) => Duration::from_millis(ms.parse().unwrap()),
        None => Duration::from_secs(wait.trim_end_matches('s').parse().unwrap_or(300)),
    }
}

fn answer(shared: &Shared<Catalog>, request: &Request, stream: &mut TcpStream) {
    if !request.path.starts_with("/v1/health/service/") {
        return respond(stream, "404 Not Found", "", "");
    }
    let since: u64 = request.query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    // A blocking query: held while the index has not moved past the client's.
    let catalog = shared.wait_for(wait_of(request), |c| since == 0 || c.index > since || c.down);
    if catalog.down {
        return;
    }
    let passing_only = request.query.get("passing").is_some_and(|p| p == "1");
    let tag = request.query.get("tag");
    let entries: Vec<String> = catalog
        .instances
        .iter()
        .filter(|i| !passing_only || i.passing)
        .filter(|i| tag.is_none_or(|t| i.tags.contains(&t.as_str())))
        .map(|i| {
            let status = if i.passing { "passing" } else { "critical" };
            format!(
                r#"{{"Node":{{"Node":"n1","Address":"127.0.0.1","Datacenter":"dc1"}},
                    "Service":{{"ID":"web-{port}","Service":"web","Tags":{tags:?},"Address":"","Port":{port}}},
                    "Checks":[{{"CheckID":"serfHealth","Status":"{status}"}}]}}"#,
                port = i.port,
                tags = i.tags,
            )
        })
        .collect();
    let header = format!("X-Consul-Index: {}\r\nX-Consul-Knownleader: true\r\n", catalog.index);
    drop(catalog);
    respond(stream, "200 OK", &header, &format!("[{}]", entries.join(",")));
}

fn replay(instances: Vec<Instance>) -> (u16, Arc<Shared<Catalog>>) {
    let shared = Shared::new(Catalog { index: 10, instances, down: false });
    let port = serve(shared.clone(), Some, answer);
    (port, shared)
}

fn server(name: &str, port: u16, consul: u16, extra: &str) -> String {
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\nkind = \"consul\"\n\
         interval = \"20s\"\ntimeout = \"2s\"\nconsul_host = \"127.0.0.1:{consul}\"\n\
         consul_service_name = \"web\"\n{extra}\n"
    )
}

fn api_section(api: u16) -> String {
    format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n")
}

#[test]
fn changes_arrive_at_once_through_blocking_queries_with_filters_and_credentials() {
    let a = Backend::start("a", Behaviour::Named);
    let failing = Backend::start("failing", Behaviour::Named);
    let untagged = Backend::start("untagged", Behaviour::Named);
    let c = Backend::start("c", Behaviour::Named);
    let (consul, catalog) = replay(vec![
        Instance { port: a.port, tags: vec!["v2", "sni=a.test"], passing: true },
        Instance { port: failing.port, tags: vec!["v2"], passing: false },
        Instance { port: untagged.port, tags: vec!["v1"], passing: true },
    ]);
    let (port, api) = (free_port(), free_port());
    let keys =
        "consul_service_tag = \"v2\"\nconsul_service_passing_only = true\nconsul_datacenter = \"dc1\"\n\
                consul_acl_token = \"s3cret\"\nconsul_auth_username = \"lb\"\nconsul_auth_password = \"pw\"";
    let config = api_section(api) + &server("s", port, consul, keys);
    let bx = Betwixt::start(&config, &[], &[port, api]);
    assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    // Only the passing instance with the tag: the others never answer through betwixt.
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")));
    let stats = Client::http(api).get_json("/servers/s/stats");
    let sni =
        stats.get("backends").and_then(|b| b.get(0)).and_then(|b| b.get("sni")).and_then(|v| v.as_str());
    assert_eq!(sni, Some("a.test"), "{stats:?}");

    // Let betwixt settle into a blocking query, then register c: it must take traffic long
    // before the 20 s interval would have brought it.
    assert!(wait_until(LONG, || catalog
        .requests_to("/v1/health")
        .iter()
        .any(|r| r.query.contains_key("index"))));
    std::thread::sleep(Duration::from_millis(300));
    let changed = Instant::now();
    catalog.change(|c_| {
        c_.instances.push(Instance { port: c.port, tags: vec!["v2"], passing: true });
        c_.index = 11;
    });
    assert!(
        wait_until(Duration::from_secs(3), || ask_name(port).as_deref() == Some("c")),
        "c did not arrive: {}",
        bx.log_text()
    );
    assert!(changed.elapsed() < Duration::from_secs(5), "took {:?}", changed.elapsed());

    let requests = catalog.requests_to("/v1/health/service/web");
    let blocking: Vec<_> = requests.iter().filter(|r| r.query.contains_key("index")).collect();
    assert!(!blocking.is_empty());
    assert!(blocking.iter().all(|r| r.query.contains_key("wait")), "{blocking:?}");
    // No polling: a handful of requests, not one per 100 ms.
    assert!(requests.len() < 10, "{} requests: {requests:?}", requests.len());
    for r in &requests {
        assert_eq!(r.query.get("tag").map(String::as_str), Some("v2"));
        assert_eq!(r.query.get("passing").map(String::as_str), Some("1"));
        assert_eq!(r.query.get("dc").map(String::as_str), Some("dc1"));
        assert_eq!(r.headers.get("x-consul-token").map(String::as_str), Some("s3cret"));
        // base64("lb:pw")
        assert_eq!(r.headers.get("authorization").map(String::as_str), Some("Basic bGI6cHc="));
    }
}

#[test]
fn a_consul_that_goes_down_applies_the_failpolicy() {
    let a = Backend::start("a", Behaviour::Named);
    let (consul, catalog) = replay(vec![Instance { port: a.port, tags: vec![], passing: true }]);
    let (keep, empty, api) = (free_port(), free_port(), free_port());
    let config = api_section(api)
        + &server("keep", keep, consul, "")
        + &server("empty", empty, consul, "failpolicy = \"setempty\"");
    let bx = Betwixt::start(&config, &[], &[keep, empty, api]);
    for port in [keep, empty] {
        assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    }
    // Held queries are cut, and new ones get no answer.
    catalog.change(|c| c.down = true);
    let state = || Client::http(api).get_json("/servers/keep/stats").pointer(["discovery", "state"]).cloned();
    assert!(
        wait_until(LONG, || state().and_then(|s| s.as_str().map(String::from)).as_deref() == Some("failing"))
    );
    assert!(wait_until(LONG, || closed_without_data(empty, Duration::from_secs(2))), "setempty");
    assert!((0..10).all(|_| ask_name(keep).as_deref() == Some("a")), "keeplast");

    // Back: both servers have a again.
    catalog.change(|c| c.down = false);
    assert!(wait_until(LONG, || ask_name(empty).as_deref() == Some("a")), "{}", bx.log_text());
}
