//! `kind = "consul"`: the instances of `consul_service_name` from Consul's health endpoint,
//! `GET /v1/health/service/NAME?passing=1&tag=TAG&dc=DC`, as gobetween's client asks it. Each
//! entry is a backend at `Service.Address` (or `Node.Address` when the service has none) and
//! `Service.Port`, with weight and priority 1 and the `sni` of a tag `sni=NAME`, as in gobetween.
//!
//! Unlike gobetween, which asks again every `interval`, betwixt makes **blocking queries**: each
//! request carries the `X-Consul-Index` of the last answer (`index=N&wait=...`), and Consul holds
//! it until the service changes or the wait ends. A change arrives at once, and an idle service
//! costs one request per wait. The index is kept by the rules of Consul's blocking-query
//! documentation ([`BlockingIndex`]).

use super::http::{self, tls, Endpoint};
use super::{own_tls, Found, SectionError, Source};
use crate::backend::{is_host_name, BackendSpec};
use crate::config::depth::check_json_depth;
use crate::config::Discovery;
use crate::consul_api::{encode, env, env_token, Address, Scheme, DEFAULT_ADDRESS};
use hyper::header::HeaderName;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::sync::Mutex;
use std::time::Duration;

/// The client certificate files of `consul_tls_*`.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsFiles {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub ca: Option<String>,
}

/// The settings of a consul section, read and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub address: Address,
    /// Path and query of the health request, without the blocking part.
    pub query: String,
    /// Sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// User and password, sent as HTTP basic authentication.
    pub basic_auth: Option<(String, String)>,
    pub tls: Option<TlsFiles>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl Settings {
    pub fn from_section(d: &Discovery) -> Result<Settings, SectionError> {
        let tls_enabled = d.consul_tls_enabled.unwrap_or(false);
        // Consul's client: the address given, else CONSUL_HTTP_ADDR, else its default.
        let host = given(&d.consul_host).map(String::from).or_else(|| env("CONSUL_HTTP_ADDR"));
        let address = Address::parse(host.as_deref().unwrap_or(DEFAULT_ADDRESS), tls_enabled)
            .map_err(|e| SectionError::new("consul_host", e))?;
        let service = given(&d.consul_service_name)
            .ok_or_else(|| SectionError::new("consul_service_name", "required: the service to discover"))?;
        let mut query = format!("{}/v1/health/service/{}", address.prefix, encode(service, false));
        let mut params = Vec::new();
        if d.consul_service_passing_only.unwrap_or(false) {
            params.push("passing=1".to_string());
        }
        if let Some(tag) = given(&d.consul_service_tag) {
            params.push(format!("tag={}", encode(tag, false)));
        }
        if let Some(dc) = d.datacenter().filter(|dc| !dc.is_empty()) {
            params.push(format!("dc={}", encode(dc, false)));
        }
        if !params.is_empty() {
            query = format!("{query}?{}", params.join("&"));
        }
        let token = match given(&d.consul_acl_token) {
            Some(token) => Some(token.to_string()),
            None => env_token().map_err(|e| SectionError::new("consul_acl_token", e))?,
        };
        let (user, password) = (given(&d.consul_auth_username), given(&d.consul_auth_password));
        let basic_auth = (user.is_some() || password.is_some())
            .then(|| (user.unwrap_or("").to_string(), password.unwrap_or("").to_string()));
        let tls = match address.scheme {
            Scheme::Https => {
                let files = TlsFiles {
                    cert: given(&d.consul_tls_cert_path).map(String::from),
                    key: given(&d.consul_tls_key_path).map(String::from),
                    ca: given(&d.consul_tls_cacert_path).map(String::from),
                };
                if files.cert.is_some() != files.key.is_some() {
                    let field =
                        if files.cert.is_some() { "consul_tls_key_path" } else { "consul_tls_cert_path" };
                    return Err(SectionError::new(
                        field,
                        "a client certificate needs both its cert and key files",
                    ));
                }
                Some(files)
            }
            _ => None,
        };
        Ok(Settings { address, query, token, basic_auth, tls })
    }

    /// The request's path and query: answered at once with `index` 0, else held by Consul
    /// until the service changes past `index` or about `wait` passes.
    pub fn path(&self, index: u64, wait: Duration) -> String {
        if index == 0 {
            return self.query.clone();
        }
        let separator = if self.query.contains('?') { '&' } else { '?' };
        // Consul adds up to 1/16 of the wait at random: ask for 16/17 of it, so the answer
        // comes within `wait`.
        let wait = (wait.as_millis() * 16 / 17).max(1);
        format!("{}{separator}index={index}&wait={wait}ms", self.query)
    }
}

