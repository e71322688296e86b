//! Backend selection. Tables are built once per snapshot on the control thread
//! (`build_table`); a shard picks with `Picker`, its own state, without locks.
//!
//! What every strategy shares: only backends in the snapshot (live, discovered) can be picked,
//! and a backend at its `max_connections` or already tried for this connection is not
//! eligible. The strategy then chooses among the eligible backends, as gobetween filters full
//! backends out before its strategy runs (so `iphash` takes the modulo over the eligible ones).
//!
//! Priorities are gobetween's: `weight` prefers the lowest priority value that has an eligible
//! backend; every other strategy spreads over all live backends as one group, unless the server
//! sets betwixt's `priority_groups = true` (`uses_priorities`).
//!
//! Cost per attempt: `weight`, `roundrobin` and `maglev` are O(1) unless the first choice is
//! ineligible; `iphash` is O(1) unless a backend is full or a retry excludes one (then
//! O(group)); `iphash1` hashes every member's name (O(group), a few bytes each), as gobetween
//! does; `leastconn` and `leastbandwidth` look at every member of a group.

mod bandwidth;
mod hash;
mod maglev;
mod weighted;

use crate::config::{Balance, ServerSettings};
use crate::snapshot::{Backend, ServerSnapshot};
use bandwidth::Meter;
use hash::Fnv32;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub use hash::{canonical as canonical_ip, canonical_addr, ClientBytes};

/// Strategies this build implements; others are refused at start as "not supported yet".
pub const SUPPORTED: &[Balance] = &[
    Balance::Weight,
    Balance::Roundrobin,
    Balance::Leastconn,
    Balance::Leastbandwidth,
    Balance::Iphash,
    Balance::Iphash1,
    Balance::Maglev,
];

/// Whether a server's backends form one group per priority value: always for `weight` (as in
/// gobetween), for the other strategies only with `priority_groups = true`.
pub fn uses_priorities(settings: &ServerSettings) -> bool {
    settings.balance == Balance::Weight || settings.priority_groups
}

/// Marks a slot of a consistent table whose backend is discovered but not live.
const NOT_LIVE: u32 = u32::MAX;

/// Precomputed per-group selection data. Positions index the group's `members`, which are in
/// byte order of their `host:port` (gobetween sorts so for roundrobin and iphash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// weight: a smooth weighted sequence over the members with weight above 0, visited
    /// cyclically. `spare` holds the weight-0 members, taken in turn only when no member of the
    /// sequence is eligible (gobetween picks a weight-0 backend only when no backend with a
    /// weight is left in the group). When every weight is 0 the sequence is each member once.
    Weighted { sequence: Vec<u32>, spare: Vec<u32> },
    /// roundrobin: each member in turn.
    Cycle,
    /// leastconn: the member with the fewest connections this shard holds.
    FewestConnections,
    /// leastbandwidth: the member with the lowest recent byte rate through this shard.
    LowestBandwidth,
    /// iphash: the client's FNV-1a 32 modulo the number of eligible members. `limited` are the
    /// members with a `max_connections`, the only ones that can make the count differ.
    Modulo { limited: Vec<u32> },
    /// iphash1: the member whose FNV-1a 32 over (client bytes, `host:port`) is highest. `names`
    /// holds every member's `host:port` back to back, `ends` where each one ends.
    HighestHash { names: Vec<u8>, ends: Vec<u32> },
    /// maglev. `primary` is a Maglev table over every discovered backend of the group, live or
    /// not, so a backend going down or coming back changes no other backend's slots; its slots
    /// read `NOT_LIVE` while it is down, and those clients use `fallback`, a Maglev table over
    /// the live members.
    Consistent { primary: Vec<u32>, fallback: Vec<u32> },
}

