//! The effective settings of a server: `[defaults]` merged in, gobetween's defaults applied,
//! durations turned into limits, loose values read (with a warning for each, see `loose`).
//! The data plane and the control loop read only these.

use super::duration::GoDuration;
use super::error::{ConfigError, ConfigWarning, Warnings};
use super::loose::{at_least_one, LooseDuration};
use super::model::{
    Balance, Config, ConnectionOptions, Discovery, DiscoveryKind, Healthcheck, HealthcheckKind,
    InitialStatus, Protocol, Server,
};
use crate::access::AccessRules;
use crate::balance::ClientBytes;
use crate::discovery::static_list;
use crate::healthcheck::Probe;
use crate::proxy::{send_version, AcceptSettings, Version as ProxyVersion};
use crate::sni::SniSettings;
use crate::tls::TlsContexts;
use std::time::Duration;

/// Interval used when a healthcheck names none (gobetween refuses such a check).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// `DEFAULT_CHECK_INTERVAL` as the API shows it.
pub const DEFAULT_CHECK_INTERVAL_TEXT: &str = "2s";

/// How long a check may run when its `timeout` is `"0"` or left out. gobetween gives such a
/// check no time limit of its own: a ping then waits for the kernel's connect timeout (127 s
/// with Linux defaults) and a probe or an exec could wait forever. betwixt keeps the meaning
/// but ends the wait at that same 127 s, so a stuck check fails instead of hanging.
pub const UNSET_CHECK_TIMEOUT: Duration = Duration::from_secs(127);

/// The shortest healthcheck interval betwixt runs (gobetween has none): at `1ns` each backend's
/// check would run back to back and keep the control thread busy. A shorter `interval` is
/// raised to this, with a warning when the server starts.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    pub name: String,
    pub bind: String,
    pub protocol: Protocol,
    pub balance: Balance,
    /// betwixt's `priority_groups`: every strategy, not only `weight`, prefers the lowest
    /// priority value.
    pub priority_groups: bool,
    /// Whether `[access_log]`, when on, logs this server's connections.
    pub access_log: bool,
    /// betwixt's `half_close`: a side's end of stream is passed on and the other direction
    /// carries on (`true`), or the first end of stream closes both connections (`false`).
    pub half_close: bool,
    /// How `iphash` and `iphash1` read a client's address: as gobetween would for this `bind`.
    pub client_bytes: ClientBytes,
    /// 0 = unlimited.
    pub max_connections: u32,
    pub client_idle_timeout: Option<Duration>,
    pub backend_idle_timeout: Option<Duration>,
    pub backend_connection_timeout: Option<Duration>,
    pub healthcheck: Option<CheckSettings>,
    /// Parsed `[access]` rules; `None` lets everyone in.
    pub access: Option<AccessRules>,
    /// `[sni]`: route on the server name of the client's TLS ClientHello.
    pub sni: Option<SniSettings>,
    /// `[proxy_protocol]`: the PROXY protocol header to send each backend.
    pub send_proxy: Option<ProxyVersion>,
    /// `[accept_proxy_protocol]`: read a PROXY protocol header from each client first.
    pub accept_proxy: Option<AcceptSettings>,
    /// `[tls]` and `[backends_tls]` as rustls configurations; `None` from `resolve`, filled in
    /// by `Control::add_server`, which reads the certificate files.
    pub tls: Option<TlsContexts>,
    /// `[udp]`: how UDP sessions end (only read when `protocol = "udp"`).
    pub udp: UdpSettings,
}

/// gobetween's `[servers.X.udp]` keys; 0 means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpSettings {
    /// Datagrams a session takes from its client; after the last one it takes no more (the
    /// client's next datagram opens a new session) and waits only for replies.
    pub max_requests: u64,
    /// Replies a session relays to its client before it ends.
    pub max_responses: u64,
    /// Send to backends from the client's own address and port (`IP_TRANSPARENT`).
    pub transparent: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckSettings {
    pub kind: HealthcheckKind,
    /// At least `MIN_CHECK_INTERVAL`.
    pub interval: Duration,
    /// Never zero: "0" is `UNSET_CHECK_TIMEOUT`, so that a check cannot hang forever.
    pub timeout: Duration,
    pub fails: u32,
    pub passes: u32,
    pub initially_healthy: bool,
    /// The parsed probe, when kind is `probe` and the section is valid.
    pub probe: Option<Probe>,
    /// The whole section, for the kind-specific keys.
    pub raw: Healthcheck,
}

