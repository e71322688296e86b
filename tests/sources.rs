//! Configuration fetched over HTTP: `from-url`, and `from-consul`, which reads Consul's KV
//! endpoint `GET /v1/kv/KEY?raw`. No Consul agent runs here, so the Consul test serves the
//! exact response shape Consul gives for a raw KV read (the stored value as the body).

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, serve_until_named};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// Serves `body` to every request and reports each request line.
fn serve(body: String) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let _ = tx.send(request_line.trim().to_string());
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Consul-Index: 7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, rx)
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
    let (http, requests) = serve(config(port, &backend));
    let url = format!("http://127.0.0.1:{http}/betwixt.toml");
    assert!(serve_until_named(&["from-url", &url], port, "url").0);
    assert_eq!(requests.recv_timeout(Duration::from_secs(1)).unwrap(), "GET /betwixt.toml HTTP/1.1");
}

#[test]
fn from_consul_reads_the_raw_key() {
    let backend = Backend::start("consul", Behaviour::Named);
    let port = free_port();
    let (http, requests) = serve(config(port, &backend));
    let host = format!("127.0.0.1:{http}");
    assert!(
        serve_until_named(&["from-consul", &host, "--key", "betwixt/config", "-f", "toml"], port, "consul").0
    );
    assert_eq!(
        requests.recv_timeout(Duration::from_secs(1)).unwrap(),
        "GET /v1/kv/betwixt/config?raw HTTP/1.1"
    );
}

#[test]
fn from_url_reports_unreachable_source() {
    let dead = free_port();
    let out = Command::new(common::binary())
        .args(["from-url", &format!("http://127.0.0.1:{dead}/c.toml")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot fetch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
