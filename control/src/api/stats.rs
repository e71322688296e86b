//! `GET /servers/NAME/stats`: counters summed over shards, in gobetween's field names.
//! The metrics endpoint reports the same numbers.

use crate::rates::Rates;
use crate::server::{BackendState, ServerHandle};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ServerStats {
    pub active_connections: u64,
    pub rx_total: u64,
    pub tx_total: u64,
    pub rx_second: u64,
    pub tx_second: u64,
    pub backends: Vec<BackendEntry>,
    /// betwixt: how the server's discovery is going.
    pub discovery: DiscoveryEntry,
}

/// betwixt: the discovery part of a server's stats.
#[derive(Clone, Debug, Serialize)]
pub struct DiscoveryEntry {
    pub kind: &'static str,
    /// `starting` until the first round ends, then `ok`, or `failing` while rounds fail and are
    /// retried.
    pub state: &'static str,
    /// Why the last failed round failed (kept after discovery works again); `null` if none has.
    pub last_error: Option<String>,
    /// Failed rounds and backend name lookups, as `betwixt_discovery_failures_total`.
    pub failures: u64,
    /// Backends discovery reports now.
    pub backends: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendEntry {
    pub host: String,
    /// A string, as gobetween writes it.
    pub port: String,
    pub priority: i32,
    pub weight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    pub stats: BackendStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendStats {
    pub live: bool,
    /// Discovery reports it; `false` for one that left discovery with connections still open.
    pub discovered: bool,
    /// betwixt: drained through the API (no new connections); written only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    pub total_connections: u64,
    pub active_connections: u64,
    pub refused_connections: u64,
    pub rx: u64,
    pub tx: u64,
    pub rx_second: u64,
    pub tx_second: u64,
}

impl ServerStats {
    pub fn of(server: &ServerHandle, rates: &Rates) -> ServerStats {
        let totals = server.counters.totals();
        let rate = rates.rate(&server.counters);
        let (backends, discovered) = {
            let states = server.backends();
            // A backend that left discovery shows until its last connection ends.
            let shown = states.iter().filter(|b| b.discovered || b.counters.totals().active > 0);
            let shown: Vec<BackendEntry> = shown.map(|b| BackendEntry::of(b, rates)).collect();
            (shown, states.iter().filter(|b| b.discovered).count())
        };
        let status = server.discovery_status();
        ServerStats {
            active_connections: totals.active,
            rx_total: totals.rx,
            tx_total: totals.tx,
            rx_second: rate.rx,
            tx_second: rate.tx,
            discovery: DiscoveryEntry {
                kind: crate::discovery::kind_name(server.config().discovery.kind),
                state: match (status.ran, status.failing) {
                    (false, _) => "starting",
                    (true, false) => "ok",
                    (true, true) => "failing",
                },
                last_error: status.last_error,
                failures: server.discovery_failures.load(std::sync::atomic::Ordering::Relaxed),
                backends: discovered,
            },
            backends,
        }
    }
}

impl BackendEntry {
    fn of(backend: &BackendState, rates: &Rates) -> BackendEntry {
        let spec = &backend.spec;
        let totals = backend.counters.totals();
        let rate = rates.rate(&backend.counters);
        BackendEntry {
            host: spec.host.clone(),
            port: spec.port.to_string(),
            priority: spec.priority,
            weight: spec.weight,
            max_connections: (spec.max_connections != 0).then_some(spec.max_connections),
            sni: spec.sni.clone(),
            stats: BackendStats {
                live: backend.live,
                discovered: backend.discovered,
                draining: backend.draining,
                total_connections: totals.total,
                active_connections: totals.active,
                refused_connections: totals.refused,
                rx: totals.rx,
                tx: totals.tx,
                rx_second: rate.rx,
                tx_second: rate.tx,
            },
        }
    }
}
