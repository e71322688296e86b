//! Configuration fetched over HTTP: `from-url`, and `from-consul`, which reads Consul's KV
//! endpoint `GET /v1/kv/KEY?raw`. No Consul agent runs here, so the Consul test serves the
//! exact response shape Consul gives for a raw KV read (the stored value as the body).

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, serve_http, serve_until_named};
use std::process::Command;
use std::time::Duration;

/// The request line of the next request the server saw.
fn request_line(requests: &std::sync::mpsc::Receiver<String>) -> String {
    requests.recv_timeout(Duration::from_secs(1)).unwrap().lines().next().unwrap_or_default().to_string()
}

fn config(port: u16, backend: &Backend) -> String {
    format!(
        "[servers.remote]\nbind = \"127.0.0.1:{port}\"\n[servers.remote.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n",
        backend.line()
    )
}

#[test]
fn from_url_fetches_and_runs() {
    let backend = Backend::start("url", Behaviour::Named);
    let port = free_port();
    let (http, requests) = serve_http(config(port, &backend));
    let url = format!("http://127.0.0.1:{http}/betwixt.toml");
    assert!(serve_until_named(&["from-url", &url], port, "url").0);
    assert_eq!(request_line(&requests), "GET /betwixt.toml HTTP/1.1");
}

#[test]
fn from_consul_reads_the_raw_key() {
    let backend = Backend::start("consul", Behaviour::Named);
    let port = free_port();
    let (http, requests) = serve_http(config(port, &backend));
    let host = format!("127.0.0.1:{http}");
    assert!(
        serve_until_named(&["from-consul", &host, "--key", "betwixt/config", "-f", "toml"], port, "consul").0
    );
    assert_eq!(request_line(&requests), "GET /v1/kv/betwixt/config?raw HTTP/1.1");
}

#[test]
fn from_url_reports_unreachable_source() {
    let dead = common::RefusingPort::new();
    let out = Command::new(common::binary())
        .args(["from-url", &format!("http://127.0.0.1:{}/c.toml", dead.port)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot fetch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
