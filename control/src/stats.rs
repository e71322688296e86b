//! Counters written by the shards and read by the control thread.
//!
//! Each shard owns one cache-line-padded slot per server and per backend and is the only writer
//! of it (relaxed atomics, no read-modify-write contention between cores). The control thread
//! sums the slots for the API and metrics. Limits that must hold across shards (`max_connections`)
//! use one shared gauge, touched only when a limit is configured.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    /// Bytes (of `rx` and `tx`) moved through a kernel pipe rather than copied (server slots only).
    pub spliced: AtomicU64,
    /// Failed backend connects, indexed by `ConnectError as usize`.
    pub connect_errors: [AtomicU64; ConnectError::ALL.len()],
    pub connect_latency: LatencyBuckets,
    /// UDP: datagrams from clients sent on to a backend.
    pub datagrams_in: AtomicU64,
    /// UDP: replies from backends sent back to their clients.
    pub datagrams_out: AtomicU64,
    /// UDP: datagrams not passed on, indexed by `Dropped as usize` (server slots only).
    pub dropped: [AtomicU64; Dropped::ALL.len()],
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

/// Why a connect to a backend failed, as the metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    Refused,
    Timeout,
    Unreachable,
    /// The TLS handshake with the backend failed (`[backends_tls]`: verification, versions...).
    Tls,
    Other,
}

impl ConnectError {
    pub const ALL: [ConnectError; 5] = [
        ConnectError::Refused,
        ConnectError::Timeout,
        ConnectError::Unreachable,
        ConnectError::Tls,
        ConnectError::Other,
    ];

    pub fn of(e: &io::Error) -> ConnectError {
        match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => ConnectError::Refused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ConnectError::Timeout,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => ConnectError::Unreachable,
            _ => ConnectError::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ConnectError::Refused => "refused",
            ConnectError::Timeout => "timeout",
            ConnectError::Unreachable => "unreachable",
            ConnectError::Tls => "tls",
            ConnectError::Other => "other",
        }
    }
}

/// Why a UDP datagram was not passed on, as the metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The access rules deny the client.
    Denied,
    /// `max_connections` (sessions) is reached, for the server or every eligible backend.
    Limit,
    /// No backend is live, or no socket to it could be opened.
    NoBackend,
    /// The kernel would not take the datagram (buffer full, an ICMP error from the peer).
    SendFailed,
}

impl Dropped {
    pub const ALL: [Dropped; 4] = [Dropped::Denied, Dropped::Limit, Dropped::NoBackend, Dropped::SendFailed];

    pub fn name(self) -> &'static str {
        match self {
            Dropped::Denied => "denied",
            Dropped::Limit => "limit",
            Dropped::NoBackend => "no_backend",
            Dropped::SendFailed => "send_failed",
        }
    }
}

/// Upper bounds (seconds) of the connect latency buckets; a last, unbounded one follows.
pub const LATENCY_BOUNDS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

/// A single-writer latency histogram: one (non-cumulative) count per bucket and the sum.
#[derive(Default, Debug)]
pub struct LatencyBuckets {
    counts: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyBuckets {
    #[inline]
    pub fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BOUNDS.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BOUNDS.len());
        Slot::add(&self.counts[bucket], 1);
        Slot::add(&self.sum_micros, latency.as_micros() as u64);
    }
}

/// A latency histogram summed over shards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// Non-cumulative counts, one per `LATENCY_BOUNDS` entry plus the unbounded bucket.
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

impl Latency {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Cumulative `(upper bound, count of observations <= bound)` pairs as Prometheus writes
    /// them, ending with the unbounded bucket (`f64::INFINITY`, the total count).
    pub fn cumulative_buckets(&self) -> Vec<(f64, u64)> {
        let running = self.counts.iter().scan(0, |sum, n| {
            *sum += n;
            Some(*sum)
        });
        LATENCY_BOUNDS.iter().copied().chain([f64::INFINITY]).zip(running).collect()
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

/// A UDP server's datagrams over all shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Datagrams {
    pub from_client: u64,
    pub to_client: u64,
    /// Per `Dropped::ALL` reason.
    pub dropped: [u64; Dropped::ALL.len()],
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

    /// Failed connects per kind, in `ConnectError::ALL` order.
    pub fn connect_errors(&self) -> [u64; ConnectError::ALL.len()] {
        let mut sums = [0; ConnectError::ALL.len()];
        for slot in self.slots.iter() {
            for (sum, n) in sums.iter_mut().zip(&slot.connect_errors) {
                *sum += n.load(Relaxed);
            }
        }
        sums
    }

    /// UDP datagrams summed over shards.
    pub fn datagrams(&self) -> Datagrams {
        let mut sums = Datagrams::default();
        for slot in self.slots.iter() {
            sums.from_client += slot.datagrams_in.load(Relaxed);
            sums.to_client += slot.datagrams_out.load(Relaxed);
            for (sum, n) in sums.dropped.iter_mut().zip(&slot.dropped) {
                *sum += n.load(Relaxed);
            }
        }
        sums
    }

    pub fn connect_latency(&self) -> Latency {
        let mut latency = Latency { counts: vec![0; LATENCY_BOUNDS.len() + 1], sum_seconds: 0.0 };
        for slot in self.slots.iter() {
            for (sum, n) in latency.counts.iter_mut().zip(&slot.connect_latency.counts) {
                *sum += n.load(Relaxed);
            }
            latency.sum_seconds += slot.connect_latency.sum_micros.load(Relaxed) as f64 / 1e6;
        }
        latency
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

    #[test]
    fn latency_buckets_sum_shards() {
        let c = Counters::new(2);
        c.shard(0).connect_latency.observe(Duration::from_micros(50));
        c.shard(1).connect_latency.observe(Duration::from_millis(3));
        c.shard(1).connect_latency.observe(Duration::from_secs(5));
        let latency = c.connect_latency();
        assert_eq!(latency.count(), 3);
        let buckets = latency.cumulative_buckets();
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets[4], (0.0025, 1));
        assert_eq!(buckets[5], (0.005, 2));
        assert_eq!(buckets[11], (1.0, 2));
        assert_eq!(buckets.last().copied(), Some((f64::INFINITY, 3)));
        assert!((latency.sum_seconds - 5.00305).abs() < 1e-9);
    }

    #[test]
    fn connect_errors_by_kind() {
        let c = Counters::new(1);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        Slot::add(&c.shard(0).connect_errors[ConnectError::of(&refused) as usize], 1);
        assert_eq!(c.connect_errors(), [1, 0, 0, 0, 0]);
        assert_eq!(ConnectError::of(&io::Error::from(io::ErrorKind::TimedOut)), ConnectError::Timeout);
    }
}
