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
//! most once per timeout period), and a look at the executor's time (no clock read) per
//! wake-up of such a connection.
//! Connections without idle timeouts (the default) pay nothing.
//!
//! Most connections end within moments, long before any idle timeout of seconds or more, and
//! registering a timer with the reactor and taking it out again was most of what such a
//! connection spent on its watch. So a watch whose limits are all at least `LAZY_FROM` does not
//! arm its timer at first: it waits in the shard's `Nursery`, a slab of wakers that a tick
//! empties every `TICK`, waking the connections still there to arm their timers. The deadlines
//! are unchanged (they count from the connection's start, and a tick comes well before the
//! shortest of them); a connection that ends before the tick only gave its place back.

use crate::wakers::WakerSlab;
use glommio::timer::Timer;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How often the nursery wakes the watches waiting in it.
const TICK: Duration = Duration::from_secs(1);
/// Watches whose every limit is at least this long wait for a tick before arming their timer;
/// twice `TICK`, so the tick (a timer itself, late by at most a little) precedes every deadline.
const LAZY_FROM: Duration = Duration::from_secs(2);

/// The watches of one shard that have not armed their timers yet.
struct Nursery {
    waiting: WakerSlab,
    /// Counts the ticks: a watch that entered under an earlier count has been woken, and its
    /// place is no longer its own.
    ticks: Cell<u64>,
    /// Whether a tick task runs; it ends at a tick that finds the nursery empty.
    ticking: Cell<bool>,
    period: Duration,
}

thread_local! {
    static NURSERY: Rc<Nursery> = Rc::new(Nursery::new(TICK));
}

impl Nursery {
    fn new(period: Duration) -> Nursery {
        Nursery { waiting: WakerSlab::default(), ticks: Cell::new(0), ticking: Cell::new(false), period }
    }

    /// Keeps the task until the next tick; the place and the tick count to leave with.
    fn enter(self: &Rc<Self>, waker: &std::task::Waker) -> (usize, u64) {
        if !self.ticking.replace(true) {
            glommio::spawn_local(Rc::clone(self).tick()).detach();
        }
        (self.waiting.enter(waker), self.ticks.get())
    }

    /// Whether a watch that entered at tick count `tick` is still waiting.
    fn waiting_since(&self, tick: u64) -> bool {
        self.ticks.get() == tick
    }

    fn leave(&self, (place, tick): (usize, u64)) {
        if self.waiting_since(tick) {
            self.waiting.leave(place);
        }
    }

    async fn tick(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(self.period).await;
            self.ticks.set(self.ticks.get() + 1);
            if self.waiting.wake_all() == 0 {
                self.ticking.set(false);
                return;
            }
        }
    }
}

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
    /// Made when first armed: a connection that ends in the nursery never needs one.
    timer: Option<Timer>,
    /// When the registered timer fires; until then there is nothing to decide. `None` before
    /// the first look, and once no direction is timed any more.
    due: Option<Instant>,
    /// The nursery and the place held in it, while the watch waits for a tick.
    nursery: Option<(Rc<Nursery>, (usize, u64))>,
    /// Whether the watch waits for a tick before it arms its timer.
    lazy: bool,
}

impl IdleWatch {
    /// A watch for the given limits, or `None` when neither direction has one.
    pub fn new(limits: [Option<Duration>; 2]) -> Option<IdleWatch> {
        let shortest = *limits.iter().flatten().min()?;
        let now = Instant::now();
        Some(IdleWatch {
            limits,
            seen: [0; 2],
            since: [now; 2],
            timer: None,
            due: None,
            nursery: None,
            lazy: shortest >= LAZY_FROM,
        })
    }

