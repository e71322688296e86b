//! The configuration model: every section and key of gobetween's configuration, plus betwixt's own
//! additions (`[runtime]`). Field names are the file's key names, so TOML and JSON read alike.
//! Optional keys stay `Option` so that `/dump` writes back what the user wrote, not our defaults.

use super::duration::GoDuration;
use crate::backend::BackendSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiler: Option<Profiler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ConnectionOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<Acme>,
    /// betwixt's own process settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    #[serde(default)]
    pub servers: BTreeMap<String, Server>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    /// `stdout`, `stderr` or a file path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(default)]
    pub cors: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CertPair>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub login: String,
    pub password: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert_path: String,
    pub key_path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profiler {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_bind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
}

/// betwixt additions: `[runtime] shards = N`, `shutdown_grace = "30s"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Number of data-plane shards; default one per CPU the process may run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// How long live connections may run after SIGTERM/SIGINT before they are closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<GoDuration>,
}

/// The four options `[defaults]` supplies to every server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_idle_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_idle_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_connection_timeout: Option<GoDuration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Tls,
    Udp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    #[default]
    Weight,
    Roundrobin,
    Leastconn,
    Leastbandwidth,
    Iphash,
    Iphash1,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub bind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_idle_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_idle_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_connection_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<Sni>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends_tls: Option<BackendsTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<Udp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    pub discovery: Discovery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sni {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname_matching_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected_hostname_strategy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_server_ciphers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tickets: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_hosts: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendsTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca_cert_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_server_ciphers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tickets: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Udp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_responses: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// `allow` or `deny`.
    pub default: String,
    /// `allow|deny IP-or-CIDR`, first match wins.
    #[serde(default)]
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    pub version: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryKind {
    #[default]
    Static,
    Srv,
    Docker,
    Json,
    Exec,
    Plaintext,
    Consul,
    Lxd,
}

/// One flat table as in gobetween: `kind` picks which of the kind-specific keys apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    pub kind: DiscoveryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failpolicy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_list: Option<Vec<BackendSpec>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv_lookup_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv_lookup_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv_dns_protocol: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_container_private_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_container_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_container_host_env_var: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_tls_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_tls_cert_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_tls_key_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_tls_cacert_path: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_host_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_port_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_weight_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_priority_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_sni_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_max_connections_pattern: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_command: Option<Vec<String>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_regex_pattern: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_service_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_service_passing_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_service_datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_auth_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_auth_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_acl_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_tls_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_tls_cert_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_tls_key_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_tls_cacert_path: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_server_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_server_remote_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_server_remote_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_config_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_generate_client_certs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_accept_server_cert: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_label_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_label_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_port_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_interface_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_sni_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_container_address_type: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthcheckKind {
    #[default]
    None,
    Ping,
    Probe,
    Exec,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialStatus {
    #[default]
    Healthy,
    Unhealthy,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    pub kind: HealthcheckKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fails: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_status: Option<InitialStatus>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_send: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_recv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_recv_len: Option<u32>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_expected_positive_output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_expected_negative_output: Option<String>,
}
