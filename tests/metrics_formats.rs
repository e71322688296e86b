//! What every Prometheus exporter serves, as gobetween's Go client serves it: the classic text
//! format by default and OpenMetrics when the scraper asks, the `process_*` and `promhttp_*`
//! series, and `gobetween_build_info` with all of its labels. And names that reach label values
//! (a server created through the API) cannot break out of their quotes.
//! Each scrape is read by Python's prometheus_client parser for its format (metrics_parse).

mod api_client;
mod common;
mod metrics_parse;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::{free_port, percent_encoded, static_server, Betwixt};
use metrics_parse::{parse_metrics, sample, Parser, PROMETHEUS_ACCEPT};
use sonic_rs::{JsonValueTrait, Value};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// betwixt with the API, metrics and a server `s` whose static list holds `backends` (TOML
/// string contents).
fn start(api: u16, metrics: u16, backends: &[String]) -> Betwixt {
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n{}",
        static_server(free_port(), "weight", backends, "")
    );
    Betwixt::start(&config, &["--shards", "1"], &[api, metrics])
}

fn names(samples: &[Value]) -> BTreeSet<String> {
    samples.iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn classic_text_by_default_openmetrics_when_asked() {
    let backend = Backend::start("web", Behaviour::Named);
    let (api, metrics) = (free_port(), free_port());
    let started = now();
    let _bx = start(api, metrics, &[backend.line()]);
    let client = Client::http(metrics);

    // No Accept header, or one that does not name OpenMetrics (curl's `*/*`): the classic format.
    let classic = client.get("/metrics");
    assert_eq!(classic.status, 200);
    assert_eq!(
        classic.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
    );
    assert!(!classic.body.contains("# EOF"), "{}", classic.body);
    let classic_samples = parse_metrics(&classic.body, Parser::Classic);
    // Every sample belongs to a typed family: in this format a counter's TYPE line must name
    // its `_total` samples, or the parser files them as untyped.
    let untyped: Vec<&Value> = classic_samples
        .iter()
        .filter(|s| !matches!(s["type"].as_str(), Some("gauge" | "counter" | "histogram")))
        .collect();
    assert!(untyped.is_empty(), "{untyped:?}");
    let curl = client.try_send("GET", "/metrics", &[("Accept", "*/*")], "").unwrap();
    assert!(curl.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));

    // What Prometheus asks for: OpenMetrics, read by the strict OpenMetrics parser.
    let open = client.try_send("GET", "/metrics", &[("Accept", PROMETHEUS_ACCEPT)], "").unwrap();
    assert_eq!(open.status, 200);
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores")
    );
    assert!(open.body.ends_with("# EOF\n"));
    let m = parse_metrics(&open.body, Parser::OpenMetrics);
    assert_eq!(names(&m), names(&classic_samples), "both formats carry the same series");

    // process_*, as Go's client reports them, for this very process.
    let open_fds = sample(&m, "process_open_fds", &[]);
    assert!(open_fds > 3.0 && open_fds <= sample(&m, "process_max_fds", &[]), "{open_fds}");
    let resident = sample(&m, "process_resident_memory_bytes", &[]);
    assert!(resident > 1e6 && sample(&m, "process_virtual_memory_bytes", &[]) >= resident, "{resident}");
    assert!(sample(&m, "process_virtual_memory_max_bytes", &[]) > 0.0);
    let start_time = sample(&m, "process_start_time_seconds", &[]);
    assert!(
        start_time >= started - 2.0 && start_time <= now() + 1.0,
        "started {started}, reported {start_time}"
    );
    assert!(sample(&m, "process_cpu_seconds_total", &[]) >= 0.0);
    assert!(sample(&m, "process_network_receive_bytes_total", &[]) >= 0.0);
    assert!(sample(&m, "process_network_transmit_bytes_total", &[]) >= 0.0);

    // gobetween_build_info with all four of gobetween's labels; goversion names the toolchain.
    let info: Vec<&Value> = m.iter().filter(|s| s["name"].as_str() == Some("gobetween_build_info")).collect();
    assert_eq!(info.len(), 1);
    let labels = &info[0]["labels"];
    assert_eq!(labels["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert!(labels["revision"].as_str().is_some_and(|v| !v.is_empty()), "{labels}");
    assert!(labels["branch"].as_str().is_some_and(|v| !v.is_empty()), "{labels}");
    assert!(labels["goversion"].as_str().is_some_and(|v| v.starts_with("rustc ")), "{labels}");
    assert_eq!(info[0]["value"].as_f64(), Some(1.0));

    // promhttp's own series: this scrape is in flight, the two before it completed.
    assert_eq!(sample(&m, "promhttp_metric_handler_requests_in_flight", &[]), 1.0);
    assert_eq!(sample(&m, "promhttp_metric_handler_requests_total", &[("code", "200")]), 2.0);
    assert_eq!(sample(&m, "promhttp_metric_handler_requests_total", &[("code", "503")]), 0.0);
}

#[test]
fn hostile_names_and_hosts_cannot_forge_series() {
    // Written raw into `server="..."`, this closes the label, ends the line and starts a series.
    const LINE_BREAKER: &str = "evil\"} 1\ngobetween_forged{server=\"x\\";
    // And this adds a label, with no control character at all.
    const LABEL_ADDER: &str = "a\",forged=\"1\\";
    // A backend host from discovery (here static; later DNS or Consul) that adds a label.
    const HOST: &str = "h\",forged=\"1\\";
    let backend = Backend::start("web", Behaviour::Named);
    let (api, metrics) = (free_port(), free_port());
    let _bx = start(api, metrics, &[backend.line(), r#"h\",forged=\"1\\:3"#.to_string()]);

    // Whether such names are accepted is the API's decision (control characters are refused);
    // the scrape must be well-formed either way, and show an accepted name exactly.
    let mut servers: BTreeSet<&str> = ["s"].into();
    for name in [LINE_BREAKER, LABEL_ADDER] {
        let port = free_port();
        let body = api_client::static_server(&format!("127.0.0.1:{port}"), &backend.line());
        let created = Client::http(api).send("POST", &format!("/servers/{}", percent_encoded(name)), &body);
        if created.status == 200 {
            assert!(common::wait_for_port(port, Duration::from_secs(5)));
            servers.insert(name);
        }
    }
    assert!(servers.contains(LABEL_ADDER), "a name with quotes is valid; it must come back exactly");

    let client = Client::http(metrics);
    for (accept, parser) in [("text/plain", Parser::Classic), (PROMETHEUS_ACCEPT, Parser::OpenMetrics)] {
        let scrape = client.try_send("GET", "/metrics", &[("Accept", accept)], "").unwrap();
        let m = parse_metrics(&scrape.body, parser);
        let forged: Vec<&Value> = m
            .iter()
            .filter(|s| {
                s["name"].as_str().is_some_and(|n| n.contains("forged")) || !s["labels"]["forged"].is_null()
            })
            .collect();
        assert!(forged.is_empty(), "{parser:?}: forged series or labels {forged:?}\n{}", scrape.body);
        let seen: BTreeSet<&str> = m.iter().filter_map(|s| s["labels"]["server"].as_str()).collect();
        assert_eq!(seen, servers, "{parser:?}");
        for name in &servers {
            let backends = if *name == "s" { 2.0 } else { 1.0 };
            assert_eq!(
                sample(&m, "gobetween_server_count", &[("server", name)]),
                backends,
                "{parser:?} {name}"
            );
        }
        let hosts: BTreeSet<&str> = m
            .iter()
            .filter(|s| s["name"].as_str() == Some("gobetween_backend_live"))
            .filter(|s| s["labels"]["server"].as_str() == Some("s"))
            .filter_map(|s| s["labels"]["host"].as_str())
            .collect();
        assert_eq!(hosts, ["127.0.0.1", HOST].into(), "{parser:?}");
    }
}
