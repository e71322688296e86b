//! Rate limits for log lines that a peer can repeat at will (a backend refusing every connect, a
//! full descriptor table failing every accept, a flapping healthcheck): without them one fault
//! writes a line per event and buries the rest of the log.
//!
//! Each call site of [`log_limited!`] gets its own [`LogLimit`]: at most `per_second` lines
//! in each second of the process's uptime; lines beyond that are counted, not written, and the
//! next line written from that site says how many were left out. A limit is two atomics and
//! takes no lock, so shards and the control thread can share a site.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The `log` crate, for the macro's expansion in crates that name it differently.
#[doc(hidden)]
pub use log as __log;

/// Lines per second per call site when the macro is not told otherwise.
pub const DEFAULT_PER_SECOND: u32 = 10;

/// The limit of one call site.
pub struct LogLimit {
    per_second: u32,
    /// The current second (high 32 bits) and the lines written in it (low 32 bits), in one
    /// word so that both change together.
    window: AtomicU64,
    /// Lines left out since the last one written.
    suppressed: AtomicU64,
}

impl LogLimit {
    pub const fn new(per_second: u32) -> LogLimit {
        LogLimit { per_second, window: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Whether a line may be written now: `Some(n)` with the number of lines left out since
    /// the last one written (to be said in this line), `None` when this one is left out too.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(uptime_seconds())
    }

    /// `admit` at a given second of uptime (the second 0 starts with the first line).
    fn admit_at(&self, second: u32) -> Option<u64> {
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, written) = ((current >> 32) as u32, current as u32);
            let next = if window != second {
                pack(second, 1)
            } else if written < self.per_second {
                pack(second, written + 1)
            } else {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            match self.window.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => current = actual,
            }
        }
    }
}

fn pack(second: u32, written: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(written)
}

/// Whole seconds since the first limited line of the process.
fn uptime_seconds() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() as u32
}

/// `log::log!` with a per-call-site rate limit (see the module docs): `log_limited!(Level::Warn,
/// "...", args)` writes at most [`DEFAULT_PER_SECOND`] lines a second from this site, and
/// `log_limited!(per_second: 2, Level::Warn, "...")` at most two. A line written after others
/// were left out ends with `(N similar messages suppressed)`.
#[macro_export]
macro_rules! log_limited {
    (per_second: $rate:expr, $level:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimit = $crate::log_limit::LogLimit::new($rate);
        // Lines the level filter drops are not counted against the limit.
        if $crate::log_limit::__log::log_enabled!($level) {
            match LIMIT.admit() {
                Some(0) => $crate::log_limit::__log::log!($level, $($arg)+),
                Some(left_out) => $crate::log_limit::__log::log!(
                    $level,
                    "{} ({left_out} similar messages suppressed)",
                    format_args!($($arg)+)
                ),
                None => {}
            }
        }
    }};
    ($level:expr, $($arg:tt)+) => {
        $crate::log_limited!(per_second: $crate::log_limit::DEFAULT_PER_SECOND, $level, $($arg)+)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn writes_up_to_the_rate_then_counts() {
        let limit = LogLimit::new(3);
        let admitted: Vec<_> = (0..10).map(|_| limit.admit_at(5)).collect();
        assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None, None, None, None, None, None]);
        // The next second's first line reports the seven left out, then the count starts over.
        assert_eq!(limit.admit_at(6), Some(7));
        assert_eq!(limit.admit_at(6), Some(0));
    }

    #[test]
    fn quiet_sites_always_write() {
        let limit = LogLimit::new(1);
        for second in [0, 1, 7, 1000] {
            assert_eq!(limit.admit_at(second), Some(0));
        }
    }

    #[test]
    fn second_zero_starts_a_window_too() {
        let limit = LogLimit::new(2);
        assert_eq!(limit.admit_at(0), Some(0));
        assert_eq!(limit.admit_at(0), Some(0));
        assert_eq!(limit.admit_at(0), None);
        assert_eq!(limit.admit_at(1), Some(1));
    }

    #[test]
    fn threads_share_a_site_without_losing_counts() {
        let limit = Arc::new(LogLimit::new(50));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limit = limit.clone();
                std::thread::spawn(move || (0..10_000).filter(|_| limit.admit_at(42).is_some()).count())
            })
            .collect();
        let written: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(written, 50, "exactly the rate is written within one second");
        assert_eq!(limit.admit_at(43), Some(40_000 - 50));
    }

    /// Captures the lines of this module's macro test (the only logger in this test binary).
    struct Capture(std::sync::Mutex<Vec<String>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
        fn flush(&self) {}
    }

    #[test]
    fn macro_keeps_one_limit_per_call_site() {
        static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
        let flood = |i: u32| log_limited!(per_second: 1, log::Level::Warn, "flood {i}");
        for i in 0..100 {
            flood(i);
            log_limited!(per_second: 1, log::Level::Warn, "other site {i}");
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        flood(100);
        let lines = CAPTURE.0.lock().unwrap().clone();
        let flood: Vec<_> = lines.iter().filter(|l| l.starts_with("flood")).collect();
        let other: Vec<_> = lines.iter().filter(|l| l.starts_with("other site")).collect();
        // One line a second: the loop may straddle a second boundary, hence one or two, and
        // the one after the pause.
        assert!((2..=3).contains(&flood.len()), "{lines:?}");
        assert_eq!(flood[0], "flood 0", "the first line is written as is");
        assert!((1..=2).contains(&other.len()), "each site has its own budget: {lines:?}");
        // Every line left out is reported by the next line written from its own site.
        let reported: u64 = flood
            .iter()
            .filter_map(|l| l.split(" (").nth(1))
            .map(|tail| tail.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(flood.len() as u64 + reported, 101, "{flood:?}");
        assert!(flood.last().unwrap().ends_with("similar messages suppressed)"), "{flood:?}");
    }
}