/// The source: the endpoint with its headers, and the index of the last answer.
pub struct Consul {
    settings: Settings,
    endpoint: Endpoint,
    index: Mutex<(BlockingIndex, Update)>,
}

impl Consul {
    pub fn from_section(d: &Discovery) -> Result<Consul, SectionError> {
        let settings = Settings::from_section(d)?;
        let address = &settings.address;
        let url = match address.scheme {
            Scheme::Unix => format!("unix://{}", address.host),
            Scheme::Http | Scheme::Https => address.base(),
        };
        let allowed = [http::Scheme::Http, http::Scheme::Https, http::Scheme::Unix];
        let mut endpoint = match &settings.tls {
            Some(files) => {
                let files = tls::Files {
                    ca: files.ca.as_deref(),
                    cert: files.cert.as_deref(),
                    key: files.key.as_deref(),
                    ignore_verify: false,
                };
                let keys = tls::Keys {
                    ca: "consul_tls_cacert_path",
                    cert: "consul_tls_cert_path",
                    key: "consul_tls_key_path",
                };
                own_tls::endpoint("consul_host", &url, &allowed, tls::client(&files, &keys)?)?
            }
            None => Endpoint::parse_with("consul_host", &url, &allowed)?,
        };
        if let Some(token) = &settings.token {
            endpoint =
                endpoint.with_header("consul_acl_token", HeaderName::from_static("x-consul-token"), token)?;
        }
        if let Some((user, password)) = &settings.basic_auth {
            endpoint = endpoint.with_basic_auth("consul_auth_username", user, password)?;
        }
        Ok(Consul { settings, endpoint, index: Mutex::new((BlockingIndex::default(), Update::NoIndex)) })
    }

    /// One query at `index`; keeps the answer's index for the next.
    async fn query(&self, index: u64, wait: Duration) -> Result<Found, String> {
        let answer = self.endpoint.get_path(&self.settings.path(index, wait)).await?;
        let header = answer.headers.get("x-consul-index").and_then(|v| v.to_str().ok());
        {
            let mut state = self.index.lock().unwrap_or_else(|e| e.into_inner());
            let update = state.0.update(header);
            state.1 = update;
        }
        let body = std::str::from_utf8(&answer.body).map_err(|_| "answer is not UTF-8".to_string())?;
        read_entries(body)
    }
}

impl Source for Consul {
    /// gobetween's HTTP timeout for Consul.
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    const RETRY_WAIT: Duration = Duration::from_secs(2);
    const WATCHES: bool = true;

    async fn fetch(&self) -> Result<Found, String> {
        self.query(0, Duration::ZERO).await
    }

    async fn fetch_changed(&self, wait: Duration, _timeout: Duration) -> Result<Found, String> {
        let (index, update) = *self.index.lock().unwrap_or_else(|e| e.into_inner());
        if update == Update::NoIndex {
            // Nothing to block on (something between drops the header): the interval paces.
            tokio::time::sleep(wait).await;
        }
        self.query(index.get(), wait).await
    }
}

/// The `X-Consul-Index` the next query waits on, kept by the rules of Consul's blocking-query
/// documentation: an index that goes backwards (a snapshot restored, a service deregistered)
/// is reset to 0, so the next query answers at once with the whole state; an index of 0 in an
/// answer (a Consul bug the documentation warns of) is raised to 1, since 0 would never block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockingIndex(u64);

