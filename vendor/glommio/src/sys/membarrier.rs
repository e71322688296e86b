//! The two sides of the barrier between a shard going to sleep and a remote waker.
//!
//! Before it sleeps, the executor sets its "notify me" flag and makes the heavy barrier before
//! its last look at its queues; a remote waker queues its task and then makes the light barrier
//! before reading the flag. Either the executor sees the task or the waker sees the flag.
//!
//! Upstream glommio made the heavy side a `membarrier(PRIVATE_EXPEDITED)` system call (or an
//! `mprotect` trick) so that the light side could be a compiler fence. betwixt's shards sleep
//! once per request at a moderate rate and are rarely woken remotely, so both sides are a
//! `SeqCst` fence instead: the system call cost 8% of the CPU per request, the fence next to
//! nothing (see PATCHES.md). The system-call strategies were removed with that change; they
//! are in the published glommio 0.9.0 should a host where remote wake-ups dominate want them.

use core::sync::atomic;

/// The remote waker's side: a full fence between queueing a task and reading the sleep flag.
#[inline]
pub(crate) fn light() {
    atomic::fence(atomic::Ordering::SeqCst);
}

/// The sleeper's side: a full fence between setting the sleep flag and its last look at its
/// queues.
#[inline]
pub(crate) fn heavy() {
    atomic::fence(atomic::Ordering::SeqCst);
}
