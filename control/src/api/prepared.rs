//! A server's configuration as gobetween's API shows it (`GET /servers`, `/dump`): the section
//! after gobetween's `prepareConfig`, field for field in the order of its `config.Server`
//! struct. Every field is written, with its default when the configuration left it out;
//! sections left out are `null`; durations and backend lines are shown as written; `[defaults]`
//! is folded in. The kind-specific keys of `discovery` and `healthcheck` appear by group, as Go's
//! embedded structs do: every key of a group when the configuration gave at least one of them.

use crate::config::model::{
    Access, BackendsTls, ConnectionOptions, Discovery, Healthcheck, InitialStatus, Protocol, Server, Sni,
    Tls, Udp,
};
use crate::config::WrittenDuration;
use crate::healthcheck::escapes::unescape;
use serde::Serialize;

/// A duration left out, as gobetween fills it in.
const NO_DURATION: &str = "0";

#[derive(Serialize)]
pub struct Prepared<'a> {
    max_connections: u32,
    client_idle_timeout: &'a str,
    backend_idle_timeout: &'a str,
    backend_connection_timeout: &'a str,
    bind: &'a str,
    protocol: String,
    balance: String,
    /// betwixt's own key, written only when the configuration sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    priority_groups: Option<bool>,
    sni: Option<SniView<'a>>,
    tls: Option<TlsView<'a>>,
    backends_tls: Option<BackendsTlsView<'a>>,
    udp: Option<UdpView>,
    access: Option<AccessView<'a>>,
    proxy_protocol: Option<ProxyProtocolView<'a>>,
    discovery: DiscoveryView<'a>,
    healthcheck: HealthcheckView<'a>,
}

impl<'a> Prepared<'a> {
    pub fn of(server: &'a Server, defaults: Option<&'a ConnectionOptions>) -> Prepared<'a> {
        let duration = |own: &'a Option<_>, default: fn(&'a ConnectionOptions) -> &'a Option<_>| {
            let written: Option<&'a crate::config::loose::LooseDuration> =
                Option::as_ref(own).or_else(|| defaults.and_then(|d| default(d).as_ref()));
            written.map_or(NO_DURATION, |d| d.0.as_str())
        };
        let protocol = server.protocol.unwrap_or_default();
        Prepared {
            max_connections: server.max_connections.or(defaults.and_then(|d| d.max_connections)).unwrap_or(0),
            client_idle_timeout: duration(&server.client_idle_timeout, |d| &d.client_idle_timeout),
            backend_idle_timeout: duration(&server.backend_idle_timeout, |d| &d.backend_idle_timeout),
            backend_connection_timeout: duration(&server.backend_connection_timeout, |d| {
                &d.backend_connection_timeout
            }),
            bind: &server.bind,
            protocol: name_of(&protocol),
            balance: name_of(&server.balance.unwrap_or_default()),
            priority_groups: server.priority_groups,
            sni: server.sni.as_ref().map(SniView::of),
            tls: server.tls.as_ref().map(TlsView::of),
            backends_tls: server.backends_tls.as_ref().map(BackendsTlsView::of),
            udp: match (&server.udp, protocol) {
                (Some(udp), _) => Some(UdpView::of(udp)),
                (None, Protocol::Udp) => Some(UdpView::of(&Udp::default())),
                (None, _) => None,
            },
            access: server.access.as_ref().map(AccessView::of),
            proxy_protocol: server.proxy_protocol.as_ref().map(|p| ProxyProtocolView { version: &p.version }),
            discovery: DiscoveryView::of(&server.discovery),
            healthcheck: HealthcheckView::of(server.healthcheck.as_ref()),
        }
    }
}

/// The name serde gives a unit enum value (`"weight"`, `"tcp"`, `"none"`).
fn name_of<T: Serialize>(value: &T) -> String {
    let value = sonic_rs::to_value(value).ok();
    value.as_ref().and_then(sonic_rs::JsonValueTrait::as_str).unwrap_or_default().to_string()
}

fn text<'a>(value: &'a Option<String>, default: &'a str) -> &'a str {
    value.as_deref().filter(|v| !v.is_empty()).unwrap_or(default)
}

