//! gobetween's metric names, labels and meanings, so existing dashboards keep working.
//! gobetween exports every one of them as a gauge; so does betwixt.

use super::family::{gauges, Labels};
use crate::api::stats::{BackendEntry, ServerStats};
use crate::control::Control;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::Arc;

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

        gauges(
            e,
            "server_count",
            "Backends known to the server.",
            per_server(&rows, |s| s.backends.len() as u64),
        )?;
        gauges(
            e,
            "server_active_connections",
            "Open client connections.",
            per_server(&rows, |s| s.active_connections),
        )?;
        gauges(e, "server_rx_total", "Bytes received from backends.", per_server(&rows, |s| s.rx_total))?;
        gauges(e, "server_tx_total", "Bytes sent to backends.", per_server(&rows, |s| s.tx_total))?;
        gauges(
            e,
            "server_rx_second",
            "Bytes per second received from backends.",
            per_server(&rows, |s| s.rx_second),
        )?;
        gauges(
            e,
            "server_tx_second",
            "Bytes per second sent to backends.",
            per_server(&rows, |s| s.tx_second),
        )?;

        gauges(
            e,
            "backend_active_connections",
            "Open connections to the backend.",
            per_backend(&rows, |b| b.stats.active_connections),
        )?;
        gauges(
            e,
            "backend_refused_connections",
            "Connections the backend refused or that failed.",
            per_backend(&rows, |b| b.stats.refused_connections),
        )?;
        gauges(
            e,
            "backend_total_connections",
            "Connections made to the backend.",
            per_backend(&rows, |b| b.stats.total_connections),
        )?;
        gauges(
            e,
            "backend_rx_bytes",
            "Bytes received from the backend.",
            per_backend(&rows, |b| b.stats.rx),
        )?;
        gauges(e, "backend_tx_bytes", "Bytes sent to the backend.", per_backend(&rows, |b| b.stats.tx))?;
        gauges(
            e,
            "backend_rx_second",
            "Bytes per second received from the backend.",
            per_backend(&rows, |b| b.stats.rx_second),
        )?;
        gauges(
            e,
            "backend_tx_second",
            "Bytes per second sent to the backend.",
            per_backend(&rows, |b| b.stats.tx_second),
        )?;
        gauges(
            e,
            "backend_live",
            "1 when the backend passes its healthcheck.",
            per_backend(&rows, |b| u64::from(b.stats.live)),
        )?;
        Ok(())
    }
}