impl BlockingIndex {
    pub fn get(self) -> u64 {
        self.0
    }

    /// Takes the header of an answer; `None` (no header or not a number): blocking is not
    /// possible through this path (a proxy drops the header), and queries answer at once.
    pub fn update(&mut self, header: Option<&str>) -> Update {
        let Some(new) = header.and_then(|h| h.trim().parse::<u64>().ok()) else {
            self.0 = 0;
            return Update::NoIndex;
        };
        let old = std::mem::replace(&mut self.0, new.max(1));
        if new < old {
            self.0 = 0;
            Update::WentBack
        } else if new == old {
            Update::Same
        } else {
            Update::Moved
        }
    }
}

/// What an answer's index says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// A change (or the first answer): read the body.
    Moved,
    /// The wait ended with no change.
    Same,
    /// Reset to 0 (the answer is still the current state).
    WentBack,
    /// No index in the answer.
    NoIndex,
}

/// Reads the answer of `/v1/health/service`: an array of `{Node, Service, Checks}` entries.
pub fn read_entries(body: &str) -> Result<Found, String> {
    check_json_depth(body).map_err(|e| format!("unreadable answer: {}", e.message))?;
    let document: Value = sonic_rs::from_str(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    // Consul answers `null` for an unknown service on some versions.
    if document.is_null() {
        return Ok(Found::default());
    }
    let entries = document.as_array().ok_or("answer is not a JSON array")?;
    let mut found = Found::default();
    for (index, entry) in entries.iter().enumerate() {
        match backend(entry) {
            Ok(spec) => found.backends.push(spec),
            Err(why) => found.notes.push(format!("entry [{index}]: {why}: skipped")),
        }
    }
    Ok(found)
}

/// A string value, when it is one and not empty.
fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(|v| v.as_str()).filter(|s| !s.is_empty())
}

