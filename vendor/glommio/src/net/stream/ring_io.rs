//! Stream sends and receives as io_uring requests (`GLOMMIO_RING_IO=1`, a measurement switch).
//!
//! Without the switch a stream read is a `recv` system call, and an io_uring poll when that
//! finds nothing; a write is a `send`. With it, `poll_read` and `poll_write` queue an
//! `IORING_OP_RECV` or `IORING_OP_SEND` and return `Pending`; the request goes in with the next
//! submission the reactor makes anyway, and its completion wakes the task, whose next call
//! returns the result. A receive on a socket with nothing to read waits inside the kernel (it
//! arms its own poll), so one request replaces the poll and the `recv` after it.
//!
//! The kernel may use a request's buffer until its completion, even after the stream or the
//! caller's buffer is gone (dropping a source only queues its cancellation), so each request
//! owns its buffer: received bytes are copied out to the caller, bytes to send are copied in.
//! Buffers are pooled per thread. A receive waits with its buffer, so an idle connection holds
//! two: a stream receives into a `SMALL` buffer unless its last receive filled its buffer
//! (then `CHUNK`), which keeps idle connections near their memory without the switch and
//! small messages at one request each.
//!
//! A write returns `Pending` with its bytes already queued, so the caller must call again with
//! a buffer that starts with the same bytes (as `write_all` and any retry of a pending write
//! do): the completion's count is the answer to that call. Reads and writes through the
//! caller's own system call (`poll_read_with`, `poll_write_with`: `splice`, `writev`) stay
//! direct; they wait for a request of this module still in flight so that no bytes are
//! reordered.

use super::Timeout;
use crate::{reactor::Reactor, sys::Source, sys::SourceType};
use std::{
    cell::RefCell,
    io,
    os::unix::io::RawFd,
    sync::OnceLock,
    task::{Context, Poll},
};

/// The switch, read once.
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("GLOMMIO_RING_IO").is_some_and(|v| v == "1"))
}

/// Bytes per request at most. A read this large is what marks a bulk stream for betwixt's
/// splice, so it still can.
const CHUNK: usize = 64 * 1024;

/// Bytes of a receive after one that came back short (and of a stream's first).
const SMALL: usize = 4 * 1024;

/// Buffers of each size kept for reuse per thread.
const POOL_LIMIT: usize = 256;

