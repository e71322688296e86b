//! Checks that need more than one key at a time, or a value's meaning. Each error names its key.

use super::error::ConfigError;
use super::model::{Config, HealthcheckKind, Protocol, Server};
use crate::access::AccessRules;
use crate::acme::{host_name, AcmeSettings};
use crate::backend::split_host_port;
use crate::healthcheck::Probe;
use crate::proxy::{send_version, AcceptSettings};
use crate::sni::SniSettings;
use crate::text::is_unsafe;
use crate::tls;
use std::collections::BTreeMap;

pub fn validate(config: &Config) -> Result<(), ConfigError> {
    for (name, server) in &config.servers {
        validate_server(name, server)?;
    }
    validate_acme(config)?;
    if let Some(section) = &config.access_log {
        crate::access_log::Settings::from_section(section)?;
    }
    if let Some(runtime) = &config.runtime {
        if runtime.shards == Some(0) {
            return Err(ConfigError::at_key("runtime.shards", "must be at least 1"));
        }
    }
    Ok(())
}

/// `[acme]` and the servers' `acme_hosts`: the section is needed by them, and a host belongs to
/// one server (gobetween: "Acme host X is already configured").
fn validate_acme(config: &Config) -> Result<(), ConfigError> {
    if let Some(section) = &config.acme {
        AcmeSettings::from_section(section)
            .map_err(|e| ConfigError::at_key(format!("acme.{}", e.field), e.message))?;
    }
    let mut owners: BTreeMap<String, &str> = BTreeMap::new();
    for (name, server) in &config.servers {
        let Some(hosts) = server.tls.as_ref().and_then(tls::acme_hosts) else { continue };
        let key = format!("servers.{name}.tls.acme_hosts");
        if config.acme.is_none() {
            return Err(ConfigError::at_key(key, "needs the [acme] section"));
        }
        for host in hosts {
            let host = host_name(host).map_err(|e| ConfigError::at_key(key.clone(), e))?;
            if let Some(other) = owners.insert(host.clone(), name) {
                if other != name {
                    return Err(ConfigError::at_key(
                        key,
                        format!("acme host {host} is already configured for server {other:?}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Longest server name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The rule for server names, from the file and from `POST /servers/NAME` alike. gobetween takes
/// any text; betwixt takes any text too, except what cannot be shown safely in a log line, a
/// metric label or a URL path: unsafe characters (`text::is_unsafe`: control characters, line
/// separators, bidirectional controls), more than `MAX_NAME_LEN` bytes, and the path segments
/// `.` and `..`, which HTTP clients rewrite so the API could never reach such a server.
pub fn server_name(name: &str) -> Result<(), ConfigError> {
    let problem = if name.is_empty() {
        "must not be empty".to_string()
    } else if let Some(c) = name.chars().find(|&c| is_unsafe(c)) {
        format!("must not contain control characters (found U+{:04X})", c as u32)
    } else if name.len() > MAX_NAME_LEN {
        format!("is {} bytes long, more than {MAX_NAME_LEN}", name.len())
    } else if name == "." || name == ".." {
        "must not be \".\" or \"..\"".to_string()
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(64).collect();
    let ellipsis = if shown.len() < name.len() { "..." } else { "" };
    Err(ConfigError::at_key("servers", format!("server name {shown:?}{ellipsis} {problem}")))
}

pub fn validate_server(name: &str, server: &Server) -> Result<(), ConfigError> {
    let key = |field: &str| format!("servers.{name}.{field}");
    server_name(name)?;
    split_host_port(&server.bind).map_err(|e| ConfigError::at_key(key("bind"), e))?;

    let discovery = &server.discovery;
    if let Some(policy) = &discovery.failpolicy {
        // Empty is gobetween's keeplast.
        if !matches!(policy.as_str(), "" | "keeplast" | "setempty") {
            return Err(ConfigError::at_key(
                key("discovery.failpolicy"),
                format!("unknown fail policy {policy:?} (use keeplast or setempty)"),
            ));
        }
    }

    crate::discovery::check_section(discovery)
        .map_err(|e| ConfigError::at_key(key(&format!("discovery.{}", e.field)), e.message))?;

    if let Some(check) = &server.healthcheck {
        if check.kind != HealthcheckKind::None && check.interval.as_ref().is_some_and(|i| i.0.is_zero()) {
            return Err(ConfigError::at_key(key("healthcheck.interval"), "must be greater than 0"));
        }
        match check.kind {
            HealthcheckKind::Probe => {
                Probe::from_section(check)
                    .map_err(|e| ConfigError::at_key(key(&format!("healthcheck.{}", e.field)), e.message))?;
            }
            HealthcheckKind::Exec | HealthcheckKind::Ping | HealthcheckKind::None => {}
        }
    }

    if server.protocol == Some(Protocol::Udp) {
        udp_server(name, server)?;
    }

    if let Some(access) = &server.access {
        AccessRules::from_section(access)
            .map_err(|e| ConfigError::at_key(key(&format!("access.{}", e.field)), e.message))?;
    }
    validate_stream_options(name, server)
}

/// `[sni]`, `[proxy_protocol]` and `[accept_proxy_protocol]`: values, and the protocols they
/// apply to. (gobetween refuses `proxy_protocol` unless `protocol = "tcp"` is written out;
/// betwixt reads a left-out protocol as the tcp it is, with a warning, see `resolve`.)
fn validate_stream_options(name: &str, server: &Server) -> Result<(), ConfigError> {
    let key = |field: &str| format!("servers.{name}.{field}");
    let udp = server.protocol == Some(Protocol::Udp);
    if udp && server.half_close.is_some() {
        return Err(ConfigError::at_key(
            key("half_close"),
            "half_close may be used only with protocol \"tcp\" or \"tls\", not with \"udp\"",
        ));
    }
    if let Some(section) = &server.proxy_protocol {
        if udp {
            return Err(ConfigError::at_key(
                key("proxy_protocol"),
                "proxy_protocol may be used only with protocol \"tcp\", not with \"udp\"",
            ));
        }
        send_version(section).map_err(|e| ConfigError::at_key(key("proxy_protocol.version"), e.message))?;
    }
    if let Some(section) = &server.accept_proxy_protocol {
        if udp {
            return Err(ConfigError::at_key(
                key("accept_proxy_protocol"),
                "accept_proxy_protocol may be used only with protocol \"tcp\", not with \"udp\"",
            ));
        }
        AcceptSettings::from_section(section).map_err(|e| {
            ConfigError::at_key(key(&format!("accept_proxy_protocol.{}", e.field)), e.message)
        })?;
    }
    if let Some(section) = &server.sni {
        SniSettings::from_section(section)
            .map_err(|e| ConfigError::at_key(key(&format!("sni.{}", e.field)), e.message))?;
    }
    if server.protocol == Some(Protocol::Tls) && server.tls.is_none() {
        return Err(ConfigError::at_key(key("tls"), "required when protocol is \"tls\""));
    }
    if let Some(section) = &server.tls {
        tls::check_server(section)
            .map_err(|e| ConfigError::at_key(key(&format!("tls.{}", e.field)), e.message))?;
    }
    if let Some(section) = &server.backends_tls {
        tls::check_backends(section)
            .map_err(|e| ConfigError::at_key(key(&format!("backends_tls.{}", e.field)), e.message))?;
    }
    Ok(())
}

/// gobetween's rules for `protocol = "udp"`, with its messages. Its session-ending check looks
/// at the server's own keys only (before `[defaults]` is merged), and so does this one: a key
/// written as `"0"` counts as given.
fn udp_server(name: &str, server: &Server) -> Result<(), ConfigError> {
    let key = |field: &str| format!("servers.{name}.{field}");
    if server.backends_tls.is_some() {
        return Err(ConfigError::at_key(
            key("backends_tls"),
            "backends_tls should not be enabled for udp protocol",
        ));
    }
    let udp = server.udp.clone().unwrap_or_default();
    if udp.max_requests.unwrap_or(0) == 0
        && udp.max_responses.unwrap_or(0) == 0
        && server.client_idle_timeout.is_none()
        && server.backend_idle_timeout.is_none()
    {
        return Err(ConfigError::at_key(
            key("protocol"),
            "udp protocol requires to specify at least one of (client|backend)_idle_timeout, udp.max_requests, udp.max_responses",
        ));
    }
    if server.healthcheck.as_ref().is_some_and(|c| c.kind == HealthcheckKind::Ping) {
        return Err(ConfigError::at_key(
            key("healthcheck.kind"),
            "Cant use ping healthcheck with udp server",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_config, Format};

    fn server(extra: &str) -> String {
        format!("[servers.s]\nbind = \"127.0.0.1:1\"\n{extra}\n[servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n")
    }

    #[test]
    fn kernel_forwarding_is_accepted_and_the_old_opt_in_warned_about() {
        let parse =
            |runtime: &str| parse_config(&format!("[runtime]\n{runtime}\n{}", server("")), Format::Toml);
        assert!(parse("forwarding = \"kernel\"").unwrap().1.is_empty());
        let (_, warnings) =
            parse("forwarding = \"kernel\"\nkernel_forwarding_unbounded_memory = true").unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key.as_deref(), Some("runtime.kernel_forwarding_unbounded_memory"));
        assert_eq!(warnings[0].position, Some((3, 1)));
        assert!(parse("forwarding = \"user\"").is_ok());
        assert!(parse("forwarding = \"bpf\"").is_err());
    }

    #[test]
    fn bad_bind_is_named() {
        let e = parse_config(&server("").replace("127.0.0.1:1", "nowhere"), Format::Toml).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("servers.s.bind"));
        assert_eq!(e.position, Some((2, 1)));
    }

    fn check_error(healthcheck: &str) -> Option<String> {
        let text = format!("{}[servers.s.healthcheck]\n{healthcheck}\n", server(""));
        parse_config(&text, Format::Toml).err().and_then(|e| e.key)
    }

    #[test]
    fn probe_keys_are_named() {
        let ok =
            "kind = \"probe\"\nprobe_protocol = \"tcp\"\nprobe_send = \"PING\\\\n\"\nprobe_recv = \"PONG\"";
        assert_eq!(check_error(ok), None);
        let key = |field: &str| Some(format!("servers.s.healthcheck.{field}"));
        assert_eq!(check_error(&ok.replace("tcp", "sctp")), key("probe_protocol"));
        assert_eq!(check_error(&ok.replace("probe_send = \"PING\\\\n\"\n", "")), key("probe_send"));
        assert_eq!(check_error(&ok.replace("PONG", "\\\\xZ1")), key("probe_recv"));
        let regexp = format!("{ok}\nprobe_strategy = \"regexp\"");
        assert_eq!(check_error(&regexp), key("probe_recv_len"));
        assert_eq!(check_error(&format!("{regexp}\nprobe_recv_len = 4")), None);
        assert_eq!(
            check_error(&format!("{}\nprobe_recv_len = 4", regexp.replace("PONG", "(P"))),
            key("probe_recv")
        );
        assert_eq!(check_error(&format!("{ok}\nprobe_strategy = \"ends_with\"")), key("probe_strategy"));
    }

    #[test]
    fn exec_without_its_keys_is_not_an_error() {
        // gobetween starts it; the keys left out are warnings (`CheckSettings::read`).
        for section in ["kind = \"exec\"\nexec_command = \"/bin/true\"", "kind = \"exec\""] {
            assert_eq!(check_error(section), None, "{section}");
        }
    }

    #[test]
    fn access_errors_name_the_rule() {
        let text = format!(
            "{}[servers.s.access]\ndefault = \"deny\"\nrules = [\"allow 127.0.0.1\", \"allow 10.0.0.0/40\"]\n",
            server("")
        );
        let e = parse_config(&text, Format::Toml).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("servers.s.access.rules"));
        assert!(e.to_string().contains("rule 2 \"allow 10.0.0.0/40\""), "{e}");
        let text = format!("{}[servers.s.access]\ndefault = \"maybe\"\n", server(""));
        assert_eq!(
            parse_config(&text, Format::Toml).unwrap_err().key.as_deref(),
            Some("servers.s.access.default")
        );
    }

    #[test]
    fn gobetween_defaults_for_empty_values() {
        let text = format!(
            "{}[servers.s.access]\n[servers.s.healthcheck]\nkind = \"none\"\ninterval = \"\"\ntimeout = \"\"\n",
            server("")
        )
        .replace("kind = \"static\"", "kind = \"static\"\nfailpolicy = \"\"\ninterval = \"\"");
        let (config, warnings) = parse_config(&text, Format::Toml).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.servers["s"].healthcheck.as_ref().unwrap().interval, None);
    }

    #[test]
    fn udp_rules_are_gobetweens() {
        let udp = |extra: &str| {
            let text = server(&format!("protocol = \"udp\"\n{extra}"));
            parse_config(&text, Format::Toml).err().map(|e| (e.key.unwrap_or_default(), e.message))
        };
        let (key, message) = udp("").unwrap();
        assert_eq!(key, "servers.s.protocol");
        assert!(message.contains("at least one of (client|backend)_idle_timeout"), "{message}");
        // A server-level timeout counts even when it is "0"; `[defaults]` does not count.
        assert_eq!(udp("client_idle_timeout = \"0\""), None);
        assert_eq!(udp("backend_idle_timeout = \"1s\""), None);
        assert_eq!(udp("[servers.s.udp]\nmax_responses = 1"), None);
        assert_eq!(udp("[servers.s.udp]\nmax_requests = 1"), None);
        assert!(udp("[servers.s.udp]\nmax_requests = 0").is_some());
        let text = format!("[defaults]\nclient_idle_timeout = \"1s\"\n{}", server("protocol = \"udp\""));
        assert!(parse_config(&text, Format::Toml).is_err());
        let (key, message) =
            udp("client_idle_timeout = \"1s\"\n[servers.s.healthcheck]\nkind = \"ping\"\ninterval = \"1s\"")
                .unwrap();
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("servers.s.healthcheck.kind", "Cant use ping healthcheck with udp server")
        );
        let (key, _) = udp("client_idle_timeout = \"1s\"\n[servers.s.backends_tls]").unwrap();
        assert_eq!(key, "servers.s.backends_tls");
    }

    #[test]
    fn half_close_is_read_for_stream_servers_and_refused_for_udp() {
        let settings = |extra: &str| {
            let (config, warnings) = parse_config(&server(extra), Format::Toml).unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            config.servers["s"].resolve("s", None).0
        };
        assert!(settings("").half_close, "passed on by default");
        assert!(!settings("half_close = false").half_close);
        assert!(!settings("protocol = \"tcp\"\nhalf_close = false").half_close);
        let text = server("protocol = \"udp\"\nclient_idle_timeout = \"1s\"\nhalf_close = false");
        let e = parse_config(&text, Format::Toml).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("servers.s.half_close"));
        assert!(e.message.contains("not with \"udp\""), "{e}");
    }

    #[test]
    fn server_names() {
        use super::{server_name, MAX_NAME_LEN};
        for good in ["web", "db 1", "a\"quoted\"", "a/b", "Zürich", "...", &"n".repeat(MAX_NAME_LEN)] {
            assert!(server_name(good).is_ok(), "{good:?}");
        }
        let long = "n".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "a\"\nb",
            "tab\there",
            "\u{1b}[31m",
            "del\u{7f}",
            "x\u{2028}y",
            "rtl\u{202e}",
            ".",
            "..",
            &long,
        ] {
            let e = server_name(bad).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("servers"), "{bad:?}");
            assert!(!e.to_string().contains(crate::text::is_unsafe), "{e}");
        }
        assert!(server_name("a\nb").unwrap_err().message.contains("U+000A"));
        assert!(server_name(&long).unwrap_err().message.contains("256 bytes"));
    }

    #[test]
    fn names_are_checked_at_load() {
        let text = server("").replace("[servers.s", "[servers.\"a\\nb\"");
        let e = parse_config(&text, Format::Toml).unwrap_err();
        assert!(e.message.contains("control characters"), "{e}");
    }
}
