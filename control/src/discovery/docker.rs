//! `kind = "docker"`: the running containers a Docker Engine API (`docker_endpoint`: a
//! `unix://` socket, `http://`, Docker's `tcp://`, or `https://`) lists, filtered by
//! `docker_container_label`; each port published for `docker_container_private_port` is a
//! backend at the published host port.
//!
//! The host of a backend is gobetween's: the value of the container's environment variable
//! `docker_container_host_env_var` when set and not empty, else the address the port is
//! published on, else (published on all interfaces) the endpoint's host — 127.0.0.1 for a
//! socket, which is the local Docker host.
//!
//! New and stopped containers show at once: after a successful list the source follows the
//! daemon's event stream (`/events`, container events) and lists again on each container
//! start, stop, pause, removal...; `interval` is the longest wait without an event (and the
//! poll when the stream cannot be had). Paths carry no API version, so the daemon speaks its
//! own (Docker Engine 29 refuses versions below 1.44).

use super::http::{percent_encode, tls, Endpoint, LineStream, Proxies, Scheme, Target};
use super::{Found, SectionError, Source};
use crate::backend::BackendSpec;
use crate::config::depth::check_json_depth;
use crate::config::Discovery;
use crate::text::is_unsafe;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::{timeout, timeout_at, Instant};

/// An event is a few hundred bytes; a longer line is no event.
const MAX_EVENT: usize = 64 << 10;

/// Events that change which containers run or how they are reachable.
const CHANGES: [&str; 11] =
    ["start", "restart", "unpause", "pause", "die", "kill", "stop", "destroy", "rename", "update", "oom"];

/// After an event, later ones that arrive within this are taken in the same round: a stack
/// starting is one list, not one per container.
const SETTLE: Duration = Duration::from_millis(50);

pub struct Docker {
    endpoint: Endpoint,
    /// `/containers/json` with the label filter.
    list_path: String,
    private_port: u16,
    host_env_var: Option<String>,
    /// The host of ports published on all interfaces.
    docker_host: String,
    events: tokio::sync::Mutex<Option<Events>>,
    /// Whether "no event stream" was logged, so a daemon without one is said once.
    said_no_events: AtomicBool,
}

/// The open event stream, and whether it ever sent anything.
struct Events {
    lines: LineStream,
    heard: bool,
}

impl Docker {
    pub fn from_section(d: &Discovery) -> Result<Docker, SectionError> {
        let text = d.docker_endpoint.as_deref().unwrap_or("");
        // Docker's own notation for its TCP socket (DOCKER_HOST=tcp://...), which gobetween's
        // client takes too.
        let text =
            text.strip_prefix("tcp://").map_or_else(|| text.to_string(), |rest| format!("http://{rest}"));
        let schemes = [Scheme::Unix, Scheme::Http, Scheme::Https];
        // gobetween's Docker client takes proxies from the environment (for TCP endpoints).
        let mut endpoint =
            Endpoint::parse_with("docker_endpoint", &text, &schemes)?.with_proxies(Proxies::from_env());
        if d.docker_tls_enabled.unwrap_or(false) {
            let files = tls::Files {
                ca: d.docker_tls_cacert_path.as_deref(),
                cert: d.docker_tls_cert_path.as_deref(),
                key: d.docker_tls_key_path.as_deref(),
                ignore_verify: false,
            };
            let keys = tls::Keys {
                ca: "docker_tls_cacert_path",
                cert: "docker_tls_cert_path",
                key: "docker_tls_key_path",
            };
            endpoint = endpoint.with_tls(tls::client(&files, &keys)?);
        }
        let private_port = d.docker_container_private_port.filter(|&p| p != 0).ok_or_else(|| {
            SectionError::new(
                "docker_container_private_port",
                "required: the port the containers listen on (the backend is the host port it is published on)",
            )
        })?;
        let label = d.docker_container_label.as_deref().filter(|l| !l.is_empty());
        let list_path = match label {
            Some(label) => {
                let filters =
                    format!("{{\"label\":[{}]}}", sonic_rs::to_string(label).expect("a string serializes"));
                format!("/containers/json?filters={}", percent_encode(&filters))
            }
            None => "/containers/json".to_string(),
        };
        let docker_host = match &endpoint.address().target {
            Target::Tcp { host, .. } => host.clone(),
            Target::Unix(_) => "127.0.0.1".to_string(),
        };
        Ok(Docker {
            endpoint,
            list_path,
            private_port,
            host_env_var: d.docker_container_host_env_var.clone().filter(|v| !v.is_empty()),
            docker_host,
            events: tokio::sync::Mutex::new(None),
            said_no_events: AtomicBool::new(false),
        })
    }