/// Builds the table for one group. `members` index `backends` (the live ones) and are sorted
/// by `names` (each backend's `host:port`, indexed like `backends`); `down` names the group's
/// discovered backends that are not live (used by maglev only).
pub fn build_table(
    balance: Balance,
    backends: &[Arc<Backend>],
    names: &[String],
    members: &[usize],
    down: &[String],
) -> Table {
    let positions = || 0..members.len() as u32;
    match balance {
        Balance::Weight => {
            let weight = |p: u32| backends[members[p as usize]].spec.weight;
            let (weighted, spare): (Vec<u32>, Vec<u32>) = positions().partition(|&p| weight(p) > 0);
            if weighted.is_empty() {
                return Table::Weighted { sequence: spare, spare: Vec::new() };
            }
            let weights: Vec<u32> = weighted.iter().map(|&p| weight(p)).collect();
            let sequence =
                weighted::smooth_sequence(&weights).into_iter().map(|k| weighted[k as usize]).collect();
            Table::Weighted { sequence, spare }
        }
        Balance::Roundrobin => Table::Cycle,
        Balance::Leastconn => Table::FewestConnections,
        Balance::Leastbandwidth => Table::LowestBandwidth,
        Balance::Iphash => Table::Modulo {
            limited: positions()
                .filter(|&p| backends[members[p as usize]].spec.max_connections > 0)
                .collect(),
        },
        Balance::Iphash1 => {
            let mut names_bytes = Vec::new();
            let mut ends = Vec::with_capacity(members.len());
            for &i in members {
                names_bytes.extend_from_slice(names[i].as_bytes());
                ends.push(names_bytes.len() as u32);
            }
            Table::HighestHash { names: names_bytes, ends }
        }
        Balance::Maglev => {
            let live: Vec<(String, u32)> =
                members.iter().zip(positions()).map(|(&i, p)| (names[i].clone(), p)).collect();
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

/// Which backends one connection may go to, on top of the rules every pick applies (live,
/// below `max_connections`, not tried yet): SNI routing narrows them (see `sni`).
#[derive(Debug)]
pub enum Candidates<'a> {
    All,
    /// Indexes into the snapshot's backends, ascending; empty lets nobody in.
    Only(Cow<'a, [usize]>),
}

impl Candidates<'_> {
    pub fn none() -> Self {
        Candidates::Only(Cow::Borrowed(&[]))
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Candidates::Only(list) if list.is_empty())
    }

    fn admits(&self, index: usize) -> bool {
        match self {
            Candidates::All => true,
            Candidates::Only(list) => list.binary_search(&index).is_ok(),
        }
    }
}

/// A shard's selection state for one server.
#[derive(Debug)]
pub struct Picker {
    shard: usize,
    generation: u64,
    cursors: Vec<Cursor>,
    meter: Meter,
}

/// Per group: where the sequence, the cycle or the tie-breaking scan continues.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    next: usize,
    /// In the weight-0 members of a `Weighted` table.
    spare: usize,
}

impl Picker {
    /// State for shard `shard`, whose counter slots leastconn and leastbandwidth read.
    pub fn new(shard: usize) -> Picker {
        Picker { shard, generation: u64::MAX, cursors: Vec::new(), meter: Meter::default() }
    }

    /// Where this shard starts in a group's table for a new snapshot. A weighted sequence is
    /// entered at a place of its own per shard and snapshot: from its start, every shard would
    /// send its first connections after a start, a reload or a health change to the same
    /// backends (gobetween draws each pick at random, so it has no such burst).
    fn first_cursor(&self, table: &Table) -> Cursor {
        match table {
            Table::Weighted { sequence, .. } if !sequence.is_empty() => {
                let mixed = hash::fnv1a(
                    3,
                    &[self.generation.to_le_bytes(), (self.shard as u64).to_le_bytes()].concat(),
                );
                Cursor { next: (mixed % sequence.len() as u64) as usize, spare: 0 }
            }
            _ => Cursor::default(),
        }
    }

    /// Chooses a backend index into `snapshot.backends`, or `None` when nothing is eligible.
    /// `tried` holds indexes already attempted for this connection.
    pub fn pick(&mut self, snapshot: &ServerSnapshot, client: IpAddr, tried: &[usize]) -> Option<usize> {
        self.pick_among(snapshot, client, tried, &Candidates::All)
    }