thread_local! {
    static POOLS: RefCell<[Vec<Box<[u8]>>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

fn take_buffer(size: usize) -> Box<[u8]> {
    let class = (size > SMALL) as usize;
    POOLS
        .with(|pools| pools.borrow_mut()[class].pop())
        .unwrap_or_else(|| vec![0u8; [SMALL, CHUNK][class]].into_boxed_slice())
}

fn give_back(buffer: Box<[u8]>) {
    let class = (buffer.len() > SMALL) as usize;
    POOLS.with(|pools| {
        let pool = &mut pools.borrow_mut()[class];
        if pool.len() < POOL_LIMIT {
            pool.push(buffer);
        }
    });
}

/// What the measurement switches keep for a stream. It lives in a per-thread slab and the
/// stream holds its key, a `u32` that fits in the stream's padding: every connection's future
/// holds its streams, and they stay as small as without the switches.
#[derive(Debug, Default)]
pub(crate) struct Switched {
    /// Sends and receives through the ring (`GLOMMIO_RING_IO=1`).
    pub(crate) ring: Option<RingIo>,
    /// The socket's descriptor, when it has a registered-file slot (`GLOMMIO_FIXED_FILES=1`).
    pub(crate) fixed_fd: Option<RawFd>,
}

thread_local! {
    static SWITCHED: RefCell<(Vec<Option<Switched>>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Stores `switched`; returns its key (never 0, which stands for none).
pub(crate) fn insert(switched: Switched) -> u32 {
    SWITCHED.with(|slab| {
        let (entries, free) = &mut *slab.borrow_mut();
        let index = free.pop().unwrap_or_else(|| {
            entries.push(None);
            entries.len() as u32 - 1
        });
        entries[index as usize] = Some(switched);
        index + 1
    })
}

/// Runs `f` on the entry of `key`.
pub(crate) fn with<R>(key: u32, f: impl FnOnce(&mut Switched) -> R) -> R {
    SWITCHED.with(|slab| f(slab.borrow_mut().0[key as usize - 1].as_mut().expect("a stream's entry")))
}

/// Takes the entry of `key` out (`None` while the thread is being torn down).
pub(crate) fn remove(key: u32) -> Option<Switched> {
    SWITCHED
        .try_with(|slab| {
            let (entries, free) = &mut *slab.borrow_mut();
            free.push(key - 1);
            entries[key as usize - 1].take()
        })
        .ok()
        .flatten()
}

/// A stream's requests in flight, and received bytes the caller had no room for yet.
#[derive(Debug, Default)]
pub(crate) struct RingIo {
    rx: Option<Source>,
    /// The size of the receive in flight; whether the last one filled it.
    rx_len: usize,
    rx_filled: bool,
    /// Received bytes `.1...2` of the buffer are not handed out yet.
    held: Option<(Box<[u8]>, usize, usize)>,
    tx: Option<Source>,
}

impl RingIo {
    pub(crate) fn poll_read(
        &mut self,
        reactor: &Reactor,
        fd: RawFd,
        cx: &Context<'_>,
        buf: &mut [u8],
        timeout: &Timeout,
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some((held, start, end)) = &mut self.held {
            let n = (*end - *start).min(buf.len());
            buf[..n].copy_from_slice(&held[*start..*start + n]);
            *start += n;
            if start == end {
                give_back(self.held.take().unwrap().0);
            }
            return Poll::Ready(Ok(n));
        }
        if let Some(source) = &self.rx {
            let Some(result) = source.result() else {
                return wait(reactor, source, cx, timeout);
            };
            timeout.cancel_timer(reactor);
            let SourceType::RingRecv(received) = self.rx.take().unwrap().extract_source_type() else {
                unreachable!("a ring receive owns a receive buffer")
            };
            let n = match result {
                Ok(n) => n,
                Err(e) => {
                    give_back(received);
                    return Poll::Ready(Err(e));
                }
            };
            self.rx_filled = n == self.rx_len;
            let copied = n.min(buf.len());
            buf[..copied].copy_from_slice(&received[..copied]);
            if copied < n {
                self.held = Some((received, copied, n));
            } else {
                give_back(received);
            }
            return Poll::Ready(Ok(copied));
        }
        self.rx_len = buf.len().min(if self.rx_filled { CHUNK } else { SMALL });
        let source = reactor.ring_recv(fd, take_buffer(self.rx_len), self.rx_len);
        wait(reactor, self.rx.insert(source), cx, timeout)
    }

    pub(crate) fn poll_write(
        &mut self,
        reactor: &Reactor,
        fd: RawFd,
        cx: &Context<'_>,
        buf: &[u8],
        timeout: &Timeout,
    ) -> Poll<io::Result<usize>> {
        if let Some(done) = self.poll_sent(reactor, cx, timeout) {
            return done.map(|result| result.map(|n| n.min(buf.len())));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let len = buf.len().min(CHUNK);
        let mut out = take_buffer(len);
        out[..len].copy_from_slice(&buf[..len]);
        let source = reactor.ring_send(fd, out, len);
        wait(reactor, self.tx.insert(source), cx, timeout)
    }

    /// The result of the send in flight, if there is one: `Pending` until it completes.
    pub(crate) fn poll_sent(
        &mut self,
        reactor: &Reactor,
        cx: &Context<'_>,
        timeout: &Timeout,
    ) -> Option<Poll<io::Result<usize>>> {
        let source = self.tx.as_ref()?;
        let Some(result) = source.result() else {
            return Some(wait(reactor, source, cx, timeout));
        };
        timeout.cancel_timer(reactor);
        if let SourceType::RingSend(sent) = self.tx.take().unwrap().extract_source_type() {
            give_back(sent);
        }
        Some(Poll::Ready(result))
    }

    /// Bytes this module received or is receiving would be passed over by a read through the
    /// caller's own system call.
    pub(crate) fn reading(&self) -> bool {
        self.rx.is_some() || self.held.is_some()
    }
}

/// Waits for `source`'s completion, or the stream's timeout.
fn wait(
    reactor: &Reactor,
    source: &Source,
    cx: &Context<'_>,
    timeout: &Timeout,
) -> Poll<io::Result<usize>> {
    poll_err!(timeout.check(reactor));
    source.add_waiter_single(cx.waker());
    timeout.maybe_set_timer(reactor, cx.waker());
    Poll::Pending
}