    /// Lists the containers and reads their backends.
    async fn list(&self) -> Result<Found, String> {
        let answer = self.endpoint.get_path(&self.list_path).await?;
        let containers: Vec<Container> = parse(&answer.body, "the container list")?;
        let mut found = Found::default();
        let mut seen = HashSet::new();
        for container in containers {
            let ports: Vec<&Port> = container
                .ports
                .iter()
                .flatten()
                .filter(|p| p.private_port == Some(self.private_port.into()))
                .collect();
            if ports.is_empty() {
                continue;
            }
            // gobetween: the container's label `sni` is its backends' sni.
            let sni =
                container.labels.as_ref().and_then(|labels| labels.get("sni")).filter(|s| !s.is_empty());
            if sni.is_some_and(|s| s.contains(is_unsafe) || s.contains(char::is_whitespace)) {
                found.notes.push(format!(
                    "container {}: label sni {sni:?} is no name: skipped",
                    short(&container.id)
                ));
                continue;
            }
            let from_env = match &self.host_env_var {
                Some(name) => self.host_from_env(&container.id, name, &mut found.notes).await,
                None => None,
            };
            for port in ports {
                let Some(public) = port.public_port.and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0)
                else {
                    found.notes.push(format!(
                        "container {}: port {} is not published on the host: skipped",
                        short(&container.id),
                        self.private_port
                    ));
                    continue;
                };
                let host = match (&from_env, port.ip.as_deref()) {
                    (Some(host), _) => host.clone(),
                    (None, Some(ip)) if !matches!(ip, "" | "0.0.0.0" | "::") => ip.to_string(),
                    (None, _) => self.docker_host.clone(),
                };
                if host.contains(is_unsafe) || host.contains(char::is_whitespace) {
                    found.notes.push(format!(
                        "container {}: host {host:?} is no host name: skipped",
                        short(&container.id)
                    ));
                    continue;
                }
                // Docker lists a port published on 0.0.0.0 and on :: twice: one backend.
                if seen.insert((host.clone(), public)) {
                    let mut spec = BackendSpec::new(host, public);
                    spec.sni = sni.cloned();
                    found.backends.push(spec);
                }
            }
        }
        Ok(found)
    }

    /// The container's value of `name` (its last setting), `None` when unset or empty or
    /// when the container cannot be inspected (then with a note, and gobetween's fallback).
    async fn host_from_env(&self, id: &str, name: &str, notes: &mut Vec<String>) -> Option<String> {
        let inspected = async {
            let answer = self.endpoint.get_path(&format!("/containers/{}/json", percent_encode(id))).await?;
            parse::<Inspected>(&answer.body, "the container's inspection")
        };
        match inspected.await {
            Ok(inspected) => {
                let env = inspected.config.and_then(|c| c.env).unwrap_or_default();
                let prefix = format!("{name}=");
                env.iter()
                    .rev()
                    .find_map(|e| e.strip_prefix(&prefix))
                    .filter(|v| !v.is_empty())
                    .map(String::from)
            }
            Err(e) => {
                notes.push(format!("container {}: {e}; using the published address", short(id)));
                None
            }
        }
    }

    /// Opens the event stream, or says (once) why there is none.
    async fn open_events(&self, limit: Duration) -> Option<Events> {
        let path = format!("/events?filters={}", percent_encode("{\"type\":[\"container\"]}"));
        let opened = match timeout(limit, self.endpoint.stream(&path, MAX_EVENT)).await {
            Ok(opened) => opened,
            Err(_) => Err(format!("no answer from the event stream within {limit:?}")),
        };
        match opened {
            Ok(lines) => Some(Events { lines, heard: false }),
            Err(e) => {
                if !self.said_no_events.swap(true, Ordering::Relaxed) {
                    log::info!("docker discovery: no event stream ({e}); listing every interval instead");
                }
                None
            }
        }
    }
}

/// How waiting on the event stream ended.
enum Heard {
    Change,
    /// The stream ended or broke.
    End,
}

impl Events {
    /// Reads events until one that changes the containers' list.
    async fn next_change(&mut self) -> Heard {
        loop {
            match self.lines.next_json().await {
                Ok(Some(event)) => {
                    self.heard = true;
                    if is_change(&event) {
                        return Heard::Change;
                    }
                }
                Ok(None) => return Heard::End,
                Err(e) => {
                    log::debug!("docker discovery: {e}");
                    return Heard::End;
                }
            }
        }
    }
}

/// A container event that may change the list: `Action` (`status` before API 1.22).
pub(crate) fn is_change(event: &sonic_rs::Value) -> bool {
    use sonic_rs::JsonValueTrait;
    let kind = event.get("Type").and_then(|t| t.as_str()).unwrap_or("container");
    let action = event.get("Action").or_else(|| event.get("status")).and_then(|a| a.as_str()).unwrap_or("");
    kind == "container" && CHANGES.contains(&action)
}

impl Source for Docker {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    const RETRY_WAIT: Duration = Duration::from_secs(2);
    const WATCHES: bool = true;

    async fn fetch(&self) -> Result<Found, String> {
        // Starting afresh: a stream from before a failure may be from a daemon since gone.
        *self.events.lock().await = None;
        self.list().await
    }

