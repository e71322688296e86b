//! Known byte counts through the proxy; the API's stats and `/metrics` must report them exactly.
//! `/metrics` is read by Python's prometheus_client parsers, not by betwixt's own code.

mod api_client;
mod common;

use api_client::{u64_at, Client};
use common::backends::{Backend, Behaviour};
use common::{free_port, wait_until, Betwixt};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

const REPLY: usize = 70_001;
const SENDS: [usize; 3] = [1, 65_536, 1_000_003];

/// Parses the exposition with prometheus_client's OpenMetrics parser (the format betwixt serves)
/// and checks the classic text parser accepts it too; prints every sample as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
text = sys.stdin.read()
list(classic(text))
samples = []
for family in openmetrics(text):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;

fn parse_metrics(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse /metrics");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "prometheus_client is missing: scripts/test installs it (python3 -m pip install prometheus_client)"
    );
    assert!(out.status.success(), "prometheus_client rejected /metrics: {stderr}\n{text}");
    let samples: Value = sonic_rs::from_slice(&out.stdout).unwrap();
    samples.as_array().unwrap().iter().cloned().collect()
}

/// The one sample called `name` whose labels include all of `labels`.
fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s["name"].as_str() == Some(name))
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k].as_str() == Some(*v)))
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

/// Sends `len` bytes, half-closes, reads the backend's whole reply.
fn exchange(port: u16, len: usize) -> usize {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&vec![7u8; len]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    reply.len()
}

