//! Known byte counts through the proxy; the API's stats and `/metrics` must report them exactly.
//! `/metrics` is read by Python's prometheus_client parsers (metrics_parse), not by betwixt's own code.

mod api_client;
mod common;
mod metrics_parse;

use api_client::{u64_at, Client};
use common::backends::{Backend, Behaviour};
use common::{free_port, wait_until, Betwixt};
use metrics_parse::{parse_metrics, sample, Parser, PROMETHEUS_ACCEPT};
use sonic_rs::JsonValueTrait;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

const REPLY: usize = 70_001;
const SENDS: [usize; 3] = [1, 65_536, 1_000_003];

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
    let refusing = common::RefusingPort::new();
    let dead_port = refusing.port;
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
    let m = parse_metrics(&text.body, Parser::Classic);
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
    let after = parse_metrics(&Client::http(metrics).get("/metrics").body, Parser::Classic);
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
    // As Prometheus scrapes it: in OpenMetrics.
    let scrape =
        Client::http(metrics).try_send("GET", "/metrics", &[("Accept", PROMETHEUS_ACCEPT)], "").unwrap();
    let m = parse_metrics(&scrape.body, Parser::OpenMetrics);
    assert_eq!(sample(&m, "gobetween_backend_live", &at), 0.0);
    assert_eq!(sample(&m, "betwixt_healthcheck_state_changes_total", &at), 1.0);
}
