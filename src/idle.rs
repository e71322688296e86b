//! Idle timeouts: `client_idle_timeout` closes a connection whose client→backend stream has
//! not moved for that long, `backend_idle_timeout` one whose backend→client stream has not.
//!
//! A stream has not moved when no byte of it was read or written: its sender is silent, or
//! what it sent waits behind a receiver that does not read. The second case is why this is
//! not a read timeout: a direction stuck on a write makes no reads, and a read timeout would
//! never fire (gobetween, which uses read deadlines, has the same gap: a blocked write is not
//! timed). As with gobetween's read deadlines, a side that only receives (a client silently
//! downloading) is idle in its own direction; a stream that has ended (half-close) is not
//! timed any more.
//!
//! Cost: one timer per connection that has an idle timeout, re-armed only when it fires (at
//! most once per timeout period), and one clock read per wake-up of such a connection.
//! Connections without idle timeouts (the default) pay nothing.

use glommio::timer::Timer;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What the watch needs to know of one direction.
pub struct Motion {
    /// The direction's count of reads and writes that moved bytes.
    pub moves: u64,
    /// The direction has ended (all passed on): it is no longer timed.
    pub finished: bool,
}

/// The idle timeouts of one connection, per direction (upstream, downstream).
pub struct IdleWatch {
    limits: [Option<Duration>; 2],
    /// Each direction's `moves` at the last look, and when it last changed.
    seen: [u64; 2],
    since: [Instant; 2],
    timer: Timer,
    /// When the registered timer fires; until then there is nothing to decide. `None` before
    /// the first look, and once no direction is timed any more.
    due: Option<Instant>,
}

impl IdleWatch {
    /// A watch for the given limits, or `None` when neither direction has one.
    pub fn new(limits: [Option<Duration>; 2]) -> Option<IdleWatch> {
        let first = *limits.iter().flatten().min()?;
        let now = Instant::now();
        Some(IdleWatch { limits, seen: [0; 2], since: [now; 2], timer: Timer::new(first), due: None })
    }

    /// Ready with the index of a direction that has been idle for its limit; otherwise
    /// Pending, with the timer armed to wake the task at the next deadline.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, motion: [Motion; 2]) -> Poll<usize> {
        let now = Instant::now();
        for (i, m) in motion.iter().enumerate() {
            if m.moves != self.seen[i] {
                self.seen[i] = m.moves;
                self.since[i] = now;
            }
        }
        if self.due.is_some_and(|due| now < due) {
            // The timer is registered (see below) and wakes the task when it is due.
            return Poll::Pending;
        }
        let mut next: Option<Instant> = None;
        for (i, m) in motion.iter().enumerate() {
            let Some(limit) = self.limits[i] else { continue };
            if m.finished {
                continue;
            }
            let deadline = self.since[i] + limit;
            if deadline <= now {
                return Poll::Ready(i);
            }
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
        // Nothing timed any more (the timed directions have ended): no need to wake again.
        self.due = next;
        let Some(next) = next else { return Poll::Pending };
        self.timer.reset(next - now);
        // Registers the timer with the reactor; it is not due yet, so this is Pending.
        let _ = Pin::new(&mut self.timer).poll(cx);
        Poll::Pending
    }
}