#[test]
fn stats_and_metrics_report_exact_bytes_and_connections() {
    let backend = Backend::start("bytes", Behaviour::ReplyAfterEof { reply_len: REPLY });
    let dead_port = free_port(); // nothing listens there: connects are refused
    let (api, metrics, port, dead) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\
         [servers.bytes]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.bytes.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n\
         [servers.dead]\nbind = \"127.0.0.1:{dead}\"\n\
         [servers.dead.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{dead_port}\"]\n",
        backend.line()
    );
    let _bx = Betwixt::start(&config, &["--shards", "2"], &[api, metrics]);
    let client = Client::http(api);

    for len in SENDS {
        assert_eq!(exchange(port, len), REPLY);
    }
    let refused = TcpStream::connect(("127.0.0.1", dead)).unwrap();
    refused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((&refused).read(&mut [0u8; 1]).unwrap_or(0), 0);

    let tx: u64 = SENDS.iter().sum::<usize>() as u64;
    let rx = (REPLY * SENDS.len()) as u64;
    let settled = wait_until(Duration::from_secs(5), || {
        let s = client.get_json("/servers/bytes/stats");
        u64_at(&s, "active_connections") == 0 && u64_at(&s, "tx_total") == tx && u64_at(&s, "rx_total") == rx
    });
    let stats = client.get_json("/servers/bytes/stats");
    assert!(settled, "stats never matched the bytes moved: {stats}");
    let b = &stats["backends"][0]["stats"];
    assert_eq!((u64_at(b, "tx"), u64_at(b, "rx")), (tx, rx));
    assert_eq!(u64_at(b, "total_connections"), SENDS.len() as u64);
    assert_eq!((u64_at(b, "active_connections"), u64_at(b, "refused_connections")), (0, 0));
    let dead_stats = client.get_json("/servers/dead/stats");
    assert_eq!(u64_at(&dead_stats["backends"][0]["stats"], "refused_connections"), 1);

    // The sampler sees the bytes within a second or two.
    assert!(wait_until(Duration::from_secs(4), || {
        let s = client.get_json("/servers/bytes/stats");
        u64_at(&s, "rx_second") > 0 && u64_at(&s, "tx_second") > 0
    }));

    let text = Client::http(metrics).get("/metrics");
    assert_eq!(text.status, 200);
    let m = parse_metrics(&text.body);
    let server = [("server", "bytes")];
    let backend_port = backend.port.to_string();
    let at = [("server", "bytes"), ("host", "127.0.0.1"), ("port", backend_port.as_str())];
    let dead_port = dead_port.to_string();
    let dead_at = [("server", "dead"), ("host", "127.0.0.1"), ("port", dead_port.as_str())];

    assert_eq!(sample(&m, "gobetween_server_rx_total", &server), rx as f64);
    assert_eq!(sample(&m, "gobetween_server_tx_total", &server), tx as f64);
    assert_eq!(sample(&m, "gobetween_server_active_connections", &server), 0.0);
    assert_eq!(sample(&m, "gobetween_server_count", &server), 1.0);
    assert!(sample(&m, "gobetween_server_rx_second", &server) >= 0.0);
    assert_eq!(sample(&m, "gobetween_backend_rx_bytes", &at), rx as f64);
    assert_eq!(sample(&m, "gobetween_backend_tx_bytes", &at), tx as f64);
    assert_eq!(sample(&m, "gobetween_backend_total_connections", &at), SENDS.len() as f64);
    assert_eq!(sample(&m, "gobetween_backend_active_connections", &at), 0.0);
    assert_eq!(sample(&m, "gobetween_backend_refused_connections", &at), 0.0);
    assert_eq!(sample(&m, "gobetween_backend_refused_connections", &dead_at), 1.0);
    assert_eq!(sample(&m, "gobetween_backend_live", &at), 1.0);
    assert!(sample(&m, "gobetween_backend_rx_second", &at) >= 0.0);
    assert!(sample(&m, "gobetween_backend_tx_second", &at) >= 0.0);
    assert_eq!(sample(&m, "gobetween_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    // betwixt's additions.
    let per_shard: f64 =
        (0..2).map(|i| sample(&m, "betwixt_shard_connections_total", &[("shard", &i.to_string())])).sum();
    assert_eq!(per_shard, (SENDS.len() + 1) as f64);
    assert_eq!(sample(&m, "betwixt_server_connections_total", &server), SENDS.len() as f64);
    assert_eq!(sample(&m, "betwixt_server_refused_connections_total", &[("server", "dead")]), 1.0);
    assert_eq!(sample(&m, "betwixt_backend_connect_seconds_count", &at), SENDS.len() as f64);
    assert_eq!(
        sample(&m, "betwixt_backend_connect_seconds_bucket", &[at[0], at[1], at[2], ("le", "+Inf")]),
        SENDS.len() as f64
    );
    let kind = |k| [dead_at[0], dead_at[1], dead_at[2], ("kind", k)];
    assert_eq!(sample(&m, "betwixt_backend_connect_errors_total", &kind("refused")), 1.0);
    assert_eq!(sample(&m, "betwixt_backend_connect_errors_total", &kind("timeout")), 0.0);
    assert_eq!(sample(&m, "betwixt_healthcheck_state_changes_total", &at), 0.0);
    assert_eq!(sample(&m, "betwixt_discovery_failures_total", &server), 0.0);

    // A deleted server leaves the metrics.
    assert_eq!(client.send("DELETE", "/servers/dead", "").status, 200);
    let after = parse_metrics(&Client::http(metrics).get("/metrics").body);
    assert!(after.iter().all(|s| s["labels"]["server"].as_str() != Some("dead")));
}

#[test]
fn healthcheck_changes_show_in_stats_and_metrics() {
    let mut backend = Backend::start("flaky", Behaviour::Named);
    let (api, metrics, port) = (free_port(), free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\
         [servers.hc]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.hc.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n\
         [servers.hc.healthcheck]\nkind = \"ping\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfails = 1\npasses = 1\n",
        backend.line()
    );
    let _bx = Betwixt::start(&config, &[], &[api, metrics]);
    let client = Client::http(api);
    let live = || client.get_json("/servers/hc/stats")["backends"][0]["stats"]["live"].as_bool();
    assert_eq!(live(), Some(true));

    backend.stop();
    assert!(wait_until(Duration::from_secs(5), || live() == Some(false)), "backend never marked down");
    let port_label = backend.port.to_string();
    let at = [("server", "hc"), ("host", "127.0.0.1"), ("port", port_label.as_str())];
    let m = parse_metrics(&Client::http(metrics).get("/metrics").body);
    assert_eq!(sample(&m, "gobetween_backend_live", &at), 0.0);
    assert_eq!(sample(&m, "betwixt_healthcheck_state_changes_total", &at), 1.0);
}
