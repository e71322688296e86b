//! A configuration source over HTTP for reload tests, serving one document that the test
//! changes: as a plain URL (with an `ETag`, answering `If-None-Match` with `304`) and as a
//! replay of Consul's KV API (`GET /v1/kv/KEY?raw`), blocking queries included: a request
//! with `index=N` at or past the key's index is held until the key changes or `wait` passes,
//! and every answer carries `X-Consul-Index`. No Consul server is packaged here, so this
//! stands in for one; it keeps the semantics betwixt relies on.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicUsize,
    /// `304 Not Modified` answers (a URL asked with the current `ETag`).
    pub not_modified: AtomicUsize,
    /// Consul queries that were held until a change or their wait.
    pub held: AtomicUsize,
}

struct Document {
    text: String,
    index: u64,
}

pub struct ConfigServer {
    pub port: u16,
    pub counts: Arc<Counts>,
    doc: Arc<(Mutex<Document>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl ConfigServer {
    pub fn start(text: &str) -> ConfigServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let doc = Arc::new((Mutex::new(Document { text: text.to_string(), index: 1 }), Condvar::new()));
        let (counts, stop) = (Arc::new(Counts::default()), Arc::new(AtomicBool::new(false)));
        let (d, c, s) = (doc.clone(), counts.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (d, c, s) = (d.clone(), c.clone(), s.clone());
                        thread::spawn(move || answer(stream, &d, &c, &s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ConfigServer { port, counts, doc, stop }
    }

    /// Changes the document (its index goes up by one) and wakes held queries.
    pub fn set(&self, text: &str) {
        let (lock, changed) = &*self.doc;
        let mut doc = lock.lock().unwrap();
        doc.text = text.to_string();
        doc.index += 1;
        changed.notify_all();
    }
}

impl Drop for ConfigServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.doc.1.notify_all();
    }
}

fn answer(stream: TcpStream, doc: &(Mutex<Document>, Condvar), counts: &Counts, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: HashMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let (lock, changed) = doc;
    let mut current = lock.lock().unwrap();
    let extra;
    if path.starts_with("/v1/kv/") {
        if let Some(index) = params.get("index").and_then(|i| i.parse::<u64>().ok()) {
            let wait = params.get("wait").and_then(|w| w.trim_end_matches('s').parse().ok()).unwrap_or(300);
            let deadline = Instant::now() + Duration::from_secs(wait);
            if current.index <= index {
                counts.held.fetch_add(1, Ordering::Relaxed);
            }
            while current.index <= index && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                current = changed.wait_timeout(current, Duration::from_millis(100)).unwrap().0;
            }
        }
        extra = format!("X-Consul-Index: {}\r\n", current.index);
    } else {
        let etag = format!("\"v{}\"", current.index);
        if headers.get("if-none-match") == Some(&etag) {
            counts.not_modified.fetch_add(1, Ordering::Relaxed);
            let head = format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n");
            let _ = (&stream).write_all(head.as_bytes());
            return;
        }
        extra = format!("ETag: {etag}\r\n");
    }
    let body = current.text.clone();
    drop(current);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = (&stream).write_all(head.as_bytes());
    let _ = (&stream).write_all(body.as_bytes());
}
