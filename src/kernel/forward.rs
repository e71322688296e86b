//! One connection under kernel forwarding: attaching its two sockets to the socket maps, then
//! watching for what the kernel does not do by itself: passing an end of stream on once every
//! byte before it is on its way, faults, idle timeouts, byte counts.
//!
//! Half-close: the kernel hands redirected bytes to the peer socket from a work queue, after
//! the verdict. When a side's FIN arrives, betwixt shuts the peer's sending side down only once
//! the peer has queued every byte redirected to it: bytes redirected (the counter map, summed
//! by the program) against bytes queued on the peer since the attach (acknowledged + in the
//! send queue). Until then it looks again after a short, growing pause. A socket is removed
//! from the map only once both directions are through, or on a fault: removal drops what its
//! queue still holds.

use super::{bpf, sock, Kernel};
use crate::transfer::{reset_on_close, End, Meters, Side};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

/// How often the connection's counts are added to the shared counters (so rates move), and
/// sockets that already sent their FIN are looked at for a reset.
const TICK: Duration = Duration::from_secs(1);

/// First and longest pause between looks while an end of stream waits for its bytes.
const SETTLE_FIRST: Duration = Duration::from_millis(1);
const SETTLE_MOST: Duration = Duration::from_millis(50);

/// After a fault: how long the survivor may take nothing before it is reset without the rest
/// (as `transfer`'s abort grace).
const ABORT_GRACE: Duration = Duration::from_millis(500);
const ABORT_TICK: Duration = Duration::from_millis(5);

/// The two sockets of a connection in the socket maps. Index 0 is the client, 1 the backend;
/// direction `i` reads socket `i` and writes socket `1 - i`. Dropping it removes the entries.
pub struct Link {
    kernel: &'static Kernel,
    fds: [RawFd; 2],
    cookies: [u64; 2],
    /// Bytes queued for sending on each socket before the attach (PROXY header, early bytes).
    base: [u64; 2],
    /// Bytes of each direction already added to the shared counters.
    counted: [u64; 2],
}

/// Adds the client's and the backend's sockets to the maps: to `peers` each under the other's
/// cookie first, then to `watched`, from when on the program redirects their chunks.
fn attach(kernel: &'static Kernel, client: RawFd, backend: RawFd) -> io::Result<Link> {
    let fds = [client, backend];
    let cookies = [sock::cookie(client)?, sock::cookie(backend)?];
    // Before the insert, while nothing but betwixt has written to them.
    let base = [sock::queued_total(client)?, sock::queued_total(backend)?];
    // Dropping `link` on an error below removes whatever was added; nothing was redirected
    // before the last insert but the one that failed, so nothing is lost.
    let link = Link { kernel, fds, cookies, base, counted: [0; 2] };
    for cookie in cookies {
        bpf::update(kernel.counters(), cookie, &0u64)?;
    }
    bpf::update(kernel.peers(), cookies[0], &(backend as u32))?;
    bpf::update(kernel.peers(), cookies[1], &(client as u32))?;
    bpf::update(kernel.watched(), cookies[0], &(client as u32))?;
    bpf::update(kernel.watched(), cookies[1], &(backend as u32))?;
    for fd in fds {
        sock::kick_receive_queue(fd)?;
    }
    Ok(link)
}

impl Link {
    /// Bytes the program redirected from socket `i`.
    fn handed(&self, i: usize) -> u64 {
        bpf::lookup_u64(self.kernel.counters(), self.cookies[i]).unwrap_or(0)
    }

    /// Bytes queued on the writer of direction `i` since the attach.
    fn delivered(&self, i: usize) -> io::Result<u64> {
        let w = 1 - i;
        Ok(sock::queued_total(self.fds[w])?.saturating_sub(self.base[w]))
    }

    /// Whether every byte socket `i` sent before its FIN is queued on its peer; with the
    /// delivered count, to see progress.
    fn settled(&self, i: usize) -> io::Result<(bool, u64)> {
        // Takes the reader's lock: the segment that carried the FIN, and all before it, have
        // been through the program when this returns.
        sock::tcp_info(self.fds[i])?;
        let handed = self.handed(i);
        let delivered = self.delivered(i)?;
        Ok((delivered >= handed, delivered))
    }

