//! A server's configuration as gobetween's API shows it (`GET /servers`, `/dump`): the section
//! after gobetween's `prepareConfig`, field for field in the order of its `config.Server`
//! struct. Every field is written, with its default when the configuration left it out;
//! sections left out are `null`; durations and backend lines are shown as written; `[defaults]`
//! is folded in. The kind-specific keys of `discovery` and `healthcheck` appear by group, as Go's
//! embedded structs do: every key of a group when the configuration gave at least one of them.

use crate::config::model::{
    Access, BackendsTls, ConnectionOptions, Discovery, Healthcheck, HealthcheckKind, InitialStatus, Protocol,
    Server, Sni, Tls, Udp,
};
use crate::config::resolve::DEFAULT_CHECK_INTERVAL_TEXT;
use crate::config::WrittenDuration;
use crate::healthcheck::escapes::unescape;
use serde::Serialize;
use sonic_rs::{JsonValueTrait, Value};

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
    /// betwixt's own key, written only when the configuration sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log: Option<bool>,
    /// betwixt's own key, written only when the configuration sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    half_close: Option<bool>,
    sni: Option<SniView<'a>>,
    tls: Option<TlsView<'a>>,
    backends_tls: Option<BackendsTlsView<'a>>,
    udp: Option<UdpView>,
    access: Option<AccessView<'a>>,
    proxy_protocol: Option<ProxyProtocolView<'a>>,
    /// betwixt's own section, written only when the configuration sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    accept_proxy_protocol: Option<AcceptProxyView<'a>>,
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
            access_log: server.access_log,
            half_close: server.half_close,
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
            accept_proxy_protocol: server.accept_proxy_protocol.as_ref().map(|a| AcceptProxyView {
                version: text(&a.version, "any"),
                read_timeout: written(&a.read_timeout, "2s"),
                trusted: a.trusted.as_deref(),
            }),
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
struct AcceptProxyView<'a> {
    version: &'a str,
    read_timeout: &'a str,
    /// `null`: every peer's header is believed.
    trusted: Option<&'a [String]>,
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
        AccessView { default: text(&access.default, "allow"), rules: access.rules.as_deref() }
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
    groups: Groups,
}

impl<'a> DiscoveryView<'a> {
    fn of(d: &'a Discovery) -> Self {
        DiscoveryView {
            kind: name_of(&d.kind),
            failpolicy: text(&d.failpolicy, "keeplast"),
            interval: written(&d.interval, NO_DURATION),
            timeout: written(&d.timeout, NO_DURATION),
            groups: Groups::of(d),
        }
    }
}