fn written<'a>(value: &'a Option<WrittenDuration>, default: &'a str) -> &'a str {
    value.as_ref().map_or(default, |d| d.text.as_str())
}

#[derive(Serialize)]
struct SniView<'a> {
    hostname_matching_strategy: &'a str,
    unexpected_hostname_strategy: &'a str,
    read_timeout: &'a str,
}

impl<'a> SniView<'a> {
    fn of(sni: &'a Sni) -> Self {
        SniView {
            hostname_matching_strategy: text(&sni.hostname_matching_strategy, "exact"),
            unexpected_hostname_strategy: text(&sni.unexpected_hostname_strategy, "default"),
            read_timeout: written(&sni.read_timeout, "2s"),
        }
    }
}

/// The part `tls` and `backends_tls` share (gobetween's embedded `tlsCommon`).
#[derive(Serialize)]
struct TlsCommon<'a> {
    ciphers: Option<&'a [String]>,
    min_version: &'a str,
    max_version: &'a str,
    session_tickets: bool,
}

impl<'a> TlsCommon<'a> {
    fn of(
        ciphers: &'a Option<Vec<String>>,
        min: &'a Option<String>,
        max: &'a Option<String>,
        tickets: Option<bool>,
    ) -> Self {
        TlsCommon {
            ciphers: ciphers.as_deref(),
            min_version: min.as_deref().unwrap_or(""),
            max_version: max.as_deref().unwrap_or(""),
            session_tickets: tickets.unwrap_or(false),
        }
    }
}

#[derive(Serialize)]
struct TlsView<'a> {
    acme_hosts: Option<&'a [String]>,
    cert_path: &'a str,
    key_path: &'a str,
    #[serde(flatten)]
    common: TlsCommon<'a>,
}

impl<'a> TlsView<'a> {
    fn of(tls: &'a Tls) -> Self {
        TlsView {
            acme_hosts: tls.acme_hosts.as_deref(),
            cert_path: tls.cert_path.as_deref().unwrap_or(""),
            key_path: tls.key_path.as_deref().unwrap_or(""),
            common: TlsCommon::of(&tls.ciphers, &tls.min_version, &tls.max_version, tls.session_tickets),
        }
    }
}

#[derive(Serialize)]
struct BackendsTlsView<'a> {
    ignore_verify: bool,
    root_ca_cert_path: Option<&'a str>,
    cert_path: Option<&'a str>,
    key_path: Option<&'a str>,
    #[serde(flatten)]
    common: TlsCommon<'a>,
}

impl<'a> BackendsTlsView<'a> {
    fn of(tls: &'a BackendsTls) -> Self {
        BackendsTlsView {
            ignore_verify: tls.ignore_verify.unwrap_or(false),
            root_ca_cert_path: tls.root_ca_cert_path.as_deref(),
            cert_path: tls.cert_path.as_deref(),
            key_path: tls.key_path.as_deref(),
            common: TlsCommon::of(&tls.ciphers, &tls.min_version, &tls.max_version, tls.session_tickets),
        }
    }
}

#[derive(Serialize)]
struct UdpView {
    max_requests: u64,
    max_responses: u64,
    transparent: bool,
}

impl UdpView {
    fn of(udp: &Udp) -> Self {
        UdpView {
            max_requests: udp.max_requests.unwrap_or(0),
            max_responses: udp.max_responses.unwrap_or(0),
            transparent: udp.transparent.unwrap_or(false),
        }
    }
}

#[derive(Serialize)]
struct AccessView<'a> {
    default: &'a str,
    rules: Option<&'a [String]>,
}

impl<'a> AccessView<'a> {
    fn of(access: &'a Access) -> Self {
        // gobetween's access module writes its `allow` default back into the section.
        AccessView {
            default: text(&access.default, "allow"),
            rules: (!access.rules.is_empty()).then_some(access.rules.as_slice()),
        }
    }
}

#[derive(Serialize)]
struct ProxyProtocolView<'a> {
    version: &'a str,
}

