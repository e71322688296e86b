//! Recent byte rate per backend as one shard sees it, for leastbandwidth.
//!
//! The shard's own counter slot for a backend grows as bytes move. The meter keeps one sample
//! (bytes, instant) per backend and turns the growth since then into a rate; a sample older
//! than `WINDOW` is replaced. Between replacements the rate is the higher of the last window's
//! rate and the rate since the sample, so a stream that just started counts at once and one that
//! just ended fades after one window.

use crate::snapshot::Backend;
use crate::stats::Slot;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Sample {
    /// Identifies the backend across snapshots (its counters live as long as it is discovered).
    counters: usize,
    bytes: u64,
    at: Instant,
    /// Bytes per second over the last full window.
    rate: u64,
}

/// Samples indexed like the current snapshot's `backends`.
#[derive(Debug, Default)]
pub struct Meter {
    samples: Vec<Sample>,
}

impl Meter {
    /// Re-indexes the samples for a new snapshot, keeping those of backends still present.
    pub fn follow(&mut self, backends: &[Arc<Backend>]) {
        let now = Instant::now();
        let old = std::mem::take(&mut self.samples);
        self.samples = backends
            .iter()
            .map(|b| {
                let key = Arc::as_ptr(&b.counters) as usize;
                old.iter().find(|s| s.counters == key).cloned().unwrap_or(Sample {
                    counters: key,
                    bytes: u64::MAX, // taken on first use
                    at: now,
                    rate: 0,
                })
            })
            .collect();
    }

    /// Bytes per second through `slot` (this shard's slot of backend `index`) lately.
    pub fn rate(&mut self, index: usize, slot: &Slot, now: Instant) -> u64 {
        let bytes = slot.rx.load(Relaxed).wrapping_add(slot.tx.load(Relaxed));
        let Some(sample) = self.samples.get_mut(index) else { return 0 };
        if sample.bytes == u64::MAX {
            sample.bytes = bytes;
            sample.at = now;
        }
        let elapsed = now.saturating_duration_since(sample.at).max(Duration::from_millis(1));
        let current = per_second(bytes.wrapping_sub(sample.bytes), elapsed);
        if elapsed >= WINDOW {
            *sample = Sample { bytes, at: now, rate: current, ..*sample };
            current
        } else {
            sample.rate.max(current)
        }
    }
}

fn per_second(bytes: u64, elapsed: Duration) -> u64 {
    (u128::from(bytes) * 1_000_000 / elapsed.as_micros().max(1)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendSpec;
    use crate::stats::Counters;

    fn backend() -> Arc<Backend> {
        Arc::new(Backend {
            spec: BackendSpec::new("127.0.0.1", 1),
            addrs: Vec::new(),
            counters: Arc::new(Counters::new(1)),
        })
    }

    #[test]
    fn rate_follows_bytes() {
        let b = backend();
        let mut meter = Meter::default();
        meter.follow(std::slice::from_ref(&b));
        let t0 = Instant::now();
        let slot = b.counters.shard(0);
        assert_eq!(meter.rate(0, slot, t0), 0);
        Slot::add(&slot.rx, 1000);
        // Half a window later the new bytes already count.
        assert_eq!(meter.rate(0, slot, t0 + Duration::from_millis(500)), 2000);
        // After a full window the sample is replaced...
        assert_eq!(meter.rate(0, slot, t0 + Duration::from_millis(1000)), 1000);
        // ...and an idle backend fades to zero one window later.
        assert_eq!(meter.rate(0, slot, t0 + Duration::from_millis(1500)), 1000);
        assert_eq!(meter.rate(0, slot, t0 + Duration::from_millis(2000)), 0);
    }

    #[test]
    fn samples_survive_a_new_snapshot() {
        let a = backend();
        let b = backend();
        let mut meter = Meter::default();
        meter.follow(&[a.clone(), b.clone()]);
        let t0 = Instant::now();
        meter.rate(1, b.counters.shard(0), t0);
        Slot::add(&b.counters.shard(0).tx, 500);
        meter.follow(std::slice::from_ref(&b));
        assert_eq!(meter.rate(0, b.counters.shard(0), t0 + Duration::from_millis(500)), 1000);
    }
}