    /// As `pick`, among `candidates` only. The strategy runs over the candidates as if they
    /// were the whole pool (gobetween filters by SNI before its strategy), at O(log n) more
    /// per member looked at.
    pub fn pick_among(
        &mut self,
        snapshot: &ServerSnapshot,
        client: IpAddr,
        tried: &[usize],
        candidates: &Candidates,
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        if self.generation != snapshot.generation {
            self.generation = snapshot.generation;
            self.cursors = snapshot.groups.iter().map(|group| self.first_cursor(&group.table)).collect();
            self.meter.follow(&snapshot.backends);
        }
        let eligible = |index: usize| {
            let backend = &snapshot.backends[index];
            !tried.contains(&index)
                && candidates.admits(index)
                && !backend.counters.is_full(backend.spec.max_connections)
        };
        let client_bytes = snapshot.settings.client_bytes;
        let shard = self.shard;
        for (group, cursor) in snapshot.groups.iter().zip(self.cursors.iter_mut()) {
            let members = &group.members;
            if members.is_empty() {
                continue;
            }
            let position = match &group.table {
                Table::Weighted { sequence, spare } => {
                    in_sequence(members, sequence, &mut cursor.next, &eligible)
                        .or_else(|| in_sequence(members, spare, &mut cursor.spare, &eligible))
                }
                Table::Cycle => {
                    let found = first_from(members, cursor.next % members.len(), &eligible);
                    if let Some(position) = found {
                        cursor.next = position + 1;
                    }
                    found
                }
                Table::FewestConnections => lowest(members, &mut cursor.next, &eligible, |index| {
                    let slot = snapshot.backends[index].counters.shard(shard);
                    (slot.active.load(Relaxed), 0)
                }),
                Table::LowestBandwidth => {
                    let now = Instant::now();
                    let meter = &mut self.meter;
                    lowest(members, &mut cursor.next, &eligible, |index| {
                        let slot = snapshot.backends[index].counters.shard(shard);
                        let active = slot.active.load(Relaxed);
                        (meter.rate(index, slot, now), active)
                    })
                }
                Table::Modulo { limited } => {
                    let hash = client_bytes.hash(client).finish();
                    let all_eligible = tried.is_empty()
                        && matches!(candidates, Candidates::All)
                        && limited.iter().all(|&p| eligible(members[p as usize]));
                    if all_eligible {
                        Some(hash as usize % members.len())
                    } else {
                        nth_eligible(members, hash, &eligible)
                    }
                }
                Table::HighestHash { names, ends } => {
                    highest_hash(members, names, ends, client_bytes.hash(client), &eligible)
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

/// The next eligible member named by `sequence` (positions into `members`), from `cursor` on.
fn in_sequence(
    members: &[usize],
    sequence: &[u32],
    cursor: &mut usize,
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    (0..sequence.len()).find_map(|_| {
        let position = sequence[*cursor % sequence.len()] as usize;
        *cursor = (*cursor + 1) % sequence.len();
        eligible(members[position]).then_some(position)
    })
}

/// gobetween's iphash over the eligible members only: `hash` modulo their number, counted in
/// member order.
fn nth_eligible(members: &[usize], hash: u32, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
    let count = members.iter().filter(|&&i| eligible(i)).count();
    if count == 0 {
        return None;
    }
    (0..members.len()).filter(|&p| eligible(members[p])).nth(hash as usize % count)
}

/// gobetween's iphash1: the eligible member whose name continues `client` (the FNV state after
/// the client's bytes) to the highest hash. Equal hashes go to the first in member order
/// (gobetween takes the first it meets in map order, which varies).
fn highest_hash(
    members: &[usize],
    names: &[u8],
    ends: &[u32],
    client: Fnv32,
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    let mut start = 0;
    for (position, &end) in ends.iter().enumerate() {
        let end = end as usize;
        let h = client.write(&names[start..end]).finish();
        start = end;
        // Eligibility (an atomic load) is only asked of a member that would win.
        if best.is_none_or(|(_, b)| h > b) && eligible(members[position]) {
            best = Some((position, h));
        }
    }
    best.map(|(position, _)| position)
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