    /// Adds what moved since the last call to the server's, backend's and connection's counts.
    fn count(&mut self, meters: &Meters<'_>) {
        for i in 0..2 {
            let total = self.handed(i);
            let new = total.saturating_sub(self.counted[i]);
            if new > 0 {
                self.counted[i] = total;
                for counter in meters.bytes(i == 0) {
                    betwixt_control::stats::Slot::add(counter, new);
                }
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The program first, then the peers it looks up (a delete of what was never added
        // fails harmlessly).
        for map in [self.kernel.watched(), self.kernel.peers(), self.kernel.counters()] {
            for cookie in self.cookies {
                let _ = bpf::delete(map, cookie);
            }
        }
    }
}

/// Runs a connection under kernel forwarding until it ends, as `transfer::bidirectional`
/// would. `None` when it cannot be attached (the kernel refused, or the client already sent
/// its end of stream): the caller forwards in user space, nothing having been lost.
pub async fn forward(
    kernel: &'static Kernel,
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: &Meters<'_>,
    idle: [Option<Duration>; 2],
) -> Option<End> {
    match take_early(client, backend, meters).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(end) => return Some(end),
    }
    let link = match attach(kernel, client.as_raw_fd(), backend.as_raw_fd()) {
        Ok(link) => link,
        Err(e) => {
            refused(&e);
            return None;
        }
    };
    Some(watch(link, client, backend, meters, idle).await)
}

/// Says why a connection is forwarded in user space: a kernel limit is worth a warning
/// (limited), a client that closed early is not.
fn refused(e: &io::Error) {
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOTCONN) | Some(libc::EBADF) => {
            log::debug!("kernel forwarding not possible for this connection ({e}): user space")
        }
        _ => betwixt_control::log_limited!(
            log::Level::Warn,
            "kernel forwarding refused ({e}); this connection is forwarded in user space"
        ),
    }
}

/// Passes on what the client sent that is already in its socket, read in whole until its
/// receive queue is empty: the program must see only bytes nobody has read any part of.
/// False when the client's end of stream came with it (user space carries on from there).
async fn take_early(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: &Meters<'_>,
) -> Result<bool, End> {
    // A pooled buffer: usually a single read finds nothing, and no memory is allocated for it.
    let mut buffer = crate::buffers::take();
    let taken = pass_on_queued(client, backend, meters, &mut buffer).await;
    crate::buffers::give_back(buffer);
    taken
}

async fn pass_on_queued(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: &Meters<'_>,
    buffer: &mut [u8],
) -> Result<bool, End> {
    use futures_lite::AsyncWriteExt;
    loop {
        let n = match sock::read_now(client.as_raw_fd(), buffer) {
            Ok(None) => return Ok(true),
            Ok(Some(0)) => return Ok(false),
            Ok(Some(n)) => n,
            Err(e) => return Err(End::Failed(Side::Client, e)),
        };
        backend.write_all(&buffer[..n]).await.map_err(|e| End::Failed(Side::Backend, e))?;
        for counter in meters.bytes(true) {
            betwixt_control::stats::Slot::add(counter, n as u64);
        }
        // A short read emptied the queue (a TCP read takes all there is, up to its size).
        if n < buffer.len() {
            return Ok(true);
        }
    }
}

/// One direction's state.
#[derive(Clone, Copy)]
struct Way {
    /// The reader's FIN (or hang-up) was seen: its watch has fired and is not armed again.
    ended: bool,
    /// Every byte up to the FIN is queued on the writer.
    finished: bool,
    /// While `ended` and not `finished`: next look, the pause after it, and the last progress.
    settle_at: Option<Instant>,
    pause: Duration,
    delivered: u64,
    moved_at: Instant,
    /// The next idle check.
    idle_at: Option<Instant>,
}