impl Server {
    /// This server with every connection option it leaves out taken from `[defaults]`.
    pub fn with_defaults(&self, defaults: Option<&ConnectionOptions>) -> Server {
        let mut merged = self.clone();
        if let Some(d) = defaults {
            merged.max_connections = merged.max_connections.or(d.max_connections);
            merged.client_idle_timeout = merged.client_idle_timeout.or_else(|| d.client_idle_timeout.clone());
            merged.backend_idle_timeout =
                merged.backend_idle_timeout.or_else(|| d.backend_idle_timeout.clone());
            merged.backend_connection_timeout =
                merged.backend_connection_timeout.or_else(|| d.backend_connection_timeout.clone());
        }
        merged
    }

    /// The server's effective settings, and a warning for every value read loosely. Values
    /// taken from `[defaults]` are read silently here: `Config::lint` warns about them once.
    pub fn resolve(&self, name: &str, defaults: Option<&ConnectionOptions>) -> (ServerSettings, Warnings) {
        let s = self.with_defaults(defaults);
        let mut warnings = Warnings::new(format!("servers.{name}"));
        let mut limit = |field: &str, own: &Option<LooseDuration>, merged: &Option<LooseDuration>| {
            if let Some(own) = own {
                warnings.note(field, own.limit().1);
            }
            merged.as_ref().and_then(|d| d.limit().0)
        };
        let client_idle_timeout =
            limit("client_idle_timeout", &self.client_idle_timeout, &s.client_idle_timeout);
        let backend_idle_timeout =
            limit("backend_idle_timeout", &self.backend_idle_timeout, &s.backend_idle_timeout);
        let backend_connection_timeout = limit(
            "backend_connection_timeout",
            &self.backend_connection_timeout,
            &s.backend_connection_timeout,
        );
        lint_discovery(&s.discovery, &mut warnings);
        let healthcheck = s.healthcheck.as_ref().and_then(|raw| CheckSettings::read(raw, &mut warnings));
        let (mut sni, send_proxy, accept_proxy) = stream_options(&s, &mut warnings);
        if s.protocol == Some(Protocol::Udp) {
            // gobetween checks these sections on a udp server and then does nothing with them.
            for (field, present) in [("sni", s.sni.is_some()), ("tls", s.tls.is_some())] {
                let note = "ignored: a udp server has no TLS handshake (gobetween ignores it too)";
                warnings.note(field, present.then(|| note.to_string()));
            }
            sni = None;
        }
        let settings = ServerSettings {
            name: name.to_string(),
            bind: s.bind.clone(),
            protocol: s.protocol.unwrap_or_default(),
            balance: s.balance.unwrap_or_default(),
            priority_groups: s.priority_groups.unwrap_or(false),
            access_log: s.access_log.unwrap_or(true),
            half_close: s.half_close.unwrap_or(true),
            client_bytes: ClientBytes::for_bind(&s.bind, crate::bind::ipv4_mapped_supported()),
            max_connections: s.max_connections.unwrap_or(0),
            client_idle_timeout,
            backend_idle_timeout,
            backend_connection_timeout,
            healthcheck,
            udp: UdpSettings {
                max_requests: s.udp.as_ref().and_then(|u| u.max_requests).unwrap_or(0),
                max_responses: s.udp.as_ref().and_then(|u| u.max_responses).unwrap_or(0),
                transparent: s.udp.as_ref().and_then(|u| u.transparent).unwrap_or(false),
            },
            access: s.access.as_ref().map(|section| {
                // Validation rejects bad rules before a server starts; should one get here
                // anyway, nobody is let in rather than everybody.
                AccessRules::from_section(section).unwrap_or_else(|e| {
                    log::error!("server {name}: access {}: {e}; denying every client", e.field);
                    AccessRules::deny_all()
                })
            }),
            sni,
            send_proxy,
            accept_proxy,
            tls: None,
        };
        (settings, warnings)
    }
}

/// `[sni]`, `[proxy_protocol]` and `[accept_proxy_protocol]` as the data plane uses them.
/// Validation refuses bad values before a server starts; should one get here anyway, the
/// section is left out with an error in the log.
fn stream_options(
    server: &Server,
    warnings: &mut Warnings,
) -> (Option<SniSettings>, Option<ProxyVersion>, Option<AcceptSettings>) {
    let sni = server.sni.as_ref().and_then(|section| match SniSettings::from_section(section) {
        Ok((settings, note)) => {
            warnings.note("sni.read_timeout", note);
            Some(settings)
        }
        Err(e) => {
            log::error!("sni.{}: {}; SNI routing left out", e.field, e.message);
            None
        }
    });
    let send_proxy = server.proxy_protocol.as_ref().and_then(|section| {
        if server.protocol.is_none() {
            warnings.note(
                "proxy_protocol",
                Some("gobetween refuses it unless `protocol = \"tcp\"` is written out; read as the default tcp".into()),
            );
        }
        send_version(section).map_err(|e| log::error!("proxy_protocol.{}: {}", e.field, e.message)).ok()
    });
    for (field, versions) in [
        ("tls", server.tls.as_ref().map(|t| (&t.min_version, &t.max_version))),
        ("backends_tls", server.backends_tls.as_ref().map(|t| (&t.min_version, &t.max_version))),
    ] {
        if let Some((min, max)) = versions {
            let note = crate::tls::versions(min.as_deref(), max.as_deref()).ok().and_then(|(_, note)| note);
            warnings.note(&format!("{field}.min_version"), note);
        }
    }
    let accept_proxy = server.accept_proxy_protocol.as_ref().and_then(|section| {
        AcceptSettings::from_section(section)
            .map_err(|e| log::error!("accept_proxy_protocol.{}: {}", e.field, e.message))
            .ok()
    });
    (sni, send_proxy, accept_proxy)
}