fn backend(entry: &Value) -> Result<BackendSpec, String> {
    let service = entry.get("Service").filter(|s| s.is_object()).ok_or("no Service")?;
    let host = text(service.get("Address"))
        .or_else(|| text(entry.get("Node").and_then(|n| n.get("Address"))))
        .ok_or("no Service.Address nor Node.Address")?;
    if !is_host_name(host) {
        return Err(format!("address {host:?} is no host name"));
    }
    let port = service.get("Port").and_then(|p| p.as_u64()).unwrap_or(0);
    let port =
        u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| format!("port {port} is not usable"))?;
    let mut spec = BackendSpec::new(host, port);
    // gobetween: the last tag `sni=NAME` gives the backend's sni.
    let tags = service.get("Tags").and_then(|t| t.as_array());
    for tag in tags.into_iter().flat_map(|t| t.iter()).filter_map(|t| t.as_str()) {
        if let Some(sni) = tag.split_once('=').filter(|(key, _)| *key == "sni").map(|(_, sni)| sni) {
            spec.sni = Some(sni.to_string()).filter(|s| !s.is_empty());
        }
    }
    if spec.sni.as_deref().is_some_and(|s| s.contains(crate::text::is_unsafe)) {
        return Err("control character in the sni tag".into());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(keys: &[(&str, &str)]) -> Discovery {
        let mut d = Discovery { consul_service_name: Some("web".into()), ..Discovery::default() };
        for (key, value) in keys {
            let value = Some(value.to_string());
            match *key {
                "host" => d.consul_host = value,
                "name" => d.consul_service_name = value,
                "tag" => d.consul_service_tag = value,
                "dc" => d.consul_datacenter = value,
                "token" => d.consul_acl_token = value,
                "user" => d.consul_auth_username = value,
                "password" => d.consul_auth_password = value,
                "cert" => d.consul_tls_cert_path = value,
                "passing" => d.consul_service_passing_only = Some(true),
                _ => d.consul_tls_enabled = Some(true),
            }
        }
        d
    }

    #[test]
    fn the_request_as_gobetweens_client_makes_it() {
        let s = Settings::from_section(&section(&[("host", "c:8500")])).unwrap();
        assert_eq!(s.address.base(), "http://c:8500");
        assert_eq!(s.path(0, Duration::from_secs(17)), "/v1/health/service/web");
        assert_eq!(s.path(7, Duration::from_secs(17)), "/v1/health/service/web?index=7&wait=16000ms");
        let s = Settings::from_section(&section(&[
            ("host", "https://c:8501/api"),
            ("name", "a b"),
            ("tag", "v1&x"),
            ("dc", "dc 2"),
            ("passing", ""),
            ("token", "secret"),
            ("user", "u"),
            ("password", "p"),
        ]))
        .unwrap();
        assert_eq!(s.address.base(), "https://c:8501/api");
        assert_eq!(
            s.path(3, Duration::from_millis(170)),
            "/api/v1/health/service/a%20b?passing=1&tag=v1%26x&dc=dc%202&index=3&wait=160ms"
        );
        assert_eq!((s.token.as_deref(), s.basic_auth), (Some("secret"), Some(("u".into(), "p".into()))));
        assert_eq!(s.tls, Some(TlsFiles { cert: None, key: None, ca: None }));
    }

    #[test]
    fn sections_that_cannot_work() {
        let field = |keys: &[(&str, &str)]| Consul::from_section(&section(keys)).err().unwrap().field;
        assert_eq!(field(&[("name", "")]), "consul_service_name");
        assert_eq!(field(&[("host", "ftp://x")]), "consul_host");
        assert_eq!(field(&[("tls", ""), ("cert", "/c.pem")]), "consul_tls_key_path");
        assert_eq!(field(&[("token", "a\nX-Evil: 1")]), "consul_acl_token");
    }

    #[test]
    fn the_index_follows_consuls_rules() {
        let mut index = BlockingIndex::default();
        assert_eq!(index.update(Some("10")), Update::Moved);
        assert_eq!(index.get(), 10);
        assert_eq!(index.update(Some("10")), Update::Same);
        assert_eq!(index.update(Some("12")), Update::Moved);
        assert_eq!((index.update(Some("5")), index.get()), (Update::WentBack, 0), "backwards: reset");
        assert_eq!((index.update(Some("5")), index.get()), (Update::Moved, 5));
        assert_eq!((index.update(None), index.get()), (Update::NoIndex, 0));
        assert_eq!((index.update(Some("x")), index.get()), (Update::NoIndex, 0));
        assert_eq!((index.update(Some("0")), index.get()), (Update::Same, 1), "0 never blocks: 1");
    }

    #[test]
    fn entries_as_gobetween_reads_them() {
        let found = read_entries(
            r#"[{"Node":{"Address":"10.0.0.1"},"Service":{"Address":"","Port":80,"Tags":["sni=a.test","x"]}},
                {"Node":{"Address":"10.0.0.1"},"Service":{"Address":"10.0.0.2","Port":81,"Tags":null}},
                {"Node":{"Address":"n"},"Service":{"Port":0}},
                {"Node":{},"Service":{"Port":82}},
                {"Service":{"Address":"a b","Port":83}},
                {"Node":{"Address":"h"}}]"#,
        )
        .unwrap();
        let got: Vec<_> = found.backends.iter().map(|b| (b.address(), b.sni.clone())).collect();
        assert_eq!(got, [("10.0.0.1:80".into(), Some("a.test".into())), ("10.0.0.2:81".into(), None)]);
        assert_eq!(found.notes.len(), 4, "{:?}", found.notes);
        assert_eq!(read_entries("null").unwrap(), Found::default());
        assert_eq!(read_entries("[]").unwrap(), Found::default());
        assert!(read_entries("{}").is_err());
        assert!(read_entries(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))).is_err());
    }
}
