//! Immutable per-server snapshots: what a shard needs to route a connection, with the balancing
//! tables already built. The control thread builds a new one on every change and publishes it;
//! shards never see a half-updated view.

use crate::backend::BackendSpec;
use crate::balance::{self, Table};
use crate::config::ServerSettings;
use crate::stats::Counters;
use std::net::SocketAddr;
use std::sync::Arc;

/// A backend that takes part in balancing (discovered and live).
#[derive(Debug)]
pub struct Backend {
    pub spec: BackendSpec,
    /// Resolved addresses, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// Lives as long as the backend stays discovered, across snapshots.
    pub counters: Arc<Counters>,
}

/// Backends sharing one priority value, with their balancing table.
#[derive(Debug)]
pub struct Group {
    pub priority: i32,
    /// Indexes into `ServerSnapshot::backends`.
    pub members: Vec<usize>,
    pub table: Table,
}

#[derive(Debug)]
pub struct ServerSnapshot {
    /// Increases with every rebuild, so shards can reset per-table cursors.
    pub generation: u64,
    pub settings: Arc<ServerSettings>,
    pub counters: Arc<Counters>,
    pub backends: Vec<Arc<Backend>>,
    /// Ascending by priority: the lowest value is preferred.
    pub groups: Vec<Group>,
}

impl ServerSnapshot {
    /// Builds the groups and tables for `backends` (already filtered to the live ones). `down`
    /// lists the discovered backends that do not take part, for tables that must stay stable
    /// while backends come and go (iphash1).
    pub fn build(
        generation: u64,
        settings: Arc<ServerSettings>,
        counters: Arc<Counters>,
        backends: Vec<Arc<Backend>>,
        down: &[BackendSpec],
    ) -> ServerSnapshot {
        let mut priorities: Vec<i32> = backends.iter().map(|b| b.spec.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let groups = priorities
            .into_iter()
            .map(|priority| {
                let members: Vec<usize> =
                    (0..backends.len()).filter(|&i| backends[i].spec.priority == priority).collect();
                let down: Vec<String> =
                    down.iter().filter(|s| s.priority == priority).map(BackendSpec::address).collect();
                let table = balance::build_table(settings.balance, &backends, &members, &down);
                Group { priority, members, table }
            })
            .collect();
        ServerSnapshot { generation, settings, counters, backends, groups }
    }
}