/// What is loose in a discovery section: the static list's lines, a datacenter under its alias.
fn lint_discovery(discovery: &Discovery, warnings: &mut Warnings) {
    if discovery.kind == DiscoveryKind::Static {
        if discovery.static_list.is_none() {
            warnings.note(
                "discovery.static_list",
                Some("missing: the server starts with no backends (gobetween would crash here)".into()),
            );
        }
        for (index, note) in static_list::read(discovery).1 {
            warnings.note(&format!("discovery.static_list[{index}]"), Some(note));
        }
    }
    if discovery.consul_service_datacenter.is_some() {
        let note = if discovery.consul_datacenter.is_some() {
            "ignored: `consul_datacenter` is set too and wins"
        } else {
            "read as `consul_datacenter` (gobetween's code reads only that key and ignores this one)"
        };
        warnings.note("discovery.consul_service_datacenter", Some(note.into()));
    }
}

impl Discovery {
    /// The Consul datacenter: `consul_datacenter`, else its alias `consul_service_datacenter`.
    pub fn datacenter(&self) -> Option<&str> {
        self.consul_datacenter.as_deref().or(self.consul_service_datacenter.as_deref())
    }
}

impl CheckSettings {
    /// `None` when the section's kind is `none`.
    pub fn from_section(raw: &Healthcheck) -> Option<CheckSettings> {
        CheckSettings::read(raw, &mut Warnings::default())
    }

    /// As `from_section`, noting loosely read values in `warnings`.
    fn read(raw: &Healthcheck, warnings: &mut Warnings) -> Option<CheckSettings> {
        if raw.kind == HealthcheckKind::None {
            return None;
        }
        let interval = raw
            .interval
            .as_ref()
            .and_then(|d| d.as_limit())
            .unwrap_or(DEFAULT_CHECK_INTERVAL)
            .max(MIN_CHECK_INTERVAL);
        let mut count = |field: &str, value: Option<i64>| {
            let (count, note) = at_least_one(value.unwrap_or(1));
            warnings.note(&format!("healthcheck.{field}"), note);
            count
        };
        let settings = CheckSettings {
            kind: raw.kind,
            interval,
            timeout: raw.timeout.as_ref().and_then(|d| d.as_limit()).unwrap_or(UNSET_CHECK_TIMEOUT),
            fails: count("fails", raw.fails),
            passes: count("passes", raw.passes),
            initially_healthy: raw.initial_status.unwrap_or_default() == InitialStatus::Healthy,
            probe: (raw.kind == HealthcheckKind::Probe).then(|| Probe::from_section(raw).ok()).flatten(),
            raw: raw.clone(),
        };
        let raised = settings.raised_interval().map(|given| {
            format!("{} is below betwixt's floor; checking every {}", GoDuration(given), GoDuration(interval))
        });
        warnings.note("healthcheck.interval", raised);
        if raw.kind == HealthcheckKind::Exec {
            // gobetween starts such a check and runs it as written; so does betwixt, saying so.
            let unset = |value: &Option<String>| value.as_deref().is_none_or(|v| v.trim().is_empty());
            let no_command = unset(&raw.exec_command).then(|| "not set: every check fails".to_string());
            warnings.note("healthcheck.exec_command", no_command);
            let no_positive = unset(&raw.exec_expected_positive_output)
                .then(|| "not set: a check passes when the command prints nothing".to_string());
            warnings.note("healthcheck.exec_expected_positive_output", no_positive);
        }
        Some(settings)
    }

    /// The `interval` the section gave, when it was below `MIN_CHECK_INTERVAL` and raised.
    pub fn raised_interval(&self) -> Option<Duration> {
        self.raw
            .interval
            .as_ref()
            .map(|d| d.0)
            .filter(|given| !given.is_zero() && *given < MIN_CHECK_INTERVAL)
    }
}

