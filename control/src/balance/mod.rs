//! Backend selection. Tables are built once per snapshot on the control thread
//! (`build_table`); a shard picks with `Picker`, its own state, without locks.
//!
//! Rules that apply to every strategy: only backends in the snapshot (live, discovered) can be
//! picked; the group with the lowest priority that has an eligible backend wins; a backend at its
//! `max_connections` or already tried for this connection is not eligible.
//!
//! Cost per attempt: `weight`, `roundrobin`, `iphash` and `iphash1` are O(1) unless the first
//! choice is ineligible; `leastconn` and `leastbandwidth` look at every member of a group.

mod bandwidth;
mod hash;
mod maglev;
mod weighted;

use crate::config::Balance;
use crate::snapshot::{Backend, ServerSnapshot};
use bandwidth::Meter;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub use hash::canonical as canonical_ip;

/// Strategies this build implements; others are refused at start as "not supported yet".
pub const SUPPORTED: &[Balance] = &[
    Balance::Weight,
    Balance::Roundrobin,
    Balance::Leastconn,
    Balance::Leastbandwidth,
    Balance::Iphash,
    Balance::Iphash1,
];

/// Marks a slot of a consistent table whose backend is discovered but not live.
const NOT_LIVE: u32 = u32::MAX;

/// Precomputed per-group selection data. Positions index the group's `members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// Positions visited cyclically (weight, roundrobin).
    Sequence(Vec<u32>),
    /// The member with the fewest connections this shard holds (leastconn).
    FewestConnections,
    /// The member with the lowest recent byte rate through this shard (leastbandwidth).
    LowestBandwidth,
    /// Client hash modulo the number of members (iphash).
    Modulo,
    /// iphash1. `primary` is a Maglev table over every discovered backend of the group, live or
    /// not, so a backend going down or coming back changes no other backend's slots; its slots
    /// read `NOT_LIVE` while it is down, and those clients use `fallback`, a Maglev table over
    /// the live members.
    Consistent { primary: Vec<u32>, fallback: Vec<u32> },
}

/// Builds the table for one priority group. `members` index `backends` (the live ones); `down`
/// names (`host:port`) the group's discovered backends that are not live.
pub fn build_table(balance: Balance, backends: &[Arc<Backend>], members: &[usize], down: &[String]) -> Table {
    match balance {
        Balance::Weight => {
            let weights: Vec<u32> = members.iter().map(|&i| backends[i].spec.weight).collect();
            Table::Sequence(weighted::smooth_sequence(&weights))
        }
        Balance::Roundrobin => Table::Sequence((0..members.len() as u32).collect()),
        Balance::Leastconn => Table::FewestConnections,
        Balance::Leastbandwidth => Table::LowestBandwidth,
        Balance::Iphash => Table::Modulo,
        Balance::Iphash1 => {
            let live: Vec<(String, u32)> = members
                .iter()
                .enumerate()
                .map(|(position, &i)| (backends[i].spec.address(), position as u32))
                .collect();
            let mut all = live.clone();
            all.extend(down.iter().map(|name| (name.clone(), NOT_LIVE)));
            Table::Consistent { primary: consistent_table(all), fallback: consistent_table(live) }
        }
    }
}

/// A Maglev table over named entries, holding each entry's value. Entries are sorted by name
/// first, so the table depends on which backends exist, never on the order discovery listed them.
fn consistent_table(mut entries: Vec<(String, u32)>) -> Vec<u32> {
    entries.sort_unstable();
    let names: Vec<String> = entries.iter().map(|(name, _)| name.clone()).collect();
    maglev::build(&names).into_iter().map(|entry| entries[entry as usize].1).collect()
}

/// A shard's selection state for one server.
#[derive(Debug)]
pub struct Picker {
    shard: usize,
    generation: u64,
    /// Per group: where the sequence or the tie-breaking scan continues.
    cursors: Vec<usize>,
    meter: Meter,
}

