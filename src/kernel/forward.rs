//! One connection under kernel forwarding: attaching its two sockets to the socket maps, then
//! doing what the kernel does not do by itself: passing an end of stream on once every byte
//! before it is on its way, taking a direction over when the program passes its bytes to
//! betwixt (its receiver fell behind: see `program`), faults, idle timeouts, byte counts.
//!
//! A direction (reader socket `i`, writer `1 - i`) goes through phases:
//!  - `Kernel`: the program redirects; betwixt only watches the reader for an end of stream
//!    or a fault, and at its looks (see `next_look`) whether the program has begun to pass
//!    the direction's bytes to it (its receiver fell behind);
//!  - `Settle`: the kernel hands redirected bytes to the writer from a work queue, after the
//!    verdict; betwixt waits until the writer has queued every byte redirected to it (bytes
//!    redirected, counted by the program, against bytes queued on the writer since the attach:
//!    acknowledged + in the send queue), looking again after a short, growing pause;
//!  - `Copy`: betwixt reads the reader (the passed bytes, in order) and writes the writer
//!    itself, until the end of stream, which it then passes on;
//!  - `Done`.
//!
//! A socket is removed from the maps only once both directions are through, or on a fault:
//! removal drops what its queue still holds.

use super::program::{self, StateValue, MODE_CONDEMNED, MODE_PASS};
use super::{bpf, Kernel};
use crate::sock;
use crate::transfer::{reset_on_close, End, Ending, Meters, Side};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

/// How often, at the most and the least, betwixt looks at the connection: adds its counts to
/// the shared counters (so rates move), looks at sockets no poll watches for a reset, and at
/// the program's state for a direction it passes to betwixt or a condemned connection. Busy
/// connections are looked at more often (see `next_look`).
const LOOK_MOST: Duration = Duration::from_secs(1);
const LOOK_LEAST: Duration = Duration::from_millis(20);

/// First and longest pause between looks while a direction waits for the kernel's queue.
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
    /// Bytes of each direction the kernel moved that were already added to the shared counters.
    counted: [u64; 2],
    /// Bytes of each direction betwixt wrote itself, after taking it over.
    written: [u64; 2],
}