impl Config {
    /// The configuration as betwixt runs it, which `betwixt check` prints: `[defaults]` folded
    /// into every server, and static lists as the backends they give (bad lines left out, every
    /// option written out).
    pub fn normalized(&self) -> Config {
        let mut config = self.clone();
        for server in config.servers.values_mut() {
            *server = server.with_defaults(self.defaults.as_ref());
            let discovery = &mut server.discovery;
            if discovery.static_list.is_some() {
                let backends = static_list::backends(discovery);
                discovery.static_list = Some(backends.iter().map(ToString::to_string).collect());
            }
        }
        config
    }

    /// Reads every loosely written value once: an error for what gobetween refuses (an unknown
    /// log level), a warning for what it tolerates. Checks of structure are `validate`'s.
    pub fn lint(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut warnings = Warnings::new("");
        if let Some(logging) = &self.logging {
            let (_, note) = logging.level().map_err(|e| ConfigError::at_key("logging.level", e))?;
            warnings.note("logging.level", note);
            warnings.note("logging.format", logging.format().1);
        }
        if let Some(acme) = &self.acme {
            warnings.note("acme.challenge", crate::acme::challenge_note(acme));
        }
        if let Some(api) = self.api.as_ref().filter(|a| a.enabled) {
            let go = if api.tls.is_some() { ":443" } else { ":80" };
            warnings.note("api.bind", unset_bind(&api.bind, crate::api::DEFAULT_BIND, go));
        }
        if let Some(metrics) = self.metrics.as_ref().filter(|m| m.enabled) {
            warnings.note("metrics.bind", unset_bind(&metrics.bind, crate::metrics::DEFAULT_BIND, ":80"));
        }
        if self.runtime.as_ref().is_some_and(|r| r.kernel_forwarding_unbounded_memory.is_some()) {
            let note =
                "no longer needed and ignored: kernel forwarding now bounds what it holds for a receiver";
            warnings.note("runtime.kernel_forwarding_unbounded_memory", Some(note.into()));
        }
        if let Some(defaults) = &self.defaults {
            for (field, value) in [
                ("client_idle_timeout", &defaults.client_idle_timeout),
                ("backend_idle_timeout", &defaults.backend_idle_timeout),
                ("backend_connection_timeout", &defaults.backend_connection_timeout),
            ] {
                warnings.note(&format!("defaults.{field}"), value.as_ref().and_then(|d| d.limit().1));
            }
        }
        for (name, server) in &self.servers {
            warnings.absorb(server.resolve(name, self.defaults.as_ref()).1);
        }
        Ok(warnings.finish())
    }
}

/// An enabled endpoint without a `bind` (or with `""`) listens on betwixt's default; gobetween
/// listens on Go's empty address, `go`, the HTTP(S) port.
fn unset_bind(bind: &Option<String>, default: &str, go: &str) -> Option<String> {
    bind.as_deref()
        .is_none_or(str::is_empty)
        .then(|| format!("not set: listening on {default} (gobetween listens on {go}); set it to say which"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enabled_endpoint_without_a_bind_warns() {
        let warned = |text: &str| -> Vec<String> {
            let (config, _) = crate::config::parse_config(text, crate::config::Format::Toml).unwrap();
            config.lint().unwrap().iter().filter_map(|w| w.key.clone()).collect()
        };
        assert_eq!(
            warned("[api]\nenabled = true\n[metrics]\nenabled = true\nbind = \"\"\n"),
            ["api.bind", "metrics.bind"]
        );
        assert!(warned("[api]\nenabled = true\nbind = \":1\"\n[metrics]\nenabled = false\n").is_empty());
        let go = unset_bind(&None, ":8888", ":443").unwrap();
        assert!(go.contains(":8888") && go.contains("gobetween listens on :443"), "{go}");
    }

    #[test]
    fn the_default_interval_reads_back_as_itself() {
        assert_eq!(crate::config::duration::parse(DEFAULT_CHECK_INTERVAL_TEXT), Ok(DEFAULT_CHECK_INTERVAL));
    }

    #[test]
    fn check_timeout_zero_is_bounded_not_the_interval() {
        let mut raw = Healthcheck {
            kind: HealthcheckKind::Ping,
            interval: Some(GoDuration(Duration::from_secs(1)).into()),
            ..Healthcheck::default()
        };
        for timeout in [None, Some(GoDuration::ZERO.into())] {
            raw.timeout = timeout;
            assert_eq!(CheckSettings::from_section(&raw).unwrap().timeout, UNSET_CHECK_TIMEOUT);
        }
        raw.timeout = Some(GoDuration(Duration::from_millis(300)).into());
        assert_eq!(CheckSettings::from_section(&raw).unwrap().timeout, Duration::from_millis(300));
    }
}
