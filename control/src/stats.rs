//! Counters written by the shards and read by the control thread.
//!
//! Each shard owns one cache-line-padded slot per server and per backend and is the only writer
//! of it (relaxed atomics, no read-modify-write contention between cores). The control thread
//! sums the slots for the API and metrics. Limits that must hold across shards (`max_connections`)
//! use one shared gauge, touched only when a limit is configured.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One shard's view of a server or backend.
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct Slot {
    pub total: AtomicU64,
    pub active: AtomicU64,
    pub refused: AtomicU64,
    /// Bytes received from the backend (sent on to the client).
    pub rx: AtomicU64,
    /// Bytes sent to the backend (received from the client).
    pub tx: AtomicU64,
}

impl Slot {
    /// Single-writer increment: a load and a store, no locked instruction.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: u64,
    pub active: u64,
    pub refused: u64,
    pub rx: u64,
    pub tx: u64,
}

/// Per-shard slots for one server or one backend, plus the cross-shard connection gauge.
#[derive(Debug)]
pub struct Counters {
    slots: Box<[Slot]>,
    /// Connections open across all shards; maintained only while a limit applies.
    pub gauge: AtomicU64,
}

impl Counters {
    pub fn new(shards: usize) -> Self {
        Counters { slots: (0..shards).map(|_| Slot::default()).collect(), gauge: AtomicU64::new(0) }
    }

    #[inline]
    pub fn shard(&self, shard: usize) -> &Slot {
        &self.slots[shard]
    }

    pub fn shard_count(&self) -> usize {
        self.slots.len()
    }

    pub fn totals(&self) -> Totals {
        self.slots.iter().fold(Totals::default(), |t, s| Totals {
            total: t.total + s.total.load(Relaxed),
            active: t.active + s.active.load(Relaxed),
            refused: t.refused + s.refused.load(Relaxed),
            rx: t.rx + s.rx.load(Relaxed),
            tx: t.tx + s.tx.load(Relaxed),
        })
    }

    /// Takes a place under `limit` (0 = unlimited). Returns false when full.
    #[inline]
    pub fn try_acquire(&self, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let limit = u64::from(limit);
        self.gauge.fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    #[inline]
    pub fn release(&self, limit: u32) {
        if limit != 0 {
            self.gauge.fetch_sub(1, Relaxed);
        }
    }

    /// True when a new connection would exceed `limit`.
    #[inline]
    pub fn is_full(&self, limit: u32) -> bool {
        limit != 0 && self.gauge.load(Relaxed) >= u64::from(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_slots_and_limits() {
        let c = Counters::new(2);
        Slot::add(&c.shard(0).rx, 5);
        Slot::add(&c.shard(1).rx, 7);
        assert_eq!(c.totals().rx, 12);
        assert!(c.try_acquire(2));
        assert!(c.try_acquire(2));
        assert!(!c.try_acquire(2));
        assert!(c.is_full(2));
        c.release(2);
        assert!(c.try_acquire(2));
        assert!(c.try_acquire(0));
    }
}
