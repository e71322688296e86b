//! gobetween's metric names, labels and meanings, so existing dashboards keep working.
//! gobetween exports every one of them as a gauge; so does betwixt.

use super::exposition::{Exposition, Labels};
use crate::api::stats::{BackendEntry, ServerStats};
use crate::control::Control;

/// A gauge family: full name, help, and the value read from one row.
type Gauge<T> = (&'static str, &'static str, fn(&T) -> u64);

fn per_server(rows: &[(String, ServerStats)], value: fn(&ServerStats) -> u64) -> Vec<(Labels, u64)> {
    rows.iter().map(|(name, stats)| (vec![("server", name.clone())], value(stats))).collect()
}

fn per_backend(rows: &[(String, ServerStats)], value: fn(&BackendEntry) -> u64) -> Vec<(Labels, u64)> {
    rows.iter()
        .flat_map(|(name, stats)| {
            stats.backends.iter().map(move |b| {
                let labels =
                    vec![("server", name.clone()), ("host", b.host.clone()), ("port", b.port.clone())];
                (labels, value(b))
            })
        })
        .collect()
}

/// `gobetween_build_info`'s labels. gobetween fills `goversion` with its Go runtime's version;
/// betwixt with the Rust compiler's (`rustc --version`, captured by build.rs).
fn build_labels() -> Labels {
    vec![
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("revision", option_env!("BETWIXT_REVISION").unwrap_or("unknown").to_string()),
        ("branch", option_env!("BETWIXT_BRANCH").unwrap_or("unknown").to_string()),
        ("goversion", env!("BETWIXT_RUSTC_VERSION").to_string()),
    ]
}

pub fn write(e: &mut Exposition, control: &Control) {
    let rows: Vec<(String, ServerStats)> =
        control.servers().iter().map(|h| (h.name.clone(), ServerStats::of(h, &control.rates))).collect();

    e.gauges(
        "gobetween_build_info",
        "A metric with a constant '1' value labeled by version, revision, branch, and goversion from which betwixt was built.",
        [(build_labels(), 1u64)],
    );
    let server: [Gauge<ServerStats>; 6] = [
        ("gobetween_server_count", "Backends known to the server.", |s| s.backends.len() as u64),
        ("gobetween_server_active_connections", "Open client connections.", |s| s.active_connections),
        ("gobetween_server_rx_total", "Bytes received from backends.", |s| s.rx_total),
        ("gobetween_server_tx_total", "Bytes sent to backends.", |s| s.tx_total),
        ("gobetween_server_rx_second", "Bytes per second received from backends.", |s| s.rx_second),
        ("gobetween_server_tx_second", "Bytes per second sent to backends.", |s| s.tx_second),
    ];
    for (name, help, value) in server {
        e.gauges(name, help, per_server(&rows, value));
    }
    let backend: [Gauge<BackendEntry>; 8] = [
        ("gobetween_backend_active_connections", "Open connections to the backend.", |b| {
            b.stats.active_connections
        }),
        ("gobetween_backend_refused_connections", "Connect attempts to the backend that failed.", |b| {
            b.stats.refused_connections
        }),
        ("gobetween_backend_total_connections", "Connections sent to the backend.", |b| {
            b.stats.total_connections
        }),
        ("gobetween_backend_rx_bytes", "Bytes received from the backend.", |b| b.stats.rx),
        ("gobetween_backend_tx_bytes", "Bytes sent to the backend.", |b| b.stats.tx),
        ("gobetween_backend_rx_second", "Bytes per second received from the backend.", |b| b.stats.rx_second),
        ("gobetween_backend_tx_second", "Bytes per second sent to the backend.", |b| b.stats.tx_second),
        ("gobetween_backend_live", "1 when the backend passes its healthcheck.", |b| u64::from(b.stats.live)),
    ];
    for (name, help, value) in backend {
        e.gauges(name, help, per_backend(&rows, value));
    }
}
