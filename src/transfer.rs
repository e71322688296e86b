//! Moving bytes both ways between client and backend in one task, until both directions end,
//! a side fails, or an idle timeout passes.
//!
//! When one reader reaches end of stream while the other direction is still open, the writer's
//! sending side is shut down (half-close) and the other direction carries on alone. When both
//! ends have closed, no shutdown is sent: closing the sockets sends each peer its FIN anyway,
//! and a `shutdown` per side was a fifth of the cost of a short connection. A server with
//! `half_close = false` ends the transfer at the first end of stream instead, and the closes
//! send both FINs (gobetween's way: no wait for the other side's end).
//!
//! Faults are passed on, as HAProxy does: when a side fails (its peer reset the connection, or
//! any other socket error), the other side is reset too rather than closed, so that it sees an
//! abort and not a clean end of stream (a truncated reply must not look complete). Before the
//! reset, what the failed side sent before failing is still delivered: the kernel hands over
//! the bytes received before a reset before it reports the reset, so the direction from the
//! failed side goes on until its reads end, and the survivor's socket is given the time to
//! send what it holds (a reset discards a socket's unsent bytes). Both steps last only while
//! the survivor takes bytes: one that stalls for `ABORT_GRACE` is reset at once.

use crate::access_log::Moved;
use crate::direction::{Counted, Direction, Fault};
use crate::idle::{IdleWatch, Motion};
use betwixt_control::stats::Slot;
use glommio::net::TcpStream;
use glommio::timer::Timer;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::Poll;
use std::time::{Duration, Instant};

/// How long a survivor may take no bytes before it is reset without the rest.
const ABORT_GRACE: Duration = Duration::from_millis(500);

/// How often the abort path looks at the survivor's progress.
const ABORT_TICK: Duration = Duration::from_millis(10);

/// The two ends of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    /// The side a two-element array holds at `i`: the client at 0, the backend at 1.
    pub fn of(i: usize) -> Side {
        [Side::Client, Side::Backend][i]
    }
}

/// How a transfer ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached their end of stream and everything was passed on.
    Done,
    /// The idle timeout of this side's stream passed (see `idle`).
    Idle(Side),
    /// This side failed with this error; the other side is set to be reset when it is closed.
    Failed(Side, io::Error),
    /// Stopped, as asked, at a moment with nothing in flight (see `bidirectional`'s
    /// `quiet_after`): the connection goes on elsewhere.
    Quiet,
}

/// Byte counters to bump as data moves: client→backend bytes are `tx`, backend→client `rx`.
#[derive(Clone, Copy)]
pub struct Meters<'a> {
    pub server: &'a Slot,
    pub backend: &'a Slot,
    /// The connection's own counts, for its access log line.
    pub connection: &'a Moved,
}

impl<'a> Meters<'a> {
    /// The counters of bytes from the client (`true`) or to it.
    pub fn bytes(&self, from_client: bool) -> [&'a AtomicU64; 3] {
        match from_client {
            true => [&self.server.tx, &self.backend.tx, &self.connection.from_client],
            false => [&self.server.rx, &self.backend.rx, &self.connection.to_client],
        }
    }
}

/// How a transfer ends other than by a fault: the server's idle timeouts and `half_close`.
#[derive(Clone, Copy, Debug)]
pub struct Ending {
    /// The client's and the backend's idle timeouts.
    pub idle: [Option<Duration>; 2],
    /// A side's end of stream is passed on and the other direction carries on (`true`), or,
    /// once everything that side sent is passed on, the transfer is done and both sockets are
    /// closed (`false`: gobetween's way, and nginx's default).
    pub half_close: bool,
}