/// Adds the client's and the backend's sockets to the maps: their state first, then to
/// `peers` each under the other's cookie, then to `watched`, from when on the program handles
/// their chunks.
fn attach(kernel: &'static Kernel, client: RawFd, backend: RawFd) -> io::Result<Link> {
    let fds = [client, backend];
    let cookies = [sock::cookie(client)?, sock::cookie(backend)?];
    // Before the insert, while nothing but betwixt has written to them.
    let base = [sock::queued(client)?.total(), sock::queued(backend)?.total()];
    // Dropping `link` on an error below removes whatever was added; nothing was redirected
    // before the last insert but the one that failed, so nothing is lost.
    let link = Link { kernel, fds, cookies, base, counted: [0; 2], written: [0; 2] };
    for i in 0..2 {
        let state = StateValue {
            base_self: base[i],
            base_peer: base[1 - i],
            peer: cookies[1 - i],
            ..Default::default()
        };
        bpf::update(kernel.state(), cookies[i], &state)?;
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
    /// What the program counted and decided for direction `i`.
    fn state(&self, i: usize) -> StateValue {
        bpf::lookup(self.kernel.state(), self.cookies[i]).unwrap_or_default()
    }

    /// Bytes queued on the writer of direction `i` since the attach, and how many of all it
    /// holds still wait for its peer's acknowledgement.
    fn delivered(&self, i: usize) -> io::Result<(u64, u64)> {
        let w = 1 - i;
        let queued = sock::queued(self.fds[w])?;
        Ok((queued.total().saturating_sub(self.base[w]), queued.unacknowledged))
    }

    /// Bytes of direction `i` the writer must have queued: what the kernel redirected and
    /// what betwixt wrote.
    fn expected(&self, i: usize) -> u64 {
        self.state(i).handed + self.written[i]
    }

    /// Whether every byte of direction `i` handed on so far is queued on its writer; with the
    /// delivered count, to see progress.
    fn settled(&self, i: usize) -> io::Result<(bool, u64)> {
        // Takes the reader's lock: any segment being processed, and all before it, have been
        // through the program when this returns.
        sock::tcp_info(self.fds[i])?;
        let expected = self.expected(i);
        let (delivered, _) = self.delivered(i)?;
        Ok((delivered >= expected, delivered))
    }

    /// Adds what the kernel moved since the last call to the server's, backend's and
    /// connection's counts; returns the directions' states and the most either moved.
    fn count(&mut self, meters: &Meters<'_>) -> ([StateValue; 2], u64) {
        let states = [self.state(0), self.state(1)];
        let mut most = 0;
        for (i, state) in states.iter().enumerate() {
            let new = state.handed.saturating_sub(self.counted[i]);
            if new > 0 {
                self.counted[i] = state.handed;
                add(meters, i, new);
            }
            most = most.max(new);
        }
        (states, most)
    }
}

/// Adds `n` bytes of direction `i` to the counts.
fn add(meters: &Meters<'_>, i: usize, n: u64) {
    for counter in meters.bytes(i == 0) {
        betwixt_control::stats::Slot::add(counter, n);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The program first, then the peers and states it looks up (a delete of what was never
        // added fails harmlessly).
        for map in [self.kernel.watched(), self.kernel.peers(), self.kernel.state()] {
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
    ending: Ending,
) -> Option<End> {
    match take_early(client, backend, meters).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(end) => return Some(end),
    }
    let link = match attach(kernel, client.as_raw_fd(), backend.as_raw_fd()) {
        Ok(link) => {
            log::debug!("kernel forwarding: connection attached");
            link
        }
        Err(e) => {
            refused(&e);
            return None;
        }
    };
    Some(watch(link, client, backend, meters, ending).await)
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
        add(meters, 0, n as u64);
        // A short read emptied the queue (a TCP read takes all there is, up to its size).
        if n < buffer.len() {
            return Ok(true);
        }
    }
}

/// Where a direction is (see the module's comment).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Kernel,
    Settle,
    Copy,
    Done,
}

/// One direction's state.
struct Way {
    phase: Phase,
    /// While settling: the next look, the pause after it, and the last progress.
    settle_at: Option<Instant>,
    pause: Duration,
    delivered: u64,
    moved_at: Instant,
    /// The next idle check.
    idle_at: Option<Instant>,
    /// In `Copy`: the buffer, bytes read since the take-over, what is read and not yet written
    /// (`buffer[start..end]`), and, after an end of stream that came before every passed byte
    /// was readable, when to read again.
    buffer: Option<Box<[u8]>>,
    read: u64,
    start: usize,
    end: usize,
    reread_at: Option<Instant>,
    /// In `Copy`: the reader's hang-up poll, armed while a write waits, fired without a fault
    /// (its FIN): armed again it would fire at once, so it is not.
    hangup_seen: bool,
}

impl Way {
    fn new(start: Instant, idle: Option<Duration>) -> Way {
        Way {
            phase: Phase::Kernel,
            settle_at: None,
            pause: SETTLE_FIRST,
            delivered: 0,
            moved_at: start,
            idle_at: idle.map(|limit| start + limit),
            buffer: None,
            read: 0,
            start: 0,
            end: 0,
            reread_at: None,
            hangup_seen: false,
        }
    }

    fn settle_from(&mut self, now: Instant) {
        self.phase = Phase::Settle;
        self.settle_at = Some(now);
        self.pause = SETTLE_FIRST;
        self.moved_at = now;
    }

    /// When to look again at something that has not happened yet: after the current pause,
    /// which doubles each time up to `SETTLE_MOST`.
    fn back_off(&mut self, now: Instant) -> Instant {
        let at = now + self.pause;
        self.pause = (self.pause * 2).min(SETTLE_MOST);
        at
    }

    /// The times this direction wants to be woken at.
    fn deadlines(&self) -> [Option<Instant>; 3] {
        [self.settle_at, self.idle_at, self.reread_at]
    }
}

/// What woke the watch.
enum Event {
    /// The reader's hang-up poll (`Kernel` phase, or `Copy` while a write waits) fired with
    /// these events.
    Watch(usize, io::Result<u32>),
    /// A read from the reader (`Copy` phase): bytes, 0 at the end of stream.
    Read(usize, io::Result<usize>),
    /// A write to the writer (`Copy` phase).
    Wrote(usize, io::Result<usize>),
    Timer,
}

async fn watch(
    mut link: Link,
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: &Meters<'_>,
    ending: Ending,
) -> End {
    let idle = ending.idle;
    let start = Instant::now();
    let mut ways = [Way::new(start, idle[0]), Way::new(start, idle[1])];
    // The first look soon: a connection busy from its attach (a large reply on its way) shows
    // its pace there.
    let (mut looked_at, mut look_at) = (start, start + LOOK_LEAST);
    let mut timer = Timer::new(LOOK_LEAST);
    let end = 'watch: loop {
        let event = {
            let streams = [&mut *client, &mut *backend];
            next_event(streams, &mut ways, &mut timer).await
        };
        let now = Instant::now();
        match event {
            Event::Watch(i, events) => {
                let fault = match events {
                    Err(e) => Some(e),
                    Ok(events) if events & libc::POLLERR as u32 != 0 => sock::take_error(link.fds[i]),
                    Ok(_) => None,
                };
                if let Some(e) = fault {
                    break fail(&link, i, e, [&*client, &*backend]).await;
                }
                match ways[i].phase {
                    // Its end of stream: the reads that follow the pending write will see it.
                    Phase::Copy => ways[i].hangup_seen = true,
                    _ => ways[i].settle_from(now),
                }
            }
            Event::Read(i, Err(e)) => break fail(&link, i, e, [&*client, &*backend]).await,
            Event::Read(i, Ok(0)) => {
                let way = &mut ways[i];
                // Passed bytes the kernel has not yet put where a read finds them (they wait
                // behind the other direction's queue): not the end yet; read again shortly.
                if link.state(i).passed > way.read {
                    way.reread_at = Some(way.back_off(now));
                } else {
                    way.phase = Phase::Done;
                    way.idle_at = None;
                    // Every byte before the end of stream is queued on the other socket (as
                    // `pass_end_on` needs): closing both sends it and then the FIN.
                    if !ending.half_close {
                        break End::Done;
                    }
                    if let Err(e) = pass_end_on(&link, &ways, i) {
                        break End::Failed(Side::of(1 - i), e);
                    }
                }
            }
            Event::Read(i, Ok(n)) => {
                let way = &mut ways[i];
                (way.start, way.end) = (0, n);
                way.read += n as u64;
            }
            Event::Wrote(i, Err(e)) => break fail(&link, 1 - i, e, [&*client, &*backend]).await,
            Event::Wrote(i, Ok(n)) => {
                ways[i].start += n;
                link.written[i] += n as u64;
                add(meters, i, n as u64);
            }
            Event::Timer => {}
        }
        for way in &mut ways {
            if way.reread_at.is_some_and(|at| now >= at) {
                way.reread_at = None;
            }
        }
        if let Some(end) = settle(&link, &mut ways, now) {
            break end;
        }
        if ways.iter().all(|w| w.phase == Phase::Done) {
            break End::Done;
        }
        if now >= look_at {
            let (states, moved) = link.count(meters);
            look_at = now + next_look(moved, now.saturating_duration_since(looked_at));
            looked_at = now;
            if let Some(i) = (0..2).find(|&i| states[i].mode == MODE_CONDEMNED) {
                break condemned(i, [&*client, &*backend]);
            }
            // The program passes a direction's bytes to betwixt once its receiver fell behind.
            // Seen here (meanwhile TCP holds the sender): a poll for input would wake the
            // shard for every chunk the program redirects.
            for i in 0..2 {
                if ways[i].phase == Phase::Kernel && states[i].mode == MODE_PASS {
                    betwixt_control::log_limited!(
                        log::Level::Info,
                        "kernel forwarding: a receiver fell 1 MiB behind; betwixt carries the {:?}'s bytes of that connection",
                        Side::of(i)
                    );
                    log::debug!("kernel forwarding: hand-over at {:?}", states[i]);
                    ways[i].settle_from(now);
                }
            }
            // A reader no poll or read watches shows a reset, or a failure of the kernel's
            // sends to it, here.
            for (i, way) in ways.iter().enumerate() {
                if matches!(way.phase, Phase::Settle | Phase::Done) {
                    if let Some(e) = sock::take_error(link.fds[i]) {
                        break 'watch fail(&link, i, e, [&*client, &*backend]).await;
                    }
                }
            }
        }
        if let Some(i) = idle_expired(&link, &mut ways, idle, now) {
            break End::Idle(Side::of(i));
        }
        let next = ways.iter().flat_map(Way::deadlines).flatten().fold(look_at, Instant::min);
        timer.reset(next.saturating_duration_since(now));
    };
    link.count(meters);
    for way in &mut ways {
        if let Some(buffer) = way.buffer.take() {
            crate::buffers::give_back(buffer);
        }
    }
    end
}

