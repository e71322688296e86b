//! betwixt's own metrics: what a thread-per-core proxy adds to gobetween's view.

use super::exposition::{Exposition, Histogram, Labels};
use crate::acme::AcmeService;
use crate::config::Protocol;
use crate::control::Control;
use crate::server::ServerHandle;
use crate::stats::{ConnectError, Datagrams, Dropped, Latency, Slot};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What one backend contributes, read once per scrape.
struct BackendRow {
    labels: Labels,
    live_changes: u64,
    connect_errors: [u64; ConnectError::ALL.len()],
    latency: Latency,
}

fn backend_rows(server: &ServerHandle) -> Vec<BackendRow> {
    server
        .backends()
        .iter()
        .map(|b| BackendRow {
            labels: vec![
                ("server", server.name.clone()),
                ("host", b.spec.host.clone()),
                ("port", b.spec.port.to_string()),
            ],
            live_changes: b.live_changes,
            connect_errors: b.counters.connect_errors(),
            latency: b.counters.connect_latency(),
        })
        .collect()
}

/// Sums one field of every server's slot on each shard.
fn per_shard(servers: &[Arc<ServerHandle>], shards: usize, field: fn(&Slot) -> u64) -> Vec<(Labels, u64)> {
    (0..shards)
        .map(|shard| {
            let sum = servers.iter().map(|s| field(s.counters.shard(shard))).sum();
            (vec![("shard", shard.to_string())], sum)
        })
        .collect()
}

pub fn write(e: &mut Exposition, control: &Control) {
    let servers = control.servers();
    let shards = control.plane.shard_count();
    let backends: Vec<BackendRow> = servers.iter().flat_map(|s| backend_rows(s)).collect();

    e.gauges("betwixt_shards", "Data-plane shards (one event loop per CPU).", [(Vec::new(), shards as u64)]);
    e.gauges(
        "betwixt_shard_active_connections",
        "Open client connections handled by the shard.",
        per_shard(&servers, shards, |s| s.active.load(Relaxed)),
    );
    e.counters(
        "betwixt_shard_connections",
        "Client connections accepted by the shard.",
        per_shard(&servers, shards, |s| s.total.load(Relaxed)),
    );
    e.counters(
        "betwixt_shard_spliced_bytes",
        "Bytes the shard moved between sockets through kernel pipes, without copying them.",
        per_shard(&servers, shards, |s| s.spliced.load(Relaxed)),
    );

    let per_server = |value: fn(&ServerHandle) -> u64| -> Vec<(Labels, u64)> {
        servers.iter().map(|s| (vec![("server", s.name.clone())], value(s))).collect()
    };
    e.counters(
        "betwixt_server_connections",
        "Client connections accepted by the server.",
        per_server(|s| s.counters.totals().total),
    );
    e.counters(
        "betwixt_server_refused_connections",
        "Client connections closed without a backend (limit reached or no backend reachable).",
        per_server(|s| s.counters.totals().refused),
    );
    e.counters(
        "betwixt_discovery_failures",
        "Failed discovery rounds and backend name lookups.",
        per_server(|s| s.discovery_failures.load(Relaxed)),
    );

    write_udp(e, &servers);
    if let Some(acme) = control.acme() {
        write_acme(e, acme);
    }
    write_reloads(e, control);
    write_access_log(e);

    e.counters(
        "betwixt_healthcheck_state_changes",
        "Times a healthcheck turned the backend live or down.",
        backends.iter().map(|b| (b.labels.clone(), b.live_changes)),
    );
    e.counters(
        "betwixt_backend_connect_errors",
        "Failed connects to the backend, by kind.",
        backends.iter().flat_map(|b| {
            ConnectError::ALL.iter().map(|&kind| {
                let mut labels = b.labels.clone();
                labels.push(("kind", kind.name().to_string()));
                (labels, b.connect_errors[kind as usize])
            })
        }),
    );
    e.histograms(
        "betwixt_backend_connect_seconds",
        "Time to establish a connection to the backend.",
        backends.iter().map(|b| Histogram {
            labels: b.labels.clone(),
            sum: b.latency.sum_seconds,
            buckets: b.latency.cumulative_buckets(),
        }),
    );
}

