//! Backend selection. Tables are built once per snapshot on the control thread
//! (`build_table`); a shard picks with `Picker`, its own cursor state, in O(1) per attempt.
//!
//! Rules that apply to every strategy: only backends in the snapshot (live, discovered) take
//! part; the group with the lowest priority that has an eligible backend wins; a backend at its
//! `max_connections` or already tried for this connection is not eligible.

mod weighted;

use crate::config::Balance;
use crate::snapshot::{Backend, ServerSnapshot};
use std::net::IpAddr;
use std::sync::Arc;

/// Strategies this build implements; others are refused at start as "not supported yet".
pub const SUPPORTED: &[Balance] = &[Balance::Weight, Balance::Roundrobin];

/// Precomputed per-group selection data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// Positions into the group's members, visited cyclically (weight, roundrobin).
    Sequence(Vec<u32>),
}

pub fn build_table(balance: Balance, backends: &[Arc<Backend>], members: &[usize]) -> Table {
    match balance {
        Balance::Roundrobin => Table::Sequence((0..members.len() as u32).collect()),
        _ => {
            let weights: Vec<u32> = members.iter().map(|&i| backends[i].spec.weight).collect();
            Table::Sequence(weighted::smooth_sequence(&weights))
        }
    }
}

/// A shard's selection state for one server; reset when a new snapshot arrives.
#[derive(Debug, Default)]
pub struct Picker {
    generation: u64,
    cursors: Vec<usize>,
}

impl Picker {
    /// Chooses a backend index into `snapshot.backends`, or `None` when nothing is eligible.
    /// `tried` holds indexes already attempted for this connection.
    pub fn pick(&mut self, snapshot: &ServerSnapshot, _client: IpAddr, tried: &[usize]) -> Option<usize> {
        if self.generation != snapshot.generation || self.cursors.len() != snapshot.groups.len() {
            self.generation = snapshot.generation;
            self.cursors = vec![0; snapshot.groups.len()];
        }
        let eligible = |index: usize| {
            let backend = &snapshot.backends[index];
            !tried.contains(&index) && !backend.counters.is_full(backend.spec.max_connections)
        };
        for (group, cursor) in snapshot.groups.iter().zip(self.cursors.iter_mut()) {
            match &group.table {
                Table::Sequence(sequence) => {
                    for _ in 0..sequence.len() {
                        let position = sequence[*cursor % sequence.len()] as usize;
                        *cursor = (*cursor + 1) % sequence.len();
                        let index = group.members[position];
                        if eligible(index) {
                            return Some(index);
                        }
                    }
                }
            }
        }
        None
    }
}
