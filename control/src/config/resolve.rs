//! The effective settings of a server: `[defaults]` merged in, gobetween's defaults applied,
//! durations turned into limits. The data plane and the control loop read only these.

use super::model::{
    Balance, Config, ConnectionOptions, Healthcheck, HealthcheckKind, InitialStatus, Protocol, Server,
};
use crate::access::AccessRules;
use crate::balance::ClientBytes;
use crate::healthcheck::Probe;
use std::time::Duration;

/// Interval used when a healthcheck names none.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

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
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckSettings {
    pub kind: HealthcheckKind,
    /// At least `MIN_CHECK_INTERVAL`.
    pub interval: Duration,
    /// Never zero: "0" falls back to the interval so that a check cannot hang forever.
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
            merged.client_idle_timeout = merged.client_idle_timeout.or(d.client_idle_timeout);
            merged.backend_idle_timeout = merged.backend_idle_timeout.or(d.backend_idle_timeout);
            merged.backend_connection_timeout =
                merged.backend_connection_timeout.or(d.backend_connection_timeout);
        }
        merged
    }

    pub fn settings(&self, name: &str, defaults: Option<&ConnectionOptions>) -> ServerSettings {
        let s = self.with_defaults(defaults);
        ServerSettings {
            name: name.to_string(),
            bind: s.bind.clone(),
            protocol: s.protocol.unwrap_or_default(),
            balance: s.balance.unwrap_or_default(),
            priority_groups: s.priority_groups.unwrap_or(false),
            client_bytes: ClientBytes::for_bind(&s.bind, crate::bind::ipv4_mapped_supported()),
            max_connections: s.max_connections.unwrap_or(0),
            client_idle_timeout: s.client_idle_timeout.and_then(|d| d.as_limit()),
            backend_idle_timeout: s.backend_idle_timeout.and_then(|d| d.as_limit()),
            backend_connection_timeout: s.backend_connection_timeout.and_then(|d| d.as_limit()),
            healthcheck: s.healthcheck.as_ref().and_then(CheckSettings::from_section),
            access: s.access.as_ref().map(|section| {
                // Validation rejects bad rules before a server starts; should one get here
                // anyway, nobody is let in rather than everybody.
                AccessRules::from_section(section).unwrap_or_else(|e| {
                    log::error!("server {name}: access {}: {e}; denying every client", e.field);
                    AccessRules::deny_all()
                })
            }),
        }
    }
}

impl CheckSettings {
    /// `None` when the section's kind is `none`.
    pub fn from_section(raw: &Healthcheck) -> Option<CheckSettings> {
        if raw.kind == HealthcheckKind::None {
            return None;
        }
        let interval =
            raw.interval.and_then(|d| d.as_limit()).unwrap_or(DEFAULT_CHECK_INTERVAL).max(MIN_CHECK_INTERVAL);
        Some(CheckSettings {
            kind: raw.kind,
            interval,
            timeout: raw.timeout.and_then(|d| d.as_limit()).unwrap_or(interval),
            fails: raw.fails.unwrap_or(1),
            passes: raw.passes.unwrap_or(1),
            initially_healthy: raw.initial_status.unwrap_or_default() == InitialStatus::Healthy,
            probe: (raw.kind == HealthcheckKind::Probe).then(|| Probe::from_section(raw).ok()).flatten(),
            raw: raw.clone(),
        })
    }

    /// The `interval` the section gave, when it was below `MIN_CHECK_INTERVAL` and raised.
    pub fn raised_interval(&self) -> Option<Duration> {
        self.raw.interval.map(|d| d.0).filter(|given| !given.is_zero() && *given < MIN_CHECK_INTERVAL)
    }
}

impl Config {
    /// The configuration with `[defaults]` folded into every server: what `betwixt check` prints.
    pub fn normalized(&self) -> Config {
        let mut config = self.clone();
        for server in config.servers.values_mut() {
            *server = server.with_defaults(self.defaults.as_ref());
        }
        config
    }

    pub fn server_settings(&self) -> Vec<ServerSettings> {
        self.servers.iter().map(|(name, server)| server.settings(name, self.defaults.as_ref())).collect()
    }
}