/// Waits for the next thing to do: a reader's poll, a read, a write, or the timer.
async fn next_event(mut streams: [&mut TcpStream; 2], ways: &mut [Way; 2], timer: &mut Timer) -> Event {
    poll_fn(|cx| {
        for i in 0..2 {
            let way = &mut ways[i];
            match way.phase {
                Phase::Kernel => {
                    if let Poll::Ready(r) = streams[i].poll_hangup(cx) {
                        return Poll::Ready(Event::Watch(i, r));
                    }
                }
                Phase::Copy => {
                    let Some(buffer) = way.buffer.as_deref_mut() else { continue };
                    if way.start < way.end {
                        let pending = &buffer[way.start..way.end];
                        let wrote = streams[1 - i]
                            .poll_write_with(cx, |fd| sock::send_now(fd, pending, false).transpose());
                        if let Poll::Ready(r) = wrote {
                            return Poll::Ready(Event::Wrote(i, r));
                        }
                        // Not reading while the writer is full: a reset of the reader shows
                        // only through a hang-up poll.
                        if !way.hangup_seen {
                            if let Poll::Ready(r) = streams[i].poll_hangup(cx) {
                                return Poll::Ready(Event::Watch(i, r));
                            }
                        }
                    } else if way.reread_at.is_none() {
                        let len = buffer.len();
                        let read =
                            streams[i].poll_read_with(cx, len, |fd| sock::read_now(fd, buffer).transpose());
                        if let Poll::Ready(r) = read {
                            return Poll::Ready(Event::Read(i, r));
                        }
                    }
                }
                _ => {}
            }
        }
        if Pin::new(&mut *timer).poll(cx).is_ready() {
            return Poll::Ready(Event::Timer);
        }
        Poll::Pending
    })
    .await
}

