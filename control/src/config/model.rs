//! The configuration model: every section and key of gobetween's configuration, plus betwixt's own
//! additions (`[runtime]`). Field names are the file's key names, so TOML and JSON read alike.
//! Optional keys stay `Option` (left out when writing) so that `/dump` writes back what the user
//! wrote, not our defaults. Values gobetween reads loosely are kept as written (strings, signed
//! numbers) and read by `loose`; unknown keys are noted by `tolerant`, not refused here.

use super::duration::{GoDuration, WrittenDuration};
use super::loose::empty_is_unset;
use super::loose::null_is_empty;
use super::loose::LooseDuration;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub logging: Option<Logging>,
    pub api: Option<Api>,
    pub metrics: Option<Metrics>,
    pub profiler: Option<Profiler>,
    pub defaults: Option<ConnectionOptions>,
    pub acme: Option<Acme>,
    /// betwixt's own process settings.
    pub runtime: Option<Runtime>,
    /// betwixt: one line per connection (UDP: per session); see docs/access-log.md.
    pub access_log: Option<AccessLog>,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub servers: BTreeMap<String, Server>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Logging {
    /// Read by `loose::log_level`.
    pub level: Option<String>,
    /// `stdout` (also empty), `stderr` or a file path.
    pub output: Option<String>,
    /// Read by `loose::log_format`.
    pub format: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Api {
    #[serde(default)]
    pub enabled: bool,
    pub bind: Option<String>,
    #[serde(default)]
    pub cors: bool,
    /// betwixt: let `POST /servers/NAME` create servers that run commands (`exec`
    /// healthchecks); off by default, since they would run as betwixt's user.
    pub allow_exec: Option<bool>,
    /// betwixt: time a client has to send a request's head, and again its body (default 30s).
    pub request_timeout: Option<GoDuration>,
    /// betwixt: connections open at once from all clients (default 64; 0 = no limit).
    pub max_connections: Option<u32>,
    /// betwixt: connections open at once from one client address (default 16; 0 = no limit).
    pub max_connections_per_client: Option<u32>,
    pub basic_auth: Option<BasicAuth>,
    pub tls: Option<CertPair>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BasicAuth {
    pub login: String,
    pub password: String,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CertPair {
    pub cert_path: String,
    pub key_path: String,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(default)]
    pub enabled: bool,
    pub bind: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profiler {
    #[serde(default)]
    pub enabled: bool,
    pub bind: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Acme {
    pub challenge: Option<String>,
    pub http_bind: Option<String>,
    pub cache_dir: Option<String>,
    /// betwixt: the CA's ACME v2 directory; default Let's Encrypt's production one.
    pub directory_url: Option<String>,
    /// betwixt: the account's contact address, without `mailto:`.
    pub email: Option<String>,
    /// betwixt: the CAs the directory's HTTPS certificate must chain to (else the system's).
    pub root_ca_cert_path: Option<String>,
    /// betwixt: how long before a certificate expires it is renewed.
    pub renew_before: Option<GoDuration>,
}

/// betwixt additions: `[runtime] shards = N`, `shutdown_grace = "30s"`, `splice = true`,
/// `strict = true`, `forwarding = "user" | "kernel"`, `kernel_forwarding_after_reads`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    /// Number of data-plane shards; default one per CPU the process may run on.
    pub shards: Option<usize>,
    /// How long live connections may run after SIGTERM/SIGINT before they are closed.
    pub shutdown_grace: Option<GoDuration>,
    /// Move bulk streams through kernel pipes (`splice`) instead of copying them; default on.
    pub splice: Option<bool>,
    /// Who moves the bytes of plain TCP connections: betwixt (`user`, default) or the kernel
    /// (`kernel`: a BPF sockmap redirects them; see docs/kernel-forwarding.md).
    pub forwarding: Option<Forwarding>,
    /// Once required with `forwarding = "kernel"` (accepting unbounded kernel memory behind a
    /// receiver that does not read); that memory is bounded now, and the key is ignored with a
    /// warning, so configurations written for it still start.
    pub kernel_forwarding_unbounded_memory: Option<bool>,
    /// With `forwarding = "kernel"`: how many reads betwixt makes of a connection (both
    /// directions together) before it hands the connection to the kernel, at a moment when
    /// everything read is written; default 8, 0 hands it over at once. Short connections then
    /// never pay the hand-over, and bulk streams (spliced) are never handed over.
    pub kernel_forwarding_after_reads: Option<u64>,
    /// Refuse what gobetween tolerates (every configuration warning becomes an error).
    pub strict: Option<bool>,
    /// Reload when the configuration source changes: a file's content, a URL's answer (ETag
    /// and Last-Modified honoured), a Consul key (by blocking query). Default off.
    pub watch_config: Option<bool>,
    /// How often a watched file or URL is looked at (default 1s for a file, 10s for a URL).
    pub watch_interval: Option<GoDuration>,
}

/// `[runtime] forwarding`: who moves a plain TCP connection's bytes once its backend is
/// connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// betwixt's shards copy or splice them (`transfer`).
    #[default]
    User,
    /// A BPF sockmap program redirects them inside the kernel.
    Kernel,
}

/// betwixt addition: `[access_log] enabled = true`, `output = "stdout" | "stderr" | PATH`,
/// `format = "text" | "json"`. Read at start; the file is reopened on SIGHUP.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessLog {
    #[serde(default)]
    pub enabled: bool,
    /// `stdout` (also empty or left out), `stderr` or a file path, as `[logging] output`.
    pub output: Option<String>,
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// Lines held for the writer before new ones are dropped (default 16384).
    pub queue_size: Option<usize>,
}

/// The four options `[defaults]` supplies to every server.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionOptions {
    pub max_connections: Option<u32>,
    pub client_idle_timeout: Option<LooseDuration>,
    pub backend_idle_timeout: Option<LooseDuration>,
    pub backend_connection_timeout: Option<LooseDuration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Also `""`, as gobetween reads it.
    #[default]
    #[serde(alias = "")]
    Tcp,
    Tls,
    Udp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Also `""`, as gobetween reads it.
    #[default]
    #[serde(alias = "")]
    Weight,
    Roundrobin,
    Leastconn,
    Leastbandwidth,
    Iphash,
    Iphash1,
    /// betwixt addition: a Maglev table, O(1) per pick and removal-consistent for large pools.
    Maglev,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub bind: String,
    pub protocol: Option<Protocol>,
    pub balance: Option<Balance>,
    /// betwixt addition: every strategy (not only `weight`, as in gobetween) prefers the lowest
    /// priority value that has an eligible backend. Default `false`.
    pub priority_groups: Option<bool>,
    /// betwixt addition: `false` leaves the server out of `[access_log]`. Default `true`.
    pub access_log: Option<bool>,
    /// betwixt addition: `false` closes both connections at the first end of stream of either
    /// side, as gobetween does (and nginx's `proxy_half_close off`). Default `true`: a side's
    /// FIN is passed on and the other direction carries on (as HAProxy does).
    pub half_close: Option<bool>,
    pub max_connections: Option<u32>,
    pub client_idle_timeout: Option<LooseDuration>,
    pub backend_idle_timeout: Option<LooseDuration>,
    pub backend_connection_timeout: Option<LooseDuration>,
    pub sni: Option<Sni>,
    pub tls: Option<Tls>,
    pub backends_tls: Option<BackendsTls>,
    pub udp: Option<Udp>,
    pub access: Option<Access>,
    pub proxy_protocol: Option<ProxyProtocol>,
    /// betwixt addition: read a PROXY protocol header from each client (an upstream balancer)
    /// and take the client's address from it.
    pub accept_proxy_protocol: Option<AcceptProxyProtocol>,
    pub discovery: Discovery,
    pub healthcheck: Option<Healthcheck>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sni {
    #[serde(default, deserialize_with = "empty_is_unset")]
    pub read_timeout: Option<WrittenDuration>,
    pub hostname_matching_strategy: Option<String>,
    pub unexpected_hostname_strategy: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tls {
    pub cert_path: Option<String>,
    pub key_path: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub ciphers: Option<Vec<String>>,
    pub prefer_server_ciphers: Option<bool>,
    pub session_tickets: Option<bool>,
    pub acme_hosts: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendsTls {
    pub ignore_verify: Option<bool>,
    pub root_ca_cert_path: Option<String>,
    pub cert_path: Option<String>,
    pub key_path: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub ciphers: Option<Vec<String>>,
    pub prefer_server_ciphers: Option<bool>,
    pub session_tickets: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Udp {
    pub max_requests: Option<u64>,
    pub max_responses: Option<u64>,
    pub transparent: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Access {
    /// `allow` or `deny`; left out or empty is `allow`, as in gobetween.
    pub default: Option<String>,
    /// `allow|deny IP-or-CIDR`, first match wins. An empty list and none at all act alike;
    /// the API shows them apart, as gobetween's does (`[]` and `null`).
    pub rules: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyProtocol {
    /// `"1"` (gobetween) or `"2"` (betwixt addition).
    pub version: String,
}

/// `[servers.NAME.accept_proxy_protocol]`, a betwixt addition.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AcceptProxyProtocol {
    /// `"1"`, `"2"` or `"any"` (left out or empty: `"any"`).
    pub version: Option<String>,
    /// Time a client has to send the whole header (left out or empty: `"2s"`).
    #[serde(default, deserialize_with = "empty_is_unset")]
    pub read_timeout: Option<WrittenDuration>,
    /// Addresses and networks whose headers are believed (left out: every client's).
    pub trusted: Option<Vec<String>>,
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
    /// A betwixt addition.
    Kubernetes,
}

/// One flat table as in gobetween: `kind` picks which of the kind-specific keys apply.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    pub kind: DiscoveryKind,
    /// `keeplast` or `setempty`; empty is `keeplast`.
    pub failpolicy: Option<String>,
    #[serde(default, deserialize_with = "empty_is_unset")]
    pub interval: Option<WrittenDuration>,
    #[serde(default, deserialize_with = "empty_is_unset")]
    pub timeout: Option<WrittenDuration>,

    /// Backend lines as written; `discovery::static_list` reads them.
    pub static_list: Option<Vec<String>>,

    pub srv_lookup_server: Option<String>,
    pub srv_lookup_pattern: Option<String>,
    pub srv_dns_protocol: Option<String>,

    pub docker_endpoint: Option<String>,
    pub docker_container_private_port: Option<u16>,
    pub docker_container_label: Option<String>,
    pub docker_container_host_env_var: Option<String>,
    pub docker_tls_enabled: Option<bool>,
    pub docker_tls_cert_path: Option<String>,
    pub docker_tls_key_path: Option<String>,
    pub docker_tls_cacert_path: Option<String>,

    pub json_endpoint: Option<String>,
    pub json_host_pattern: Option<String>,
    pub json_port_pattern: Option<String>,
    pub json_weight_pattern: Option<String>,
    pub json_priority_pattern: Option<String>,
    pub json_sni_pattern: Option<String>,
    pub json_max_connections_pattern: Option<String>,

    pub exec_command: Option<Vec<String>>,

    pub plaintext_endpoint: Option<String>,
    pub plaintext_regex_pattern: Option<String>,

    pub consul_host: Option<String>,
    pub consul_service_name: Option<String>,
    pub consul_service_tag: Option<String>,
    pub consul_service_passing_only: Option<bool>,
    /// The key gobetween's code reads.
    pub consul_datacenter: Option<String>,
    /// The key gobetween's sample file writes (and gobetween ignores): read as `consul_datacenter`.
    pub consul_service_datacenter: Option<String>,
    pub consul_auth_username: Option<String>,
    pub consul_auth_password: Option<String>,
    pub consul_acl_token: Option<String>,
    pub consul_tls_enabled: Option<bool>,
    pub consul_tls_cert_path: Option<String>,
    pub consul_tls_key_path: Option<String>,
    pub consul_tls_cacert_path: Option<String>,

    pub lxd_server_address: Option<String>,
    pub lxd_server_remote_name: Option<String>,
    pub lxd_server_remote_password: Option<String>,
    pub lxd_config_directory: Option<String>,
    pub lxd_generate_client_certs: Option<bool>,
    pub lxd_accept_server_cert: Option<bool>,
    pub lxd_container_label_key: Option<String>,
    pub lxd_container_label_value: Option<String>,
    pub lxd_container_port: Option<u16>,
    pub lxd_container_port_key: Option<String>,
    pub lxd_container_interface: Option<String>,
    pub lxd_container_interface_key: Option<String>,
    pub lxd_container_sni_key: Option<String>,
    pub lxd_container_address_type: Option<String>,

    /// `kubernetes_*`: betwixt additions (`discovery::kubernetes`).
    pub kubernetes_service_name: Option<String>,
    pub kubernetes_namespace: Option<String>,
    pub kubernetes_port_name: Option<String>,
    pub kubernetes_kubeconfig_path: Option<String>,
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

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    pub kind: HealthcheckKind,
    #[serde(default, deserialize_with = "empty_is_unset")]
    pub interval: Option<WrittenDuration>,
    /// `"0"` (or left out): no time limit of the check's own; see `resolve`.
    #[serde(default, deserialize_with = "empty_is_unset")]
    pub timeout: Option<WrittenDuration>,
    /// Below 1 is read as 1 (`loose::at_least_one`).
    pub fails: Option<i64>,
    pub passes: Option<i64>,
    pub initial_status: Option<InitialStatus>,

    pub probe_protocol: Option<String>,
    pub probe_strategy: Option<String>,
    pub probe_send: Option<String>,
    pub probe_recv: Option<String>,
    pub probe_recv_len: Option<u32>,

    pub exec_command: Option<String>,
    pub exec_expected_positive_output: Option<String>,
    pub exec_expected_negative_output: Option<String>,
}
