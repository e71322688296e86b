//! The hand-off between the control thread and the shards.
//!
//! Every shard has an `Inbox`; for every server it runs, it has its own `ServerSlot` holding the
//! listener the control thread bound for it and the current snapshot. The control thread is the
//! only writer: it swaps snapshots in (`publish`) and bumps the inbox generation when the set of
//! servers changes, and rings the shard's doorbell. A shard reads its slot's snapshot once per
//! accepted connection and looks at the inbox only when the generation moves, so the hot path
//! never takes a lock.

use crate::doorbell::Doorbell;
use crate::snapshot::ServerSnapshot;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A listening socket bound by the control thread for one shard.
#[derive(Debug)]
pub enum Listener {
    Tcp(std::net::TcpListener),
    /// A `protocol = "udp"` server's socket: it receives the clients' datagrams and sends
    /// the replies back from the server's address.
    Udp(std::net::UdpSocket),
}

impl std::os::fd::AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Udp(s) => s.as_raw_fd(),
        }
    }
}

#[derive(Debug)]
pub struct ServerSlot {
    pub name: String,
    listener: Mutex<Option<Listener>>,
    /// The listener's descriptor, which keeps its number in the shard that takes it: a
    /// successor is handed a duplicate (`upgrade::listeners`).
    fd: std::os::fd::RawFd,
    /// A successor serves on this socket now: stopping must leave it open (see `hand_over`).
    handed_over: AtomicBool,
    snapshot: ArcSwap<ServerSnapshot>,
    closed: AtomicBool,
    /// The connections this slot accepted are to be closed now (see `abort`).
    aborted: AtomicBool,
    /// The server's first discovery round has been published (see `is_ready`).
    ready: AtomicBool,
    /// A removed udp server's sessions may finish (see `let_sessions_finish`).
    sessions_finish: AtomicBool,
    /// A shard holds this slot's udp socket open (see `hold_socket`).
    socket_held: AtomicBool,
}

impl ServerSlot {
    pub fn new(name: &str, listener: Listener, snapshot: Arc<ServerSnapshot>) -> Arc<ServerSlot> {
        Arc::new(ServerSlot {
            name: name.to_string(),
            fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
            handed_over: AtomicBool::new(false),
            listener: Mutex::new(Some(listener)),
            snapshot: ArcSwap::new(snapshot),
            closed: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            sessions_finish: AtomicBool::new(false),
            socket_held: AtomicBool::new(false),
        })
    }

    /// The shard takes the listener once, when it starts serving this slot; `None` once closed.
    pub fn take_listener(&self) -> Option<Listener> {
        let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_closed() {
            return None;
        }
        listener.take()
    }

    #[inline]
    pub fn snapshot(&self) -> Arc<ServerSnapshot> {
        self.snapshot.load_full()
    }

    pub fn publish(&self, snapshot: Arc<ServerSnapshot>) {
        self.snapshot.store(snapshot);
    }

    /// Stop accepting; connections already open finish on their own. A listener no shard has
    /// taken yet is closed here, or the kernel would keep queueing clients on it.
    pub fn close(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::Release);
        drop(listener.take());
    }

    /// A shard starts accepting on the slot once it is ready: the server's first discovery
    /// round (found or failed) is in its snapshot. Before that every client would be accepted
    /// only to be closed for want of a backend; they wait in the listen queue instead.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        self.fd
    }

    /// The socket is shared with a successor process that accepts on it now: when the shard
    /// stops, it closes its descriptor but must not `shutdown(2)` the socket, which would stop
    /// it for the successor too.
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
    }

    pub fn is_handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// Closes the connections accepted through this slot, at once and wherever they are (as
    /// gobetween does when a server is deleted). The shard acts on it at its next inbox poll,
    /// once the slot is closed.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// A udp server removed with a drain: its sessions live in the task that reads its socket,
    /// so when the server stops, the shard keeps that task (and the socket) to serve the open
    /// sessions, opening no new one, until they have all ended or the slot is aborted. Set
    /// before the server is taken out of the inbox. TCP connections are tasks of their own and
    /// finish without it.
    pub fn let_sessions_finish(&self) {
        self.sessions_finish.store(true, Ordering::Release);
    }

    pub fn sessions_may_finish(&self) -> bool {
        self.sessions_finish.load(Ordering::Acquire)
    }

    /// The shard serving this udp slot holds its socket (from the start of serving until the
    /// socket is closed): while it does, the port is taken, even by a removed server that
    /// drains.
    pub fn hold_socket(&self, held: bool) {
        self.socket_held.store(held, Ordering::Release);
    }

    pub fn holds_socket(&self) -> bool {
        self.socket_held.load(Ordering::Acquire)
    }
}

