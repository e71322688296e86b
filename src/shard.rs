//! A shard: one glommio executor pinned to one CPU. It serves the servers its inbox lists, each
//! with its own `SO_REUSEPORT` listener, and never shares mutable state with other shards.

use crate::abort::{self, Connections};
use crate::connection;
use crate::udp::DrainSignal;
use betwixt_control::balance::Picker;
use betwixt_control::plane::{Inbox, Listener, ServerSlot};
use betwixt_control::spare_fd;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement, Task};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::io::FromRawFd;
use std::rc::Rc;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

/// How often a shard looks at its inbox while something there is unsettled (see `supervise`).
const INBOX_POLL: Duration = Duration::from_millis(20);

/// glommio's smallest registered-buffer area.
const IO_MEMORY: usize = 64 * 1024;

/// How long starting one shard's executor may take.
const START_WAIT: Duration = Duration::from_secs(30);

/// Pause after an accept error such as EMFILE, so a full fd table does not spin the shard.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Starts shard `id`; `splice` lets it move bulk streams through pipes (`[runtime] splice`).
/// Returns once the shard runs, or with the error that kept its executor from starting.
pub fn spawn(id: usize, cpu: Option<usize>, inbox: Arc<Inbox>, splice: bool) -> io::Result<()> {
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    let (started, running) = std::sync::mpsc::sync_channel(1);
    let shard = LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{id}"))
        // TCP never reads into glommio's registered DMA memory; the 10 MiB default per ring
        // would only pin RAM.
        .io_memory(IO_MEMORY)
        .spawn(move || {
            // glommio calls this only once the executor is built (rings, helper thread).
            let _ = started.send(());
            crate::pipes::enable(splice);
            supervise(id, inbox)
        })
        .map_err(into_io)?;
    match running.recv_timeout(START_WAIT) {
        // The shard runs for the life of the process; its thread is left detached.
        Ok(()) => Ok(()),
        // Building an executor takes milliseconds; a start that hangs is reported, not waited
        // for without end (the process exits with this error and its thread is left behind).
        Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("its executor did not start within {START_WAIT:?}"),
        )),
        // The thread ended without running: building the executor failed (a thread or
        // locked-memory limit, say), and that error is the thread's result.
        Err(RecvTimeoutError::Disconnected) => {
            Err(shard.join().err().map_or_else(|| io::Error::other("stopped at once"), into_io))
        }
    }
}