/// What a key of a kind-specific group shows when the configuration leaves it out.
#[derive(Clone, Copy)]
enum Unset {
    Text(&'static str),
    Flag,
    Number,
    List,
}

const TEXT: Unset = Unset::Text("");

/// gobetween's kind-specific discovery keys: one group per embedded struct of its
/// `DiscoveryConfig`, in its order, each key with what gobetween shows when it is left out;
/// then betwixt's own kinds.
const DISCOVERY_GROUPS: [&[(&str, Unset)]; 9] = [
    &[("static_list", Unset::List)],
    &[("srv_lookup_server", TEXT), ("srv_lookup_pattern", TEXT), ("srv_dns_protocol", Unset::Text("udp"))],
    &[
        ("docker_endpoint", TEXT),
        ("docker_container_label", TEXT),
        ("docker_container_private_port", Unset::Number),
        ("docker_container_host_env_var", TEXT),
        ("docker_tls_enabled", Unset::Flag),
        ("docker_tls_cert_path", TEXT),
        ("docker_tls_key_path", TEXT),
        ("docker_tls_cacert_path", TEXT),
    ],
    &[
        ("json_endpoint", TEXT),
        ("json_host_pattern", TEXT),
        ("json_port_pattern", TEXT),
        ("json_weight_pattern", TEXT),
        ("json_priority_pattern", TEXT),
        ("json_sni_pattern", TEXT),
        ("json_max_connections_pattern", TEXT),
    ],
    &[("exec_command", Unset::List)],
    &[("plaintext_endpoint", TEXT), ("plaintext_regex_pattern", TEXT)],
    &[
        ("consul_host", TEXT),
        ("consul_service_name", TEXT),
        ("consul_service_tag", TEXT),
        ("consul_service_passing_only", Unset::Flag),
        ("consul_datacenter", TEXT),
        ("consul_auth_username", TEXT),
        ("consul_auth_password", TEXT),
        ("consul_tls_enabled", Unset::Flag),
        ("consul_tls_cert_path", TEXT),
        ("consul_tls_key_path", TEXT),
        ("consul_tls_cacert_path", TEXT),
        ("consul_acl_token", TEXT),
    ],
    &[
        ("lxd_server_address", TEXT),
        ("lxd_server_remote_name", Unset::Text("local")),
        ("lxd_server_remote_password", TEXT),
        ("lxd_config_directory", TEXT),
        ("lxd_generate_client_certs", Unset::Flag),
        ("lxd_accept_server_cert", Unset::Flag),
        ("lxd_container_label_key", TEXT),
        ("lxd_container_label_value", TEXT),
        ("lxd_container_port", Unset::Number),
        ("lxd_container_port_key", TEXT),
        ("lxd_container_interface", Unset::Text("eth0")),
        ("lxd_container_interface_key", TEXT),
        ("lxd_container_sni_key", TEXT),
        ("lxd_container_address_type", Unset::Text("IPv4")),
    ],
    &[
        ("kubernetes_service_name", TEXT),
        ("kubernetes_namespace", TEXT),
        ("kubernetes_port_name", TEXT),
        ("kubernetes_kubeconfig_path", TEXT),
    ],
];

/// The sample file's name for `consul_datacenter`, which betwixt reads as it.
const DATACENTER_ALIAS: (&str, &str) = ("consul_service_datacenter", "consul_datacenter");

/// The kind-specific keys to show, in order: every key of each group the section used.
struct Groups(Vec<(&'static str, Value)>);

impl Groups {
    fn of(discovery: &Discovery) -> Groups {
        // The keys the section gave, by name (the model leaves out the others when written).
        let mut given = sonic_rs::to_value(discovery).ok().and_then(|v| v.into_object()).unwrap_or_default();
        if let Some(datacenter) = given.remove(&DATACENTER_ALIAS.0) {
            if given.get(&DATACENTER_ALIAS.1).is_none() {
                given.insert(DATACENTER_ALIAS.1, datacenter);
            }
        }
        let mut keys = Vec::new();
        for group in DISCOVERY_GROUPS {
            if !group.iter().any(|(key, _)| given.get(key).is_some()) {
                continue;
            }
            for &(key, unset) in group {
                let value = given
                    .get(&key)
                    .filter(|v| !matches!(unset, Unset::Text(d) if !d.is_empty() && v.as_str() == Some("")));
                let value = value.cloned().unwrap_or_else(|| match unset {
                    Unset::Text(default) => Value::from(default),
                    Unset::Flag => Value::from(false),
                    Unset::Number => Value::from(0),
                    Unset::List => Value::new_array(),
                });
                keys.push((key, value));
            }
        }
        Groups(keys)
    }
}

impl Serialize for Groups {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Whether any of a group's keys was given.
fn any_given(keys: &[bool]) -> bool {
    keys.iter().any(|&given| given)
}

fn s(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

/// The interval as written; a check without one runs at betwixt's default, shown as such so
/// that `/dump` reads back the same (gobetween refuses such a check).
fn check_interval(check: &Healthcheck) -> &str {
    match check.interval.as_ref().filter(|d| !d.text.trim().is_empty()) {
        Some(d) => &d.text,
        None if check.kind == HealthcheckKind::None => NO_DURATION,
        None => DEFAULT_CHECK_INTERVAL_TEXT,
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
            interval: check_interval(check),
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
    fn betwixts_own_server_keys_appear_only_when_set() {
        let bare = prepared(&format!(r#"{{"bind": ":1", {STATIC}}}"#), None);
        for key in ["priority_groups", "access_log", "half_close"] {
            assert!(bare[key].is_null(), "{key} shown unset");
        }
        let set = prepared(&format!(r#"{{"bind": ":1", "half_close": false, {STATIC}}}"#), None);
        assert_eq!(set["half_close"].as_bool(), Some(false));
        let order = keys(&set);
        let at = |key: &str| order.iter().position(|k| k == key).unwrap();
        assert!(at("balance") < at("half_close") && at("half_close") < at("sni"), "{order:?}");
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
        // An empty list stays one, as Go's decoders make it (a non-nil empty slice).
        assert_eq!(server["access"].to_string(), r#"{"default":"allow","rules":[]}"#);
        assert_eq!(server["proxy_protocol"].to_string(), r#"{"version":"1"}"#);
        let no_rules =
            prepared(&format!(r#"{{"bind": ":1", "access": {{"default": "deny"}}, {STATIC}}}"#), None);
        assert_eq!(no_rules["access"].to_string(), r#"{"default":"deny","rules":null}"#);
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
        let srv = prepared(
            r#"{"bind": ":1", "discovery": {"kind": "srv", "srv_lookup_server": "ns:53", "srv_dns_protocol": ""}}"#,
            None,
        );
        assert_eq!(
            srv["discovery"].to_string(),
            r#"{"kind":"srv","failpolicy":"keeplast","interval":"0","timeout":"0","srv_lookup_server":"ns:53","srv_lookup_pattern":"","srv_dns_protocol":"udp"}"#
        );

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

        // Without an interval the check runs every 2s, and says so.
        for interval in ["", r#""interval": "","#] {
            let text = format!(r#"{{"bind": ":1", {STATIC}, "healthcheck": {{{interval} "kind": "ping"}}}}"#);
            assert_eq!(prepared(&text, None)["healthcheck"]["interval"].as_str(), Some("2s"), "{text}");
        }
        let none =
            prepared(&format!(r#"{{"bind": ":1", {STATIC}, "healthcheck": {{"kind": "none"}}}}"#), None);
        assert_eq!(none["healthcheck"]["interval"].as_str(), Some("0"));
        assert_eq!(check["initial_status"].as_str(), Some("unhealthy"));
        assert_eq!(check["passes"].as_i64(), Some(1));
    }
}