#[derive(Serialize)]
struct DiscoveryView<'a> {
    kind: String,
    failpolicy: &'a str,
    interval: &'a str,
    timeout: &'a str,
    #[serde(flatten)]
    groups: DiscoveryGroups<'a>,
}

/// The kind-specific keys, in the order of gobetween's embedded structs.
#[derive(Serialize)]
struct DiscoveryGroups<'a> {
    #[serde(flatten)]
    r#static: Option<StaticGroup<'a>>,
    #[serde(flatten)]
    srv: Option<SrvGroup<'a>>,
    #[serde(flatten)]
    docker: Option<DockerGroup<'a>>,
    #[serde(flatten)]
    json: Option<JsonGroup<'a>>,
    #[serde(flatten)]
    exec: Option<ExecDiscoveryGroup<'a>>,
    #[serde(flatten)]
    plaintext: Option<PlaintextGroup<'a>>,
    #[serde(flatten)]
    consul: Option<ConsulGroup<'a>>,
    #[serde(flatten)]
    lxd: Option<LxdGroup<'a>>,
}

impl<'a> DiscoveryView<'a> {
    fn of(d: &'a Discovery) -> Self {
        DiscoveryView {
            kind: name_of(&d.kind),
            failpolicy: text(&d.failpolicy, "keeplast"),
            interval: written(&d.interval, NO_DURATION),
            timeout: written(&d.timeout, NO_DURATION),
            groups: DiscoveryGroups {
                r#static: d.static_list.as_ref().map(|list| StaticGroup { static_list: list }),
                srv: SrvGroup::of(d),
                docker: DockerGroup::of(d),
                json: JsonGroup::of(d),
                exec: d.exec_command.as_ref().map(|command| ExecDiscoveryGroup { exec_command: command }),
                plaintext: PlaintextGroup::of(d),
                consul: ConsulGroup::of(d),
                lxd: LxdGroup::of(d),
            },
        }
    }
}

/// Whether any of a group's keys was given.
fn any_given(keys: &[bool]) -> bool {
    keys.iter().any(|&given| given)
}

fn s(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

#[derive(Serialize)]
struct StaticGroup<'a> {
    static_list: &'a [String],
}

#[derive(Serialize)]
struct SrvGroup<'a> {
    srv_lookup_server: &'a str,
    srv_lookup_pattern: &'a str,
    srv_dns_protocol: &'a str,
}

impl<'a> SrvGroup<'a> {
    fn of(d: &'a Discovery) -> Option<Self> {
        any_given(&[
            d.srv_lookup_server.is_some(),
            d.srv_lookup_pattern.is_some(),
            d.srv_dns_protocol.is_some(),
        ])
        .then(|| SrvGroup {
            srv_lookup_server: s(&d.srv_lookup_server),
            srv_lookup_pattern: s(&d.srv_lookup_pattern),
            srv_dns_protocol: text(&d.srv_dns_protocol, "udp"),
        })
    }
}

#[derive(Serialize)]
struct DockerGroup<'a> {
    docker_endpoint: &'a str,
    docker_container_label: &'a str,
    docker_container_private_port: u16,
    docker_container_host_env_var: &'a str,
    docker_tls_enabled: bool,
    docker_tls_cert_path: &'a str,
    docker_tls_key_path: &'a str,
    docker_tls_cacert_path: &'a str,
}

impl<'a> DockerGroup<'a> {
    fn of(d: &'a Discovery) -> Option<Self> {
        any_given(&[
            d.docker_endpoint.is_some(),
            d.docker_container_label.is_some(),
            d.docker_container_private_port.is_some(),
            d.docker_container_host_env_var.is_some(),
            d.docker_tls_enabled.is_some(),
            d.docker_tls_cert_path.is_some(),
            d.docker_tls_key_path.is_some(),
            d.docker_tls_cacert_path.is_some(),
        ])
        .then(|| DockerGroup {
            docker_endpoint: s(&d.docker_endpoint),
            docker_container_label: s(&d.docker_container_label),
            docker_container_private_port: d.docker_container_private_port.unwrap_or(0),
            docker_container_host_env_var: s(&d.docker_container_host_env_var),
            docker_tls_enabled: d.docker_tls_enabled.unwrap_or(false),
            docker_tls_cert_path: s(&d.docker_tls_cert_path),
            docker_tls_key_path: s(&d.docker_tls_key_path),
            docker_tls_cacert_path: s(&d.docker_tls_cacert_path),
        })
    }
}