    async fn fetch_changed(&self, wait: Duration, limit: Duration) -> Result<Found, String> {
        let deadline = Instant::now() + wait;
        let mut events = self.events.lock().await;
        match events.as_mut() {
            None => {
                *events = self.open_events(limit).await;
                // With a new stream, list at once: what changed before it opened is not in it.
                if events.is_none() {
                    tokio::time::sleep_until(deadline).await;
                }
            }
            Some(stream) => match timeout_at(deadline, stream.next_change()).await {
                Err(_) => {} // The interval passed without a change: list anyway.
                Ok(Heard::Change) => {
                    while let Ok(Heard::Change) = timeout(SETTLE, stream.next_change()).await {}
                }
                Ok(Heard::End) => {
                    let heard = stream.heard;
                    *events = None;
                    // A stream that ends without a word is no stream: poll this round.
                    if !heard {
                        tokio::time::sleep_until(deadline).await;
                    }
                }
            },
        }
        drop(events);
        match timeout(limit, self.list()).await {
            Ok(found) => found,
            Err(_) => Err(format!("no container list within {limit:?}")),
        }
    }
}

/// JSON of the daemon, its nesting bounded before it is read.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|_| format!("{what} is not UTF-8"))?;
    check_json_depth(text).map_err(|e| format!("{what} is no usable JSON: {}", e.message))?;
    sonic_rs::from_str(text).map_err(|e| format!("{what} is no usable JSON: {e}"))
}

/// A container ID as Docker prints it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The parts of `/containers/json` discovery reads.
#[derive(Deserialize)]
pub(crate) struct Container {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Ports", default)]
    ports: Option<Vec<Port>>,
    #[serde(rename = "Labels", default)]
    labels: Option<std::collections::HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Port {
    #[serde(rename = "IP", default)]
    ip: Option<String>,
    #[serde(rename = "PrivatePort", default)]
    private_port: Option<u64>,
    #[serde(rename = "PublicPort", default)]
    public_port: Option<u64>,
}

/// The part of `/containers/{id}/json` discovery reads.
#[derive(Deserialize)]
pub(crate) struct Inspected {
    #[serde(rename = "Config", default)]
    config: Option<InspectedConfig>,
}

#[derive(Deserialize)]
struct InspectedConfig {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(keys: &[(&str, &str)]) -> Result<Docker, SectionError> {
        let mut d = Discovery { docker_container_private_port: Some(80), ..Discovery::default() };
        for (key, value) in keys {
            match *key {
                "endpoint" => d.docker_endpoint = Some(value.to_string()),
                "label" => d.docker_container_label = Some(value.to_string()),
                "port" => d.docker_container_private_port = value.parse().ok(),
                "tls" => d.docker_tls_enabled = Some(true),
                "cacert" => d.docker_tls_cacert_path = Some(value.to_string()),
                "cert" => d.docker_tls_cert_path = Some(value.to_string()),
                _ => panic!("{key}"),
            }
        }
        Docker::from_section(&d)
    }

    #[test]
    fn sections_read() {
        let d = docker(&[("endpoint", "unix:///var/run/docker.sock"), ("label", "app=web")]).unwrap();
        assert_eq!(d.docker_host, "127.0.0.1");
        assert_eq!(d.list_path, "/containers/json?filters=%7B%22label%22%3A%5B%22app%3Dweb%22%5D%7D");
        let d = docker(&[("endpoint", "tcp://10.0.0.5:2375")]).unwrap();
        assert_eq!((d.docker_host.as_str(), d.list_path.as_str()), ("10.0.0.5", "/containers/json"));
        assert_eq!(d.endpoint.address().url("/"), "http://10.0.0.5:2375/");
        assert!(docker(&[("endpoint", "http://[::1]:2375")]).is_ok());
        let field = |keys: &[(&str, &str)]| docker(keys).err().unwrap().field;
        assert_eq!(field(&[]), "docker_endpoint");
        assert_eq!(field(&[("endpoint", "ftp://x")]), "docker_endpoint");
        assert_eq!(field(&[("endpoint", "unix:///s"), ("port", "0")]), "docker_container_private_port");
        assert_eq!(
            field(&[("endpoint", "http://h:2376"), ("tls", ""), ("cacert", "/nonexistent")]),
            "docker_tls_cacert_path"
        );
        assert_eq!(
            field(&[("endpoint", "http://h:2376"), ("tls", ""), ("cert", "/nonexistent")]),
            "docker_tls_key_path"
        );
    }

    #[test]
    fn events_that_change_the_list() {
        let event = |text: &str| sonic_rs::from_str::<sonic_rs::Value>(text).unwrap();
        assert!(is_change(&event(r#"{"Type":"container","Action":"start"}"#)));
        assert!(is_change(&event(r#"{"status":"die","id":"x"}"#)), "API before 1.22");
        assert!(!is_change(&event(r#"{"Type":"container","Action":"exec_start: sh"}"#)));
        assert!(!is_change(&event(r#"{"Type":"network","Action":"connect"}"#)));
        assert!(!is_change(&event("[1]")));
    }
}