    /// Ready with the index of a direction that has been idle for its limit; otherwise
    /// Pending, with the timer armed to wake the task at the next deadline.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, motion: [Motion; 2]) -> Poll<usize> {
        // The executor's time, as the timers' own: behind the clock by as long as the shard's
        // current run of tasks has lasted (microseconds; its preemption period at most).
        let now = glommio::executor().now();
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
        if std::mem::take(&mut self.lazy) {
            let nursery = NURSERY.with(Rc::clone);
            let place = nursery.enter(cx.waker());
            self.nursery = Some((nursery, place));
            return Poll::Pending;
        }
        if let Some((nursery, (_, tick))) = &self.nursery {
            if nursery.waiting_since(*tick) {
                return Poll::Pending;
            }
            // The tick has come (and woken the task, unless something else polled it first):
            // the timer is armed now.
            self.nursery = None;
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
        let timer = match &mut self.timer {
            Some(timer) => {
                timer.reset(next - now);
                timer
            }
            None => self.timer.insert(Timer::new(next - now)),
        };
        // Registers the timer with the reactor; it is not due yet, so this is Pending.
        let _ = Pin::new(timer).poll(cx);
        Poll::Pending
    }
}

impl Drop for IdleWatch {
    fn drop(&mut self) {
        if let Some((nursery, place)) = self.nursery.take() {
            nursery.leave(place);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn woken_counter() -> (Rc<Cell<u32>>, impl Future<Output = ()>) {
        let woken = Rc::new(Cell::new(0));
        let count = woken.clone();
        let waiter = std::future::poll_fn(move |_| {
            // Counts the polls after the first, that is, the wake-ups.
            count.set(count.get() + 1);
            if count.get() > 1 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        (woken, waiter)
    }

    #[test]
    fn the_tick_wakes_who_waits_and_forgets_who_left() {
        glommio::LocalExecutor::default().run(async {
            let nursery = Rc::new(Nursery::new(Duration::from_millis(20)));
            // One task waits for the tick...
            let (woken, waiter) = woken_counter();
            let held = nursery.clone();
            let task = glommio::spawn_local(async move {
                let mut place = None;
                let mut waiter = std::pin::pin!(waiter);
                std::future::poll_fn(|cx| {
                    place.get_or_insert_with(|| held.enter(cx.waker()));
                    waiter.as_mut().poll(cx)
                })
                .await;
                place.unwrap()
            });
            // ...one leaves before it.
            let gone = nursery.enter(Waker::noop());
            nursery.leave(gone);
            assert!(nursery.ticking.get());
            let (_, tick) = task.await;
            assert_eq!(woken.get(), 2, "woken once, by the tick");
            assert!(!nursery.waiting_since(tick));
            assert_eq!(nursery.waiting.len(), 0);
            // A tick that finds nobody ends the ticking; the next entrant starts it again.
            glommio::timer::sleep(Duration::from_millis(60)).await;
            assert!(!nursery.ticking.get());
            let again = nursery.enter(Waker::noop());
            assert!(nursery.ticking.get() && nursery.waiting_since(again.1));
            nursery.leave(again);
        });
    }

    #[test]
    fn only_watches_of_seconds_wait_in_the_nursery() {
        let watch = |limit| IdleWatch::new([Some(limit), None]).unwrap();
        assert!(watch(LAZY_FROM).lazy);
        assert!(watch(Duration::from_secs(300)).lazy);
        assert!(!watch(LAZY_FROM - Duration::from_millis(1)).lazy);
        assert!(
            !IdleWatch::new([Some(Duration::from_secs(300)), Some(Duration::from_secs(1))]).unwrap().lazy
        );
        assert!(IdleWatch::new([None, None]).is_none());
    }

    #[test]
    fn a_lazy_watch_arms_after_the_tick_and_times_from_the_start() {
        glommio::LocalExecutor::default().run(async {
            let mut watch = IdleWatch::new([Some(LAZY_FROM), None]).unwrap();
            let still = || [Motion { moves: 0, finished: false }, Motion { moves: 0, finished: false }];
            let started = Instant::now();
            let idle = std::future::poll_fn(|cx| watch.poll_expired(cx, still())).await;
            assert_eq!(idle, 0);
            let waited = started.elapsed();
            assert!(waited >= LAZY_FROM && waited < LAZY_FROM + TICK, "expired after {waited:?}");
            assert!(watch.nursery.is_none() && watch.timer.is_some());
        });
    }
}