/// `[acme]`: orders, their outcomes, and when each host's certificate expires.
fn write_acme(e: &mut Exposition, acme: &AcmeService) {
    let stats = &acme.stats;
    e.counters(
        "betwixt_acme_orders",
        "Certificate orders the ACME CA accepted.",
        [(Vec::new(), stats.orders.load(Relaxed))],
    );
    e.counters(
        "betwixt_acme_certificates",
        "Certificates obtained from the ACME CA and served.",
        [(Vec::new(), stats.issued.load(Relaxed))],
    );
    e.counters(
        "betwixt_acme_failures",
        "Failed attempts to obtain a certificate (each is retried after a doubling wait).",
        [(Vec::new(), stats.failures.load(Relaxed))],
    );
    e.gauges(
        "betwixt_acme_certificate_expiry_seconds",
        "When the host's served ACME certificate expires (Unix time; 0 while it has none).",
        acme.expiries()
            .into_iter()
            .map(|(server, host, seconds)| (vec![("server", server), ("host", host)], seconds)),
    );
}

/// Configuration reloads: how many went into effect or were rejected, and when the last one
/// succeeded (0 before any; the process start is `process_start_time_seconds`).
fn write_reloads(e: &mut Exposition, control: &Control) {
    let reload = &control.reload;
    e.counters(
        "betwixt_config_reloads",
        "Configuration reloads, by result (ok: applied; rejected: the running configuration stayed).",
        [
            (vec![("result", "ok".to_string())], reload.ok.load(Relaxed)),
            (vec![("result", "rejected".to_string())], reload.rejected.load(Relaxed)),
        ],
    );
    let last = reload.last_success().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    e.gauges(
        "betwixt_config_last_reload_success_timestamp_seconds",
        "When a configuration reload last went into effect, in seconds since the epoch (0: never).",
        [(Vec::new(), last.map_or(0.0, |t| t.as_secs_f64()))],
    );
    let failed = reload.last().is_some_and(|last| last.result.is_err());
    e.gauges(
        "betwixt_config_last_reload_successful",
        "Whether the last configuration reload went into effect (1) or was rejected (0); 1 before any.",
        [(Vec::new(), u64::from(!failed))],
    );
}

/// `[access_log]`: lines dropped because the writer did not keep up (only while it runs).
fn write_access_log(e: &mut Exposition) {
    if let Some(log) = crate::access_log::running() {
        e.counters(
            "betwixt_access_log_dropped_records",
            "Access log lines dropped because the writer's queue was full (the output did not keep up).",
            [(Vec::new(), log.dropped())],
        );
    }
}

/// UDP servers: sessions, datagrams each way and datagrams dropped. Their bytes are in
/// gobetween's `server_rx_total` / `server_tx_total` like any server's.
fn write_udp(e: &mut Exposition, servers: &[Arc<ServerHandle>]) {
    let udp: Vec<(Labels, u64, Datagrams)> = servers
        .iter()
        .filter(|s| s.settings().protocol == Protocol::Udp)
        .map(|s| (vec![("server", s.name.clone())], s.counters.totals().active, s.counters.datagrams()))
        .collect();
    e.gauges(
        "betwixt_udp_sessions",
        "Open UDP sessions; each holds one socket to its backend.",
        udp.iter().map(|(labels, active, _)| (labels.clone(), *active)),
    );
    e.counters(
        "betwixt_udp_datagrams",
        "UDP datagrams passed on: from_client (sent to a backend) and to_client (a reply sent back).",
        udp.iter().flat_map(|(labels, _, datagrams)| {
            [("from_client", datagrams.from_client), ("to_client", datagrams.to_client)].map(
                |(direction, n)| {
                    let mut labels = labels.clone();
                    labels.push(("direction", direction.to_string()));
                    (labels, n)
                },
            )
        }),
    );
    e.counters(
        "betwixt_udp_dropped_datagrams",
        "UDP datagrams not passed on, by reason (denied, limit, no_backend, send_failed).",
        udp.iter().flat_map(|(labels, _, datagrams)| {
            Dropped::ALL.map(|reason| {
                let mut labels = labels.clone();
                labels.push(("reason", reason.name().to_string()));
                (labels, datagrams.dropped[reason as usize])
            })
        }),
    );
}
