//! gobetween's metric names, labels and meanings, so existing dashboards keep working.
//! gobetween exports every one of them as a gauge; so does betwixt.

use super::family::{gauges, Labels};
use crate::api::stats::{BackendEntry, ServerStats};
use crate::control::Control;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::Arc;

/// A gauge family: name (after `gobetween_`), help, and the value read from one row.
type Gauge<T> = (&'static str, &'static str, fn(&T) -> u64);

#[derive(Debug)]
pub struct Compatible(pub Arc<Control>);

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

impl Collector for Compatible {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let control = &self.0;
        let rows: Vec<(String, ServerStats)> =
            control.servers().iter().map(|h| (h.name.clone(), ServerStats::of(h, &control.rates))).collect();
        let e = &mut encoder;

        let build = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("revision", option_env!("BETWIXT_REVISION").unwrap_or("unknown").to_string()),
            ("branch", option_env!("BETWIXT_BRANCH").unwrap_or("unknown").to_string()),
        ];
        gauges(e, "build_info", "A constant 1 labeled by the version betwixt was built from.", [(build, 1)])?;

        let server: [Gauge<ServerStats>; 6] = [
            ("server_count", "Backends known to the server.", |s| s.backends.len() as u64),
            ("server_active_connections", "Open client connections.", |s| s.active_connections),
            ("server_rx_total", "Bytes received from backends.", |s| s.rx_total),
            ("server_tx_total", "Bytes sent to backends.", |s| s.tx_total),
            ("server_rx_second", "Bytes per second received from backends.", |s| s.rx_second),
            ("server_tx_second", "Bytes per second sent to backends.", |s| s.tx_second),
        ];
        for (name, help, value) in server {
            gauges(e, name, help, per_server(&rows, value))?;
        }
        let backend: [Gauge<BackendEntry>; 8] = [
            ("backend_active_connections", "Open connections to the backend.", |b| {
                b.stats.active_connections
            }),
            ("backend_refused_connections", "Connect attempts to the backend that failed.", |b| {
                b.stats.refused_connections
            }),
            ("backend_total_connections", "Connections sent to the backend.", |b| b.stats.total_connections),
            ("backend_rx_bytes", "Bytes received from the backend.", |b| b.stats.rx),
            ("backend_tx_bytes", "Bytes sent to the backend.", |b| b.stats.tx),
            ("backend_rx_second", "Bytes per second received from the backend.", |b| b.stats.rx_second),
            ("backend_tx_second", "Bytes per second sent to the backend.", |b| b.stats.tx_second),
            ("backend_live", "1 when the backend passes its healthcheck.", |b| u64::from(b.stats.live)),
        ];
        for (name, help, value) in backend {
            gauges(e, name, help, per_backend(&rows, value))?;
        }
        Ok(())
    }
}
