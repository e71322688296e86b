//! Bytes per second (`rx_second`, `tx_second`) for servers and backends.
//!
//! Shards only add to byte totals; a control-thread task samples those totals once per second and
//! keeps the last few samples of each counter set. A rate is the growth across that sliding
//! window divided by the time it spans, so one slow tick does not make a spike.

use crate::control::Control;
use crate::stats::Counters;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often totals are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How many sampling intervals a rate spans.
pub const WINDOW: usize = 5;

/// Bytes per second in each direction (rx: backend → client, tx: client → backend).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub rx: u64,
    pub tx: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    rx: u64,
    tx: u64,
}

/// The last `WINDOW + 1` samples of one counter set.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<Sample>,
}

impl Window {
    pub fn push(&mut self, at: Instant, rx: u64, tx: u64) {
        self.samples.push_back(Sample { at, rx, tx });
        while self.samples.len() > WINDOW + 1 {
            self.samples.pop_front();
        }
    }

    pub fn rate(&self) -> Rate {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return Rate::default();
        };
        let seconds = last.at.duration_since(first.at).as_secs_f64();
        if seconds <= 0.0 {
            return Rate::default();
        }
        let per_second = |from: u64, to: u64| (to.saturating_sub(from) as f64 / seconds).round() as u64;
        Rate { rx: per_second(first.rx, last.rx), tx: per_second(first.tx, last.tx) }
    }
}

/// Windows for every counter set the control plane knows, keyed by the counters' allocation.
/// Holding a `Weak` keeps that address from being reused while the entry exists.
#[derive(Debug, Default)]
pub struct Rates {
    windows: Mutex<HashMap<usize, (Weak<Counters>, Window)>>,
}

fn key(counters: &Arc<Counters>) -> usize {
    Arc::as_ptr(counters) as usize
}

impl Rates {
    /// Records the current totals of `counters`; counter sets not listed are forgotten.
    pub fn sample<'a>(&self, at: Instant, counters: impl IntoIterator<Item = &'a Arc<Counters>>) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = HashSet::new();
        for c in counters {
            let totals = c.totals();
            let entry = windows.entry(key(c)).or_insert_with(|| (Arc::downgrade(c), Window::default()));
            entry.1.push(at, totals.rx, totals.tx);
            seen.insert(key(c));
        }
        windows.retain(|k, _| seen.contains(k));
    }

    pub fn rate(&self, counters: &Arc<Counters>) -> Rate {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.get(&key(counters)).map(|(_, w)| w.rate()).unwrap_or_default()
    }
}

/// Samples every server's and backend's totals once per second for as long as the runtime runs.
pub fn spawn_sampler(control: Arc<Control>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let mut all = Vec::new();
            for server in control.servers() {
                all.push(server.counters.clone());
                all.extend(server.backends().iter().map(|b| b.counters.clone()));
            }
            control.rates.sample(Instant::now(), &all);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Slot;

    #[test]
    fn rate_spans_the_window() {
        let start = Instant::now();
        let mut w = Window::default();
        assert_eq!(w.rate(), Rate::default());
        w.push(start, 0, 0);
        assert_eq!(w.rate(), Rate::default());
        w.push(start + Duration::from_secs(1), 1000, 10);
        assert_eq!(w.rate(), Rate { rx: 1000, tx: 10 });
        w.push(start + Duration::from_secs(2), 1000, 30);
        assert_eq!(w.rate(), Rate { rx: 500, tx: 15 });
        // Once the burst leaves the window, the rate falls back to zero.
        for s in 3..=8 {
            w.push(start + Duration::from_secs(s), 1000, 30);
        }
        assert_eq!(w.rate(), Rate::default());
    }

    #[test]
    fn forgets_counters_no_longer_sampled() {
        let rates = Rates::default();
        let a = Arc::new(Counters::new(1));
        let b = Arc::new(Counters::new(1));
        let start = Instant::now();
        rates.sample(start, [&a, &b]);
        Slot::add(&a.shard(0).rx, 300);
        rates.sample(start + Duration::from_secs(1), [&a, &b]);
        assert_eq!(rates.rate(&a), Rate { rx: 300, tx: 0 });
        rates.sample(start + Duration::from_secs(2), [&b]);
        assert_eq!(rates.rate(&a), Rate::default());
        assert_eq!(rates.windows.lock().unwrap().len(), 1);
    }
}