#[derive(Serialize)]
struct JsonGroup<'a> {
    json_endpoint: &'a str,
    json_host_pattern: &'a str,
    json_port_pattern: &'a str,
    json_weight_pattern: &'a str,
    json_priority_pattern: &'a str,
    json_sni_pattern: &'a str,
    json_max_connections_pattern: &'a str,
}

impl<'a> JsonGroup<'a> {
    fn of(d: &'a Discovery) -> Option<Self> {
        let keys = [
            &d.json_endpoint,
            &d.json_host_pattern,
            &d.json_port_pattern,
            &d.json_weight_pattern,
            &d.json_priority_pattern,
            &d.json_sni_pattern,
            &d.json_max_connections_pattern,
        ];
        any_given(&keys.map(Option::is_some)).then(|| JsonGroup {
            json_endpoint: s(keys[0]),
            json_host_pattern: s(keys[1]),
            json_port_pattern: s(keys[2]),
            json_weight_pattern: s(keys[3]),
            json_priority_pattern: s(keys[4]),
            json_sni_pattern: s(keys[5]),
            json_max_connections_pattern: s(keys[6]),
        })
    }
}

#[derive(Serialize)]
struct ExecDiscoveryGroup<'a> {
    exec_command: &'a [String],
}

#[derive(Serialize)]
struct PlaintextGroup<'a> {
    plaintext_endpoint: &'a str,
    plaintext_regex_pattern: &'a str,
}

impl<'a> PlaintextGroup<'a> {
    fn of(d: &'a Discovery) -> Option<Self> {
        any_given(&[d.plaintext_endpoint.is_some(), d.plaintext_regex_pattern.is_some()]).then(|| {
            PlaintextGroup {
                plaintext_endpoint: s(&d.plaintext_endpoint),
                plaintext_regex_pattern: s(&d.plaintext_regex_pattern),
            }
        })
    }
}

#[derive(Serialize)]
struct ConsulGroup<'a> {
    consul_host: &'a str,
    consul_service_name: &'a str,
    consul_service_tag: &'a str,
    consul_service_passing_only: bool,
    consul_datacenter: &'a str,
    consul_auth_username: &'a str,
    consul_auth_password: &'a str,
    consul_tls_enabled: bool,
    consul_tls_cert_path: &'a str,
    consul_tls_key_path: &'a str,
    consul_tls_cacert_path: &'a str,
    consul_acl_token: &'a str,
}

impl<'a> ConsulGroup<'a> {
    fn of(d: &'a Discovery) -> Option<Self> {
        let strings = [
            &d.consul_host,
            &d.consul_service_name,
            &d.consul_service_tag,
            &d.consul_datacenter,
            &d.consul_service_datacenter,
            &d.consul_auth_username,
            &d.consul_auth_password,
            &d.consul_tls_cert_path,
            &d.consul_tls_key_path,
            &d.consul_tls_cacert_path,
            &d.consul_acl_token,
        ];
        let flags = [d.consul_service_passing_only.is_some(), d.consul_tls_enabled.is_some()];
        (any_given(&strings.map(Option::is_some)) || any_given(&flags)).then(|| ConsulGroup {
            consul_host: s(&d.consul_host),
            consul_service_name: s(&d.consul_service_name),
            consul_service_tag: s(&d.consul_service_tag),
            consul_service_passing_only: d.consul_service_passing_only.unwrap_or(false),
            // The sample file's `consul_service_datacenter` is read as `consul_datacenter`.
            consul_datacenter: d
                .consul_datacenter
                .as_deref()
                .or(d.consul_service_datacenter.as_deref())
                .unwrap_or(""),
            consul_auth_username: s(&d.consul_auth_username),
            consul_auth_password: s(&d.consul_auth_password),
            consul_tls_enabled: d.consul_tls_enabled.unwrap_or(false),
            consul_tls_cert_path: s(&d.consul_tls_cert_path),
            consul_tls_key_path: s(&d.consul_tls_key_path),
            consul_tls_cacert_path: s(&d.consul_tls_cacert_path),
            consul_acl_token: s(&d.consul_acl_token),
        })
    }
}