async fn watch(
    mut link: Link,
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: &Meters<'_>,
    idle: [Option<Duration>; 2],
) -> End {
    let start = Instant::now();
    let mut ways = [0, 1].map(|i| Way {
        ended: false,
        finished: false,
        settle_at: None,
        pause: SETTLE_FIRST,
        delivered: 0,
        moved_at: start,
        idle_at: idle[i].map(|limit| start + limit),
    });
    let mut tick_at = start + TICK;
    let mut timer = Timer::new(TICK);
    let end = loop {
        let event = poll_fn(|cx| {
            if !ways[0].ended {
                if let Poll::Ready(r) = client.poll_hangup(cx) {
                    return Poll::Ready(Some((0, r)));
                }
            }
            if !ways[1].ended {
                if let Poll::Ready(r) = backend.poll_hangup(cx) {
                    return Poll::Ready(Some((1, r)));
                }
            }
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        if let Some((i, events)) = event {
            ways[i].ended = true;
            let fault = match events {
                Err(e) => Some(e),
                Ok(events) if events & libc::POLLERR as u32 != 0 => sock::take_error(link.fds[i]),
                Ok(_) => None,
            };
            if let Some(e) = fault {
                break fail(&link, i, e, [&*client, &*backend]).await;
            }
            ways[i].settle_at = Some(Instant::now());
        }
        let now = Instant::now();
        if let Some(end) = settle(&link, &mut ways, now) {
            break end;
        }
        if ways.iter().all(|w| w.finished) {
            break End::Done;
        }
        if now >= tick_at {
            tick_at = now + TICK;
            link.count(meters);
            // A side that sent its FIN is no longer watched by a poll; a reset after it, or a
            // failure of the kernel's sends to it, shows here.
            let failed =
                (0..2).filter(|&i| ways[i].ended).find_map(|i| Some((i, sock::take_error(link.fds[i])?)));
            if let Some((i, e)) = failed {
                break fail(&link, i, e, [&*client, &*backend]).await;
            }
        }
        if let Some(i) = idle_expired(&link, &mut ways, idle, now) {
            break End::Idle([Side::Client, Side::Backend][i]);
        }
        let next = ways.iter().flat_map(|w| [w.settle_at, w.idle_at]).flatten().fold(tick_at, Instant::min);
        timer.reset(next.saturating_duration_since(now));
    };
    link.count(meters);
    end
}

/// Passes each ended direction's end of stream on once its bytes are all queued on the
/// writer. `Some` when the writer failed.
fn settle(link: &Link, ways: &mut [Way; 2], now: Instant) -> Option<End> {
    for i in 0..2 {
        let way = &mut ways[i];
        let Some(at) = way.settle_at else { continue };
        if now < at {
            continue;
        }
        let (done, delivered) = match link.settled(i) {
            Ok(state) => state,
            Err(e) => return Some(End::Failed([Side::Backend, Side::Client][i], e)),
        };
        if delivered != way.delivered {
            (way.delivered, way.moved_at) = (delivered, now);
        }
        if !done {
            way.settle_at = Some(now + way.pause);
            way.pause = (way.pause * 2).min(SETTLE_MOST);
            continue;
        }
        way.finished = true;
        way.settle_at = None;
        way.idle_at = None;
        // The other direction still runs: pass the end of stream on. When both have ended,
        // closing the sockets sends each its FIN.
        if !ways[1 - i].finished {
            // SAFETY: plain shutdown of a socket this connection owns.
            if unsafe { libc::shutdown(link.fds[1 - i], libc::SHUT_WR) } != 0 {
                let e = io::Error::last_os_error();
                return Some(End::Failed([Side::Backend, Side::Client][i], e));
            }
        }
    }
    None
}

/// The idle timeouts: a direction is idle when its reader has received nothing for its limit
/// (and, once its FIN is in, when its writer has taken nothing for it).
fn idle_expired(
    link: &Link,
    ways: &mut [Way; 2],
    idle: [Option<Duration>; 2],
    now: Instant,
) -> Option<usize> {
    for i in 0..2 {
        let (Some(limit), Some(at)) = (idle[i], ways[i].idle_at) else { continue };
        if now < at {
            continue;
        }
        let quiet = if ways[i].ended {
            now.saturating_duration_since(ways[i].moved_at)
        } else {
            match sock::tcp_info(link.fds[i]) {
                Ok(info) => Duration::from_millis(info.last_data_recv.into()),
                Err(_) => limit,
            }
        };
        if quiet >= limit {
            return Some(i);
        }
        ways[i].idle_at = Some(now + (limit - quiet));
    }
    None
}

/// Socket `failed` reported `e`: gives the survivor what the failed side sent before, for as
/// long as it keeps taking bytes, then has it reset on close.
async fn fail(link: &Link, failed: usize, e: io::Error, sockets: [&TcpStream; 2]) -> End {
    let survivor = 1 - failed;
    let mut seen = u64::MAX;
    let mut moved_at = Instant::now();
    loop {
        let handed = link.handed(failed);
        let Ok(delivered) = link.delivered(failed) else { break };
        let unacked = sock::unacknowledged(link.fds[survivor]).unwrap_or(0);
        if delivered >= handed && unacked == 0 {
            break;
        }
        if delivered + unacked != seen {
            (seen, moved_at) = (delivered + unacked, Instant::now());
        } else if moved_at.elapsed() >= ABORT_GRACE {
            break;
        }
        glommio::timer::sleep(ABORT_TICK).await;
    }
    reset_on_close(sockets[survivor]);
    End::Failed([Side::Client, Side::Backend][failed], e)
}
