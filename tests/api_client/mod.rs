//! A small HTTP client for the API and metrics tests: real requests with ureq, answers of any
//! status returned as values (not errors), JSON read with sonic-rs.
#![allow(dead_code)]

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::sync::Arc;
use std::time::Duration;
use ureq::http::{HeaderMap, Method, Request};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        sonic_rs::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// An error's message: the body is one JSON string, as gobetween answers errors.
    pub fn message(&self) -> String {
        self.json().as_str().unwrap_or_else(|| panic!("not a JSON string: {}", self.body)).to_string()
    }
}

pub struct Client {
    agent: Agent,
    pub base: String,
    authorization: Option<String>,
}

impl Client {
    fn with_tls(base: String, tls: TlsConfig) -> Client {
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(tls)
            .build()
            .new_agent();
        Client { agent, base, authorization: None }
    }

    pub fn http(port: u16) -> Client {
        Client::with_tls(format!("http://127.0.0.1:{port}"), TlsConfig::default())
    }

    /// HTTPS trusting only `ca_der`.
    pub fn https(port: u16, ca_der: &[u8]) -> Client {
        let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_der(ca_der).to_owned()]));
        Client::with_tls(format!("https://127.0.0.1:{port}"), TlsConfig::builder().root_certs(roots).build())
    }

    pub fn login(mut self, login: &str, password: &str) -> Client {
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
        self.authorization = Some(format!("Basic {pair}"));
        self
    }

    /// Sends any request; transport errors (refused, TLS failure) are returned as `Err`.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, ureq::Error> {
        let mut request = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap());
        request = request.uri(format!("{}{path}", self.base));
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = self.agent.run(request.body(body.to_string()).unwrap())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.body_mut().read_to_string()?;
        Ok(Reply { status, headers, body })
    }

    pub fn send(&self, method: &str, path: &str, body: &str) -> Reply {
        self.try_send(method, path, &[], body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, "")
    }

    /// GET that must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let reply = self.get(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// The backends discovery found for `server`, as `host:port`, sorted.
    pub fn discovered(&self, server: &str) -> Vec<String> {
        let stats = self.get_json(&format!("/servers/{server}/stats"));
        let mut list: Vec<String> = stats
            .get("backends")
            .and_then(|b| b.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|b| b.pointer(["stats", "discovered"]).and_then(|d| d.as_bool()) == Some(true))
            .map(|b| {
                let host = b.get("host").and_then(|h| h.as_str()).unwrap_or_default().to_string();
                format!("{host}:{}", b.get("port").and_then(|p| p.as_str()).unwrap_or_default())
            })
            .collect();
        list.sort();
        list
    }
}

/// The value at `key` as u64, with a readable failure.
pub fn u64_at(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

/// The body of `POST /servers/NAME` for a server on `bind` with one static backend.
pub fn static_server(bind: &str, backend: &str) -> String {
    format!(
        "{{\"bind\": \"{bind}\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{backend}\"]}}}}"
    )
}

pub fn object_keys(value: &Value) -> Vec<String> {
    value.as_object().map(|o| o.iter().map(|(k, _)| k.to_string()).collect()).unwrap_or_default()
}

/// The sum of one counter over all its label sets, read from betwixt's `/metrics` on `port`
/// (for example `betwixt_shard_spliced_bytes_total`, summed over shards).
pub fn counter_sum(port: u16, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    Client::http(port)
        .get("/metrics")
        .body
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}