/// Runs until both directions are done (with `ending.half_close` off, until either is), a side
/// fails, or an idle timeout passes. With `quiet_after` above 0, also
/// stops (`End::Quiet`) once the directions have moved bytes that many times and nothing read
/// waits to be written: kernel forwarding takes the connection over there.
///
/// A plain function returning an `async move` block, not an `async fn`: an async fn stores
/// its arguments twice in its future (as passed, and as the locals they are moved into), and
/// every idle connection carries this future.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn bidirectional<'a>(
    client: &'a mut TcpStream,
    backend: &'a mut TcpStream,
    meters: Meters<'a>,
    ending: Ending,
    quiet_after: u64,
) -> impl Future<Output = End> + 'a {
    async move {
        let mut upstream = Direction::new();
        let mut downstream = Direction::new();
        let up = Counted { bytes: meters.bytes(true), spliced: &meters.server.spliced };
        let down = Counted { bytes: meters.bytes(false), spliced: &meters.server.spliced };
        let mut idle = IdleWatch::new(ending.idle);
        let stop = poll_fn(|cx| {
            let up_done = match upstream.poll_copy(cx, client, backend, &up) {
                Poll::Ready(Err(fault)) => {
                    return Poll::Ready(Stop::Fault(failed_side(Side::Client, &fault), fault))
                }
                other => other.is_ready(),
            };
            let down_done = match downstream.poll_copy(cx, backend, client, &down) {
                Poll::Ready(Err(fault)) => {
                    return Poll::Ready(Stop::Fault(failed_side(Side::Backend, &fault), fault))
                }
                other => other.is_ready(),
            };
            // Passes a finished direction's end of stream on, unless both ended: dropping the
            // sockets closes them, which sends each its FIN. Without half-close, one is enough.
            let shut_down = match (up_done, down_done) {
                (true, true) => return Poll::Ready(Stop::Done),
                (true, false) | (false, true) if !ending.half_close => return Poll::Ready(Stop::Done),
                (true, false) => upstream.poll_shut_down(cx, backend).map_err(|e| (Side::Backend, e)),
                (false, true) => downstream.poll_shut_down(cx, client).map_err(|e| (Side::Client, e)),
                (false, false) => {
                    let moved = quiet_after > 0 && upstream.moves + downstream.moves >= quiet_after;
                    if moved && upstream.is_quiet() && downstream.is_quiet() {
                        return Poll::Ready(Stop::Quiet);
                    }
                    Poll::Pending
                }
            };
            if let Poll::Ready(Err((side, e))) = shut_down {
                return Poll::Ready(Stop::Fault(side, Fault::Writer(e)));
            }
            if let Some(watch) = &mut idle {
                let motion =
                    [&upstream, &downstream].map(|d| Motion { moves: d.moves, finished: d.finished });
                if let Poll::Ready(i) = watch.poll_expired(cx, motion) {
                    return Poll::Ready(Stop::Idle(Side::of(i)));
                }
            }
            Poll::Pending
        })
        .await;
        match stop {
            Stop::Done => End::Done,
            Stop::Quiet => End::Quiet,
            Stop::Idle(side) => End::Idle(side),
            Stop::Fault(failed, fault) => {
                let (from_failed, reader, survivor, counted) = match failed {
                    Side::Client => (&mut upstream, client, backend, &up),
                    Side::Backend => (&mut downstream, backend, client, &down),
                };
                // Boxed: only a failed connection takes this step, and every connection's future
                // would carry its room.
                Box::pin(deliver_remainder(from_failed, reader, survivor, counted)).await;
                reset_on_close(survivor);
                let (Fault::Reader(e) | Fault::Writer(e)) = fault;
                End::Failed(failed, e)
            }
        }
    }
}

/// Why the two-way transfer stopped.
enum Stop {
    Done,
    Quiet,
    Idle(Side),
    Fault(Side, Fault),
}

/// Which side a fault of the direction reading from `reader` is on.
pub fn failed_side(reader: Side, fault: &Fault) -> Side {
    match (fault, reader) {
        (Fault::Reader(_), side) => side,
        (Fault::Writer(_), Side::Client) => Side::Backend,
        (Fault::Writer(_), Side::Backend) => Side::Client,
    }
}

/// After `reader`'s side failed: passes on what it sent before failing, then waits until the
/// survivor's kernel has it acknowledged, for as long as the survivor makes progress.
async fn deliver_remainder(
    from_failed: &mut Direction,
    reader: &mut TcpStream,
    survivor: &mut TcpStream,
    counted: &Counted<'_>,
) {
    let mut copying = true;
    let mut seen = (from_failed.moves, usize::MAX);
    let mut stalled_since = Instant::now();
    let mut tick = Timer::new(ABORT_TICK);
    poll_fn(|cx| {
        while copying {
            match from_failed.poll_copy(cx, reader, survivor, counted) {
                Poll::Pending => break,
                // The survivor failed too: nothing more can reach it.
                Poll::Ready(Err(Fault::Writer(_))) => return Poll::Ready(()),
                // The watch saw the failure now (it was first found on the other direction):
                // the bytes in hand still go out.
                Poll::Ready(Err(Fault::Reader(_))) if !from_failed.read_done() => {}
                // The failed side's reads have ended: all it sent is on its way.
                Poll::Ready(_) => copying = false,
            }
        }
        let unsent = if copying { usize::MAX } else { unacknowledged(survivor) };
        if unsent == 0 {
            return Poll::Ready(());
        }
        if Pin::new(&mut tick).poll(cx).is_ready() {
            let now = (from_failed.moves, unsent);
            if now.0 != seen.0 || now.1 < seen.1 {
                stalled_since = Instant::now();
            } else if stalled_since.elapsed() >= ABORT_GRACE {
                return Poll::Ready(());
            }
            seen = now;
            tick.reset(ABORT_TICK);
            let _ = Pin::new(&mut tick).poll(cx);
        }
        Poll::Pending
    })
    .await
}

/// Bytes the socket holds that its peer has not acknowledged (0 if it cannot tell).
fn unacknowledged(socket: &TcpStream) -> usize {
    crate::sock::unacknowledged(socket.as_raw_fd()).map_or(0, |n| n as usize)
}

/// Makes closing the socket send a reset (linger 0) rather than a FIN.
pub fn reset_on_close(socket: &TcpStream) {
    if let Err(e) = with_socket(socket, |s| s.set_linger(Some(Duration::ZERO))) {
        log::debug!("cannot set a reset on close: {e}");
    }
}

/// Runs `f` on the socket as a `socket2` socket, for the options glommio does not offer.
pub fn with_socket<R>(socket: &TcpStream, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
    // SAFETY: the descriptor stays open while `socket` is borrowed, which outlasts `f`.
    let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
    f(socket2::SockRef::from(&fd))
}