impl Picker {
    /// State for shard `shard`, whose counter slots leastconn and leastbandwidth read.
    pub fn new(shard: usize) -> Picker {
        Picker { shard, generation: u64::MAX, cursors: Vec::new(), meter: Meter::default() }
    }

    /// Chooses a backend index into `snapshot.backends`, or `None` when nothing is eligible.
    /// `tried` holds indexes already attempted for this connection.
    pub fn pick(&mut self, snapshot: &ServerSnapshot, client: IpAddr, tried: &[usize]) -> Option<usize> {
        if self.generation != snapshot.generation {
            self.generation = snapshot.generation;
            self.cursors = vec![0; snapshot.groups.len()];
            self.meter.follow(&snapshot.backends);
        }
        let eligible = |index: usize| {
            let backend = &snapshot.backends[index];
            !tried.contains(&index) && !backend.counters.is_full(backend.spec.max_connections)
        };
        let shard = self.shard;
        for (group, cursor) in snapshot.groups.iter().zip(self.cursors.iter_mut()) {
            let members = &group.members;
            if members.is_empty() {
                continue;
            }
            let position = match &group.table {
                Table::Sequence(sequence) => (0..sequence.len()).find_map(|_| {
                    let position = sequence[*cursor % sequence.len()] as usize;
                    *cursor = (*cursor + 1) % sequence.len();
                    eligible(members[position]).then_some(position)
                }),
                Table::FewestConnections => lowest(members, cursor, &eligible, |index| {
                    let slot = snapshot.backends[index].counters.shard(shard);
                    (slot.active.load(Relaxed), 0)
                }),
                Table::LowestBandwidth => {
                    let now = Instant::now();
                    let meter = &mut self.meter;
                    lowest(members, cursor, &eligible, |index| {
                        let slot = snapshot.backends[index].counters.shard(shard);
                        let active = slot.active.load(Relaxed);
                        (meter.rate(index, slot, now), active)
                    })
                }
                Table::Modulo => {
                    let start = (hash::client(client) % members.len() as u64) as usize;
                    first_from(members, start, &eligible)
                }
                Table::Consistent { primary, fallback } => {
                    let h = hash::client(client);
                    let chosen = primary[(h % primary.len() as u64) as usize];
                    if chosen != NOT_LIVE && eligible(members[chosen as usize]) {
                        Some(chosen as usize)
                    } else {
                        // An independent slot in the fallback table, so the clients of one
                        // backend spread over the others instead of piling onto a neighbour.
                        let h = h.rotate_left(32);
                        let start = fallback[(h % fallback.len() as u64) as usize] as usize;
                        first_from(members, start, &eligible)
                    }
                }
            };
            if let Some(position) = position {
                return Some(members[position]);
            }
        }
        None
    }
}

/// The first eligible member at or after `start`, wrapping around.
fn first_from(members: &[usize], start: usize, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
    (0..members.len()).map(|k| (start + k) % members.len()).find(|&p| eligible(members[p]))
}

/// The eligible member with the lowest `score`. Equal scores are broken by scanning from a
/// cursor that moves on every pick, so ties rotate instead of always favouring the first member.
fn lowest(
    members: &[usize],
    cursor: &mut usize,
    eligible: &impl Fn(usize) -> bool,
    mut score: impl FnMut(usize) -> (u64, u64),
) -> Option<usize> {
    let start = *cursor % members.len();
    *cursor = (start + 1) % members.len();
    let mut best: Option<(usize, (u64, u64))> = None;
    for k in 0..members.len() {
        let position = (start + k) % members.len();
        let index = members[position];
        if !eligible(index) {
            continue;
        }
        let s = score(index);
        if best.is_none_or(|(_, b)| s < b) {
            best = Some((position, s));
        }
    }
    best.map(|(position, _)| position)
}

#[cfg(test)]
mod tests;