/// What one shard should be serving.
#[derive(Debug, Default)]
pub struct Inbox {
    generation: AtomicU64,
    /// The last generation the shard has put into effect (see `acknowledge`).
    applied: AtomicU64,
    servers: Mutex<Vec<Arc<ServerSlot>>>,
    /// Rung on every change. Without one (no eventfd could be made) the shard polls.
    doorbell: Option<Doorbell>,
}

impl Inbox {
    pub fn new() -> Inbox {
        let doorbell = Doorbell::new()
            .map_err(|e| log::warn!("no eventfd for a shard's inbox ({e}): the shard will poll it"))
            .ok();
        Inbox { doorbell, ..Inbox::default() }
    }

    pub fn doorbell(&self) -> Option<&Doorbell> {
        self.doorbell.as_ref()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called by the shard once the changes up to `generation` are in effect: the listeners of
    /// removed servers are shut, and the connections they accepted before are counted as active.
    pub fn acknowledge(&self, generation: u64) {
        self.applied.store(generation, Ordering::Release);
    }

    /// The slots this shard should serve now (closed ones are already removed).
    pub fn servers(&self) -> Vec<Arc<ServerSlot>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn change(&self, f: impl FnOnce(&mut Vec<Arc<ServerSlot>>)) {
        f(&mut self.servers.lock().unwrap_or_else(|e| e.into_inner()));
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(doorbell) = &self.doorbell {
            doorbell.ring();
        }
    }
}

/// All shards' inboxes.
#[derive(Debug)]
pub struct Plane {
    pub inboxes: Vec<Arc<Inbox>>,
}

impl Plane {
    pub fn new(shards: usize) -> Arc<Plane> {
        Arc::new(Plane { inboxes: (0..shards).map(|_| Arc::new(Inbox::new())).collect() })
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// The inbox of the shard that serves `slots[i]`: shard i, and the shards in turn for slots
    /// beyond the shard count (sockets a predecessor with more shards handed over).
    fn shard_of(&self, i: usize) -> &Inbox {
        &self.inboxes[i % self.inboxes.len()]
    }

    /// Hands the slots to the shards (slots[i] goes to shard i; see `shard_of`).
    pub fn add_server(&self, slots: &[Arc<ServerSlot>]) {
        for (i, slot) in slots.iter().enumerate() {
            self.shard_of(i).change(|servers| servers.push(slot.clone()));
        }
    }

    /// Asks every shard to acknowledge a new generation without changing what it serves, and
    /// returns the marks to pass to `applied`: whether the shards still answer (the watchdog).
    pub fn poke(&self) -> Vec<u64> {
        for inbox in &self.inboxes {
            inbox.change(|_| {});
        }
        self.generations()
    }

    /// Every shard's current generation, to pass to `applied` later.
    pub fn generations(&self) -> Vec<u64> {
        self.inboxes.iter().map(|inbox| inbox.generation()).collect()
    }

    /// Whether every shard has put into effect the changes up to `marks` (from `generations`).
    pub fn applied(&self, marks: &[u64]) -> bool {
        self.inboxes.iter().zip(marks).all(|(inbox, &mark)| inbox.applied.load(Ordering::Acquire) >= mark)
    }

    /// Closes the slots and takes them out of every inbox.
    pub fn remove_server(&self, slots: &[Arc<ServerSlot>]) {
        for (i, slot) in slots.iter().enumerate() {
            slot.close();
            self.shard_of(i).change(|servers| servers.retain(|s| !Arc::ptr_eq(s, slot)));
        }
    }
}
