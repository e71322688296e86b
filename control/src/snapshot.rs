//! Immutable per-server snapshots: what a shard needs to route a connection, with the balancing
//! tables already built. The control thread builds a new one on every change and publishes it;
//! shards never see a half-updated view.

use crate::backend::BackendSpec;
use crate::balance::{self, Table};
use crate::config::{Balance, ServerSettings};
use crate::sni::SniRoutes;
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

/// Backends that compete for a connection, with their balancing table: one group per priority
/// value (see `balance::uses_priorities`), or one group of every live backend.
#[derive(Debug)]
pub struct Group {
    /// `None` when the strategy ignores priorities.
    pub priority: Option<i32>,
    /// Indexes into `ServerSnapshot::backends`, in byte order of their `host:port`.
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
    /// The backends grouped by their `sni=`, when the server routes on SNI.
    pub sni: Option<SniRoutes>,
}

impl ServerSnapshot {
    /// Builds the groups and tables for `backends` (already filtered to the live ones). `down`
    /// lists the discovered backends that do not take part, for tables that must stay stable
    /// while backends come and go (maglev). One sort, O(n log n) in the number of backends.
    pub fn build(
        generation: u64,
        settings: Arc<ServerSettings>,
        counters: Arc<Counters>,
        backends: Vec<Arc<Backend>>,
        down: &[BackendSpec],
    ) -> ServerSnapshot {
        let by_priority = balance::uses_priorities(&settings);
        let group_of = |spec: &BackendSpec| by_priority.then_some(spec.priority);
        // gobetween orders backends by `host + ":" + port`, compared byte by byte.
        let names: Vec<String> = backends.iter().map(|b| b.spec.address()).collect();
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            (group_of(&backends[a].spec), &names[a]).cmp(&(group_of(&backends[b].spec), &names[b]))
        });
        let mut down: Vec<(Option<i32>, String)> = match settings.balance {
            Balance::Maglev => down.iter().map(|spec| (group_of(spec), spec.address())).collect(),
            _ => Vec::new(),
        };
        down.sort_unstable();
        let groups = order
            .chunk_by(|&a, &b| group_of(&backends[a].spec) == group_of(&backends[b].spec))
            .map(|members| {
                let priority = group_of(&backends[members[0]].spec);
                let from = down.partition_point(|(p, _)| *p < priority);
                let to = down.partition_point(|(p, _)| *p <= priority);
                let down: Vec<String> = down[from..to].iter().map(|(_, name)| name.clone()).collect();
                let table = balance::build_table(settings.balance, &backends, &names, members, &down);
                Group { priority, members: members.to_vec(), table }
            })
            .collect();
        let sni = settings.sni.as_ref().map(|sni| SniRoutes::build(&settings.name, sni, &backends));
        ServerSnapshot { generation, settings, counters, backends, groups, sni }
    }
}
