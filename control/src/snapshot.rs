//! Immutable per-server snapshots: what a shard needs to route a connection, with the balancing
//! tables already built. The control thread builds a new one on every change and publishes it;
//! shards never see a half-updated view.

use crate::backend::BackendSpec;
use crate::balance::{self, Table};
use crate::config::ServerSettings;
use crate::stats::Counters;
use std::collections::HashMap;
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
    /// while backends come and go (iphash1). Sorting once keeps this O(n log n) however many
    /// priorities there are (filtering per priority was O(priorities × n)).
    pub fn build(
        generation: u64,
        settings: Arc<ServerSettings>,
        counters: Arc<Counters>,
        backends: Vec<Arc<Backend>>,
        down: &[BackendSpec],
    ) -> ServerSnapshot {
        let mut order: Vec<usize> = (0..backends.len()).collect();
        // Stable: members of a group stay in discovery order.
        order.sort_by_key(|&i| backends[i].spec.priority);
        let mut down_by_priority: HashMap<i32, Vec<String>> = HashMap::new();
        for spec in down {
            down_by_priority.entry(spec.priority).or_default().push(spec.address());
        }
        let groups = order
            .chunk_by(|&a, &b| backends[a].spec.priority == backends[b].spec.priority)
            .map(|members| {
                let priority = backends[members[0]].spec.priority;
                let down = down_by_priority.remove(&priority).unwrap_or_default();
                let table = balance::build_table(settings.balance, &backends, members, &down);
                Group { priority, members: members.to_vec(), table }
            })
            .collect();
        ServerSnapshot { generation, settings, counters, backends, groups }
    }
}