#[derive(Serialize)]
struct LxdGroup<'a> {
    lxd_server_address: &'a str,
    lxd_server_remote_name: &'a str,
    lxd_server_remote_password: &'a str,
    lxd_config_directory: &'a str,
    lxd_generate_client_certs: bool,
    lxd_accept_server_cert: bool,
    lxd_container_label_key: &'a str,
    lxd_container_label_value: &'a str,
    lxd_container_port: u16,
    lxd_container_port_key: &'a str,
    lxd_container_interface: &'a str,
    lxd_container_interface_key: &'a str,
    lxd_container_sni_key: &'a str,
    lxd_container_address_type: &'a str,
}

impl<'a> LxdGroup<'a> {
    fn of(d: &'a Discovery) -> Option<Self> {
        let strings = [
            &d.lxd_server_address,
            &d.lxd_server_remote_name,
            &d.lxd_server_remote_password,
            &d.lxd_config_directory,
            &d.lxd_container_label_key,
            &d.lxd_container_label_value,
            &d.lxd_container_port_key,
            &d.lxd_container_interface,
            &d.lxd_container_interface_key,
            &d.lxd_container_sni_key,
            &d.lxd_container_address_type,
        ];
        let others = [
            d.lxd_generate_client_certs.is_some(),
            d.lxd_accept_server_cert.is_some(),
            d.lxd_container_port.is_some(),
        ];
        (any_given(&strings.map(Option::is_some)) || any_given(&others)).then(|| LxdGroup {
            lxd_server_address: s(&d.lxd_server_address),
            lxd_server_remote_name: text(&d.lxd_server_remote_name, "local"),
            lxd_server_remote_password: s(&d.lxd_server_remote_password),
            lxd_config_directory: s(&d.lxd_config_directory),
            lxd_generate_client_certs: d.lxd_generate_client_certs.unwrap_or(false),
            lxd_accept_server_cert: d.lxd_accept_server_cert.unwrap_or(false),
            lxd_container_label_key: s(&d.lxd_container_label_key),
            lxd_container_label_value: s(&d.lxd_container_label_value),
            lxd_container_port: d.lxd_container_port.unwrap_or(0),
            lxd_container_port_key: s(&d.lxd_container_port_key),
            lxd_container_interface: text(&d.lxd_container_interface, "eth0"),
            lxd_container_interface_key: s(&d.lxd_container_interface_key),
            lxd_container_sni_key: s(&d.lxd_container_sni_key),
            lxd_container_address_type: text(&d.lxd_container_address_type, "IPv4"),
        })
    }
}

#[derive(Serialize)]
struct HealthcheckView<'a> {
    kind: String,
    interval: &'a str,
    passes: i64,
    fails: i64,
    timeout: &'a str,
    initial_status: Option<&'static str>,
    #[serde(flatten)]
    exec: Option<ExecCheckGroup<'a>>,
    #[serde(flatten)]
    probe: Option<ProbeGroup<'a>>,
}

impl<'a> HealthcheckView<'a> {
    /// A server without a healthcheck shows gobetween's `none` check.
    fn of(check: Option<&'a Healthcheck>) -> Self {
        let Some(check) = check else {
            return HealthcheckView {
                kind: "none".into(),
                interval: NO_DURATION,
                passes: 1,
                fails: 1,
                timeout: NO_DURATION,
                initial_status: None,
                exec: None,
                probe: None,
            };
        };
        HealthcheckView {
            kind: name_of(&check.kind),
            interval: written(&check.interval, NO_DURATION),
            passes: check.passes.filter(|&n| n > 0).unwrap_or(1),
            fails: check.fails.filter(|&n| n > 0).unwrap_or(1),
            timeout: written(&check.timeout, NO_DURATION),
            initial_status: check.initial_status.map(|status| match status {
                InitialStatus::Healthy => "healthy",
                InitialStatus::Unhealthy => "unhealthy",
            }),
            exec: ExecCheckGroup::of(check),
            probe: ProbeGroup::of(check),
        }
    }
}