fn into_io(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// A server this shard is accepting for.
struct Serving {
    slot: Arc<ServerSlot>,
    /// The accept loop (TCP), or the task reading the server's socket, which holds every
    /// session (UDP).
    accept: Task<()>,
    /// A udp server's: how its task learns of a drain.
    udp: Option<Rc<DrainSignal>>,
    /// The listening socket's descriptor, owned by the accept task's listener.
    fd: RawFd,
    connections: Rc<Connections>,
}

impl Serving {
    /// Stops listening at once. Dropping the accept task alone is not enough: an accept still
    /// queued in io_uring keeps the socket listening until the kernel cancels it, and meanwhile
    /// new clients would be let in. `shutdown` on a listener ends that immediately.
    /// The server's live connections go on (see `Retired`).
    /// A socket handed over to a successor is not shut down: the successor accepts on it now.
    /// Dropping the accept task is then enough, as it waits only for readiness (`accept4` runs
    /// when the socket is readable), so no connection is taken and lost.
    /// A udp server whose sessions may finish keeps its task, which serves them and opens no
    /// new one (`udp::serve`), until they end or the slot is aborted.
    fn stop(self) -> Retired {
        let drain = self.udp.filter(|_| self.slot.sessions_may_finish() && !self.slot.is_handed_over());
        if !self.slot.is_handed_over() && drain.is_none() {
            // SAFETY: the descriptor stays open until `self.accept` is dropped below.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
        let sessions = drain.map(|drain| {
            drain.start();
            self.accept
        });
        Retired { slot: self.slot, connections: self.connections, sessions }
    }
}

/// A server this shard no longer accepts for, while connections it accepted are open: they
/// are closed together when the control thread aborts the slot.
struct Retired {
    slot: Arc<ServerSlot>,
    connections: Rc<Connections>,
    /// A udp server's task while its sessions finish (dropping it ends them).
    sessions: Option<Task<()>>,
}

impl Retired {
    /// Carries out an abort; false once nothing is left to watch (aborted, or no connection
    /// or session).
    fn watch(&self) -> bool {
        if self.slot.is_aborted() {
            self.connections.abort();
            return false;
        }
        match self.sessions {
            // The task lets go of the socket when it ends.
            Some(_) => self.slot.holds_socket(),
            None => Connections::in_use(&self.connections),
        }
    }
}

/// Keeps the running accept loops in line with the inbox.
async fn supervise(id: usize, inbox: Arc<Inbox>) {
    let mut running: Vec<Serving> = Vec::new();
    let mut retired: Vec<Retired> = Vec::new();
    // Slots of servers that do not know their backends yet (see `ServerSlot::is_ready`).
    let mut waiting: Vec<Arc<ServerSlot>> = Vec::new();
    let mut seen = 0;
    loop {
        // What the last round applied is in effect now: this shard has slept since, so the
        // connections accepted before a listener stopped have run their first step (where they
        // count themselves active). Shutdown waits for this before it trusts the counts.
        inbox.acknowledge(seen);
        // Answered before the generation is read: a change made from here on rings again.
        if let Some(doorbell) = inbox.doorbell() {
            doorbell.answer();
        }
        let generation = inbox.generation();
        let changed = generation != seen;
        if changed {
            seen = generation;
            let wanted = inbox.servers();
            // Connections already accepted are separate tasks: they run on until they end or
            // their slot is aborted.
            let (keep, stop): (Vec<Serving>, Vec<Serving>) = running
                .into_iter()
                .partition(|s| wanted.iter().any(|w| Arc::ptr_eq(w, &s.slot)) && !s.slot.is_closed());
            retired.extend(stop.into_iter().map(Serving::stop));
            running = keep;
            waiting =
                wanted.into_iter().filter(|w| !running.iter().any(|s| Arc::ptr_eq(&s.slot, w))).collect();
        }
        // Until a server's first discovery round is in, its clients wait in the listen queue
        // rather than being accepted and closed for want of a backend (a server just added, or
        // a successor taking over from a predecessor that is still serving them).
        let (ready, not_yet): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|slot| slot.is_ready());
        waiting = not_yet;
        running.extend(ready.into_iter().filter_map(|slot| serve(id, slot)));
        retired.retain(Retired::watch);
        // With nothing left to settle, the shard sleeps until the control thread rings. A change
        // just applied is acknowledged one pass later (see above), and a slot not ready yet or
        // a removed server's connections (which the control thread may abort) are looked at
        // again on the timer: neither rings the doorbell.
        match inbox.doorbell() {
            Some(doorbell) if !changed && waiting.is_empty() && retired.is_empty() => {
                if let Err(e) = glommio::net::readable(doorbell.fd()).await {
                    log::warn!("shard {id}: cannot wait for its inbox ({e}): polling it");
                    glommio::timer::sleep(INBOX_POLL).await;
                }
            }
            _ => glommio::timer::sleep(INBOX_POLL).await,
        }
    }
}

/// Starts accepting (TCP) or receiving (UDP) on the slot's listener.
fn serve(id: usize, slot: Arc<ServerSlot>) -> Option<Serving> {
    let Some(listener) = slot.take_listener() else {
        if !slot.is_closed() {
            log::error!("shard {id}: server {} has no listener", slot.name);
        }
        return None;
    };
    let nonblocking = match &listener {
        Listener::Tcp(listener) => listener.set_nonblocking(true),
        Listener::Udp(socket) => socket.set_nonblocking(true),
    };
    if let Err(e) = nonblocking {
        log::error!("shard {id}: server {}: {e}", slot.name);
        return None;
    }
    let connections = Rc::new(Connections::default());
    match listener {
        Listener::Tcp(listener) => {
            let fd = listener.into_raw_fd();
            // SAFETY: the fd comes from a bound, listening socket we own.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            let accept =
                glommio::spawn_local(accept_loop(id, slot.clone(), listener, fd, connections.clone()));
            Some(Serving { slot, accept, udp: None, fd, connections })
        }
        Listener::Udp(socket) => {
            let fd = socket.as_raw_fd();
            // UDP sessions live inside the serve task and end with it: a removed server's
            // sessions close at once (as in gobetween), unless it is drained (see `stop`).
            let drain = Rc::new(DrainSignal::default());
            let serve = glommio::spawn_local(crate::udp::serve(id, slot.clone(), socket, drain.clone()));
            Some(Serving { slot, accept: serve, udp: Some(drain), fd, connections })
        }
    }
}

async fn accept_loop(
    shard: usize,
    slot: Arc<ServerSlot>,
    listener: TcpListener,
    listener_fd: RawFd,
    connections: Rc<Connections>,
) {
    let picker = Rc::new(RefCell::new(Picker::new(shard)));
    spare_fd::keep();
    loop {
        // The peer address comes with the accepted socket (no `getpeername`); access rules,
        // client-IP balancing and logs need it. A dual-stack listener sees an IPv4 client as
        // `::ffff:a.b.c.d`: from here on it is its IPv4 address, as gobetween (Go) prints it.
        match listener.accept_with_peer().await {
            Ok((client, peer)) => {
                let peer = betwixt_control::balance::canonical_addr(peer);
                let snapshot = slot.snapshot();
                let connection = connection::handle(shard, snapshot, picker.clone(), client, peer);
                // Boxed: glommio moves a spawned future by value through several calls before it
                // reaches the task's allocation, a copy of the whole connection (1 KiB) each; a
                // box moves as a pointer. About 550 instructions less per connection.
                glommio::spawn_local(Box::pin(abort::until_aborted(connections.clone(), connection)))
                    .detach();
            }
            Err(e) => {
                let e = io::Error::from(e);
                // Out of descriptors, clients that wait in the queue are refused rather than
                // left hanging there (see spare_fd).
                let refused = spare_fd::refuse_if_exhausted(&e, listener_fd);
                // EMFILE and the like repeat every backoff for as long as they last.
                betwixt_control::log_limited!(
                    log::Level::Warn,
                    "shard {shard}: server {}: accept failed: {e}{refused}",
                    slot.name
                );
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
