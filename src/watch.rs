//! `[runtime] watch_config`: a thread that watches the configuration source and asks the
//! control thread for a reload when its content changes. A file is read every interval; a URL
//! is asked every interval with `If-None-Match` / `If-Modified-Since` (a `304` costs nothing);
//! a Consul key is asked by blocking query, so a change arrives as soon as Consul has it.
//! Only a change of content asks for a reload: a touched file or a rewritten key holding the
//! same text does not. The first look sets the baseline (the configuration just loaded).

use crate::fetch::{Client, Get};
use crate::source::{Origin, Reading};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A file is looked at this often unless `watch_interval` says otherwise.
const FILE_INTERVAL: Duration = Duration::from_secs(1);
/// A URL is asked this often unless `watch_interval` says otherwise.
const URL_INTERVAL: Duration = Duration::from_secs(10);
/// How long Consul may hold a blocking query; the request's own timeout adds `SLACK`.
const CONSUL_WAIT: Duration = Duration::from_secs(60);
const SLACK: Duration = Duration::from_secs(15);
/// Requests to a source never follow each other closer than this, whatever it answers.
const MIN_GAP: Duration = Duration::from_secs(1);
/// A watched file or answer larger than this is not looked at (and not loaded either).
const MAX_TEXT: u64 = 16 << 20;

/// Starts the watch thread; `changed` is notified at every change of content.
pub fn start(reading: Reading, interval: Option<Duration>, changed: Arc<Notify>) -> std::io::Result<()> {
    let name = "config-watch".to_string();
    std::thread::Builder::new().name(name).spawn(move || {
        let mut last: Option<u64> = None;
        let mut observe = |text: &[u8]| {
            let hash = digest(text);
            if last.is_some_and(|seen| seen != hash) {
                changed.notify_one();
            }
            last = Some(hash);
        };
        match reading.origin.clone() {
            Origin::File(path) => loop {
                match read_bounded(std::fs::File::open(&path)) {
                    Ok(text) => observe(&text),
                    Err(e) => betwixt_control::log_limited!(
                        log::Level::Warn,
                        "watch_config: cannot read {}: {e}",
                        path.display()
                    ),
                }
                std::thread::sleep(interval.unwrap_or(FILE_INTERVAL));
            },
            Origin::Url(_) => poll_url(&reading, interval.unwrap_or(URL_INTERVAL), observe),
            // Consul answers when the key changes: no interval to wait between questions.
            Origin::Consul { .. } => block_on_consul(&reading, observe),
        }
    })?;
    Ok(())
}

fn digest(text: &[u8]) -> u64 {
    // Fixed keys: the same text always gives the same value.
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn read_bounded(from: std::io::Result<impl Read>) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    from?.take(MAX_TEXT + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_TEXT {
        return Err(std::io::Error::other(format!("larger than {MAX_TEXT} bytes")));
    }
    Ok(text)
}

/// One GET of `url` on the source with `headers`; the answer's status, headers and body. The
/// source's client is made at the first request and kept (its connection is reused).
fn get(
    client: &mut Option<Client>,
    source: &Get,
    timeout: Duration,
    url: &str,
    headers: &[(&'static str, String)],
) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>), String> {
    let client = match client {
        Some(client) => client,
        None => client.insert(Client::new(source, timeout)?),
    };
    let response = client.get(url, headers)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body =
        read_bounded(Ok(response.into_body().into_reader())).map_err(|e| format!("reading {url}: {e}"))?;
    Ok((status, headers, body))
}

fn header(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn poll_url(reading: &Reading, interval: Duration, mut observe: impl FnMut(&[u8])) -> ! {
    let mut client = None;
    let (mut etag, mut modified): (Option<String>, Option<String>) = (None, None);
    loop {
        match reading.request() {
            Ok(Some(read)) => {
                let mut headers = read.get.headers.clone();
                headers.extend(etag.clone().map(|tag| ("If-None-Match", tag)));
                headers.extend(modified.clone().map(|date| ("If-Modified-Since", date)));
                match get(&mut client, &read.get, SLACK.max(interval), &read.get.url, &headers) {
                    // Not modified: nothing to look at.
                    Ok((304, _, _)) => {}
                    Ok((_, answer, body)) => {
                        (etag, modified) = (header(&answer, "etag"), header(&answer, "last-modified"));
                        observe(&body);
                    }
                    Err(e) => betwixt_control::log_limited!(log::Level::Warn, "watch_config: {e}"),
                }
            }
            Ok(None) => {}
            Err(e) => betwixt_control::log_limited!(log::Level::Warn, "watch_config: {e}"),
        }
        std::thread::sleep(interval.max(MIN_GAP));
    }
}

/// Consul's blocking query: `?index=N&wait=...` returns when the key's index passes N (or the
/// wait ends). An index that goes back (Consul restored, the key recreated) starts over from 0.
fn block_on_consul(reading: &Reading, mut observe: impl FnMut(&[u8])) -> ! {
    let mut client = None;
    let mut index: u64 = 0;
    loop {
        let started = Instant::now();
        let mut failed = false;
        match reading.request() {
            Ok(Some(read)) => {
                let url = format!("{}&index={index}&wait={}s", read.get.url, CONSUL_WAIT.as_secs());
                match get(&mut client, &read.get, CONSUL_WAIT + SLACK, &url, &read.get.headers) {
                    Ok((_, answer, body)) => {
                        let next = header(&answer, "x-consul-index").and_then(|i| i.trim().parse().ok());
                        index = match next {
                            Some(next) if next >= index => next,
                            _ => 0,
                        };
                        observe(&body);
                    }
                    Err(e) => {
                        failed = true;
                        betwixt_control::log_limited!(log::Level::Warn, "watch_config: {e}")
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                failed = true;
                betwixt_control::log_limited!(log::Level::Warn, "watch_config: {e}")
            }
        }
        // A failing or non-blocking answer must not turn this into a busy loop.
        let pause = if failed { MIN_GAP * 5 } else { MIN_GAP };
        std::thread::sleep(pause.saturating_sub(started.elapsed()));
    }
}