#[derive(Serialize)]
struct ExecCheckGroup<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    exec_command: &'a str,
    exec_expected_positive_output: &'a str,
    exec_expected_negative_output: &'a str,
}

impl<'a> ExecCheckGroup<'a> {
    fn of(c: &'a Healthcheck) -> Option<Self> {
        let keys = [&c.exec_command, &c.exec_expected_positive_output, &c.exec_expected_negative_output];
        any_given(&keys.map(Option::is_some)).then(|| ExecCheckGroup {
            exec_command: s(keys[0]),
            exec_expected_positive_output: s(keys[1]),
            exec_expected_negative_output: s(keys[2]),
        })
    }
}

#[derive(Serialize)]
struct ProbeGroup<'a> {
    probe_protocol: &'a str,
    probe_strategy: &'a str,
    /// After escape processing, as gobetween shows them.
    probe_send: String,
    probe_recv: String,
    probe_recv_len: u32,
}

impl<'a> ProbeGroup<'a> {
    fn of(c: &'a Healthcheck) -> Option<Self> {
        let given = [&c.probe_protocol, &c.probe_strategy, &c.probe_send, &c.probe_recv].map(Option::is_some);
        if !any_given(&given) && c.probe_recv_len.is_none() {
            return None;
        }
        let strategy = text(&c.probe_strategy, "starts_with");
        let unescaped = |value: &Option<String>| {
            let value = s(value);
            unescape(value)
                .map_or_else(|_| value.to_string(), |bytes| String::from_utf8_lossy(&bytes).into_owned())
        };
        Some(ProbeGroup {
            probe_protocol: s(&c.probe_protocol),
            probe_strategy: strategy,
            probe_send: unescaped(&c.probe_send),
            // A regexp is left as written; only a plain expected reply is unescaped.
            probe_recv: if strategy == "starts_with" {
                unescaped(&c.probe_recv)
            } else {
                s(&c.probe_recv).into()
            },
            probe_recv_len: c.probe_recv_len.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::reply::to_json;
    use crate::config::{parse_as, Format};
    use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

    /// The prepared view of a server section given as JSON, with `[defaults]` as JSON.
    fn prepared(server: &str, defaults: Option<&str>) -> Value {
        let (server, _): (Server, _) = parse_as(server, Format::Json).unwrap();
        let defaults: Option<ConnectionOptions> = defaults.map(|d| parse_as(d, Format::Json).unwrap().0);
        sonic_rs::from_str(&to_json(&Prepared::of(&server, defaults.as_ref())).unwrap()).unwrap()
    }

    fn keys(value: &Value) -> Vec<String> {
        value.as_object().unwrap().iter().map(|(k, _)| k.to_string()).collect()
    }

    const STATIC: &str = r#""discovery": {"kind": "static", "static_list": []}"#;

    #[test]
    fn udp_server_gets_gobetweens_udp_section() {
        // gobetween's `[servers.udpsample]`.
        let udp = prepared(
            &format!(
                r#"{{"bind": "localhost:4000", "protocol": "udp", "udp": {{"max_responses": 1}}, {STATIC}}}"#
            ),
            None,
        );
        assert_eq!(udp["protocol"].as_str(), Some("udp"));
        assert_eq!(udp["udp"].to_string(), r#"{"max_requests":0,"max_responses":1,"transparent":false}"#);
        let bare = prepared(&format!(r#"{{"bind": ":1", "protocol": "udp", {STATIC}}}"#), None);
        assert_eq!(bare["udp"].to_string(), r#"{"max_requests":0,"max_responses":0,"transparent":false}"#);
        assert!(prepared(&format!(r#"{{"bind": ":1", {STATIC}}}"#), None)["udp"].is_null());
    }

    #[test]
    fn connection_options_come_from_the_server_then_defaults_as_written() {
        let defaults =
            r#"{"max_connections": 7, "client_idle_timeout": "1m", "backend_idle_timeout": "bogus"}"#;
        let server =
            prepared(&format!(r#"{{"bind": ":1", "client_idle_timeout": "90s", {STATIC}}}"#), Some(defaults));
        assert_eq!(server["max_connections"].as_u64(), Some(7));
        assert_eq!(server["client_idle_timeout"].as_str(), Some("90s"));
        assert_eq!(server["backend_idle_timeout"].as_str(), Some("bogus"));
        assert_eq!(server["backend_connection_timeout"].as_str(), Some("0"));
    }

    #[test]
    fn sections_with_their_defaults_in_gobetweens_order() {
        let server = prepared(
            &format!(
                r#"{{"bind": ":1", "sni": {{}}, "tls": {{"cert_path": "c", "key_path": "k"}},
                    "backends_tls": {{"ignore_verify": true}}, "access": {{"default": "", "rules": []}},
                    "proxy_protocol": {{"version": "1"}}, {STATIC}}}"#
            ),
            None,
        );
        assert_eq!(
            server["sni"].to_string(),
            r#"{"hostname_matching_strategy":"exact","unexpected_hostname_strategy":"default","read_timeout":"2s"}"#
        );
        assert_eq!(
            server["tls"].to_string(),
            r#"{"acme_hosts":null,"cert_path":"c","key_path":"k","ciphers":null,"min_version":"","max_version":"","session_tickets":false}"#
        );
        assert_eq!(
            keys(&server["backends_tls"]),
            [
                "ignore_verify",
                "root_ca_cert_path",
                "cert_path",
                "key_path",
                "ciphers",
                "min_version",
                "max_version",
                "session_tickets"
            ]
        );
        assert!(server["backends_tls"]["cert_path"].is_null());
        assert_eq!(server["access"].to_string(), r#"{"default":"allow","rules":null}"#);
        assert_eq!(server["proxy_protocol"].to_string(), r#"{"version":"1"}"#);
    }

    #[test]
    fn kind_groups_appear_whole_when_one_key_is_given() {
        let consul = prepared(
            r#"{"bind": ":1", "discovery": {"kind": "consul", "consul_host": "h:8500", "consul_service_datacenter": "dc1"}}"#,
            None,
        );
        let d = &consul["discovery"];
        assert_eq!(keys(d)[..4], ["kind", "failpolicy", "interval", "timeout"]);
        assert_eq!(keys(d).len(), 4 + 12, "every consul key: {d}");
        assert!(d.get("static_list").is_none());
        assert_eq!(d["consul_datacenter"].as_str(), Some("dc1"));
        assert_eq!(d["consul_service_passing_only"].as_bool(), Some(false));

        let probe = prepared(
            &format!(
                r#"{{"bind": ":1", {STATIC}, "healthcheck": {{"kind": "probe", "interval": "2s",
                    "probe_protocol": "tcp", "probe_send": "PING\\n", "probe_recv": "PONG"}}}}"#
            ),
            None,
        );
        let check = &probe["healthcheck"];
        assert_eq!(
            keys(check),
            [
                "kind",
                "interval",
                "passes",
                "fails",
                "timeout",
                "initial_status",
                "probe_protocol",
                "probe_strategy",
                "probe_send",
                "probe_recv",
                "probe_recv_len"
            ]
        );
        assert_eq!(check["probe_send"].as_str(), Some("PING\n"));
        assert_eq!(check["probe_strategy"].as_str(), Some("starts_with"));

        let exec = prepared(
            &format!(
                r#"{{"bind": ":1", {STATIC}, "healthcheck": {{"kind": "exec", "interval": "2s",
                    "exec_expected_positive_output": "1", "initial_status": "unhealthy", "passes": -3}}}}"#
            ),
            None,
        );
        let check = &exec["healthcheck"];
        assert_eq!(keys(check)[6..], ["exec_expected_positive_output", "exec_expected_negative_output"]);
        assert_eq!(check["initial_status"].as_str(), Some("unhealthy"));
        assert_eq!(check["passes"].as_i64(), Some(1));
    }
}