/// When to look again, after a direction moved `moved` bytes in `elapsed`: before, at that
/// rate, it could fill the program's credit, so that a direction the program passes to
/// betwixt waits for the look about as long as it took to fall that far behind (at least
/// `LOOK_LEAST`, at most `LOOK_MOST`). A look is two map lookups.
fn next_look(moved: u64, elapsed: Duration) -> Duration {
    if moved == 0 {
        return LOOK_MOST;
    }
    let filled_in = elapsed.mul_f64(program::CREDIT as f64 / moved as f64);
    filled_in.clamp(LOOK_LEAST, LOOK_MOST)
}

/// Moves each settling direction on to `Copy` once every byte the kernel handed on is queued
/// on its writer. `Some` when the writer failed.
fn settle(link: &Link, ways: &mut [Way; 2], now: Instant) -> Option<End> {
    for (i, way) in ways.iter_mut().enumerate() {
        let Some(at) = way.settle_at else { continue };
        if now < at {
            continue;
        }
        let (done, delivered) = match link.settled(i) {
            Ok(state) => state,
            Err(e) => return Some(End::Failed(Side::of(1 - i), e)),
        };
        if delivered != way.delivered {
            (way.delivered, way.moved_at) = (delivered, now);
        }
        if !done {
            way.settle_at = Some(way.back_off(now));
            continue;
        }
        way.phase = Phase::Copy;
        way.settle_at = None;
        way.pause = SETTLE_FIRST;
        way.buffer = Some(crate::buffers::take());
    }
    None
}

/// Direction `i` reached its end of stream with everything written: shuts the writer's
/// sending side, unless the other direction is done too (closing then sends each its FIN).
fn pass_end_on(link: &Link, ways: &[Way; 2], i: usize) -> io::Result<()> {
    if ways[1 - i].phase == Phase::Done {
        return Ok(());
    }
    // SAFETY: plain shutdown of a socket this connection owns.
    if unsafe { libc::shutdown(link.fds[1 - i], libc::SHUT_WR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The program condemned the connection (direction `i`'s receiver, and the other's, stopped
/// reading while both kept sending, past what the kernel may hold): it has been dropping
/// bytes, so both sides are reset.
fn condemned(i: usize, sockets: [&TcpStream; 2]) -> End {
    for socket in sockets {
        reset_on_close(socket);
    }
    betwixt_control::log_limited!(
        log::Level::Warn,
        "kernel forwarding: both sides of a connection stopped reading while sending; reset"
    );
    let e = io::Error::new(io::ErrorKind::OutOfMemory, "both sides stopped reading while sending");
    End::Failed(Side::of(i), e)
}

/// The idle timeouts: a direction is idle when its reader has received nothing for its limit
/// (and, while it settles, when its writer has taken nothing for it).
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
        let quiet = if ways[i].phase == Phase::Settle {
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
/// long as it keeps taking bytes, then has it reset on close. (Bytes betwixt had read and not
/// yet written are not sent: the connection is ending in an abort either way.)
async fn fail(link: &Link, failed: usize, e: io::Error, sockets: [&TcpStream; 2]) -> End {
    let survivor = 1 - failed;
    let mut seen = u64::MAX;
    let mut moved_at = Instant::now();
    loop {
        let expected = link.expected(failed);
        // The survivor is the failed direction's writer.
        let Ok((delivered, unacked)) = link.delivered(failed) else { break };
        if delivered >= expected && unacked == 0 {
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
    End::Failed(Side::of(failed), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_connections_are_looked_at_before_they_can_fill_the_credit() {
        let second = Duration::from_secs(1);
        let mib = 1 << 20;
        assert_eq!(next_look(0, second), LOOK_MOST);
        assert_eq!(next_look(mib / 2, second), LOOK_MOST);
        assert_eq!(next_look(10 * mib, second), Duration::from_millis(100));
        assert_eq!(next_look(4 * mib, Duration::from_millis(100)), Duration::from_millis(25));
        assert_eq!(next_look(1000 * mib, second), LOOK_LEAST);
    }
}
