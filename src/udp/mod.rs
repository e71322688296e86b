//! `protocol = "udp"` on a shard: the server's `SO_REUSEPORT` socket (the kernel keeps each
//! client address on one shard), and a session per client holding a connected socket to its
//! backend. Replies go back to the client from the server's socket, so the client sees the
//! address it sent to. The session rules live in `sessions`, without I/O; this layer owns the
//! sockets: one task reads the server socket in batches, one per session waits for replies,
//! and one ends idle sessions at their deadlines.
//!
//! Every socket a server holds is a session's (bounded by `max_connections`, counted in
//! `active_connections`), an idle one kept for the next session (`pool`), one lingering after
//! its session ended with a request unanswered (`Pool::linger`), or, in fire-and-forget mode
//! (`max_requests = 1`), one per backend this shard sends to.
//!
//! A session that ends at its answer (`max_responses`) with every request answered leaves its
//! socket idle rather than closing it, and the next session to the same backend address takes
//! it, once drained: a DNS-style query then costs no `socket`, `connect` and `close`. See
//! `Pool::take_idle` for why that cannot hand one client's reply to another.
//!
//! In transparent mode (`udp.transparent`) a session's socket is bound to its client's own
//! address and port (`IP_TRANSPARENT`) before it connects, so the backend sees the client as
//! the sender; the host's routing must hand the backend's replies back to that socket.

mod batch;
mod drain;
mod held;
mod pool;
pub mod sessions;

pub use drain::DrainSignal;

use crate::access_log::Trace;
use batch::RecvBatch;
use betwixt_control::access_log::{End, Side};
use betwixt_control::balance::{canonical_addr, Picker};
use betwixt_control::plane::ServerSlot;
use betwixt_control::snapshot::{Backend, ServerSnapshot};
use betwixt_control::stats::{ConnectError, Counters, Dropped, Slot};
use glommio::Task;
use held::HeldSocket;
use pool::Pool;
use sessions::{Forward, Id, Idled, Limits, Reply, Sessions};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Datagrams taken from the server socket per system call.
const BATCH: usize = 32;

/// A session's access log line names no steps: it ends in its transfer.
const STAGE: &str = "transfer";

/// Replies taken from a session's socket per system call.
const REPLY_BATCH: usize = 32;

/// Batches of replies one session relays before it lets the shard's other work run.
const REPLY_ROUNDS: usize = 2;

/// Backends one new session tries before its datagram is dropped.
const MAX_PICKS: usize = 3;

/// Pause after a receive error on the server socket, so a persistent one cannot spin the shard.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// While a drain waits for the sessions to end, how often it looks whether they have: the
/// socket (and the port) are let go at most this long after the last one.
const DRAIN_CHECK: Duration = Duration::from_millis(50);

/// Serves one UDP server on shard `shard` until the task is dropped (the server is removed);
/// then every session ends and its socket closes. Once `drain` has started, the sessions open
/// go on and no new one is opened (a new client's datagrams are dropped, as at a closed port
/// without the ICMP answer); the task ends, letting the socket go, when none is left.
pub async fn serve(shard: usize, slot: Arc<ServerSlot>, socket: UdpSocket, drain: Rc<DrainSignal>) {
    let settings = slot.snapshot().settings.clone();
    let limits = Limits {
        max_requests: settings.udp.max_requests,
        max_responses: settings.udp.max_responses,
        client_idle: settings.client_idle_timeout,
        backend_idle: settings.backend_idle_timeout,
    };
    let front = Rc::new(Front {
        shard,
        socket: HeldSocket::new(socket, slot.clone()),
        slot,
        transparent: settings.udp.transparent,
        table: RefCell::new(Sessions::new(limits)),
        picker: RefCell::new(Picker::new(shard)),
        replies: RefCell::new(RecvBatch::new(REPLY_BATCH)),
        pool: RefCell::new(Pool::default()),
        timer: RefCell::new(None),
        stopped: Cell::new(false),
        drain,
    });
    let _stop = Stop(front.clone());
    let fd = front.socket.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH);
    loop {
        let draining = front.drain.started();
        if draining && front.table.borrow().is_empty() {
            return;
        }
        match batch.recv(fd) {
            Ok(0) => {
                let readable = async { glommio::net::readable(fd).await.err() };
                let looked_again = async {
                    match draining {
                        true => glommio::timer::sleep(DRAIN_CHECK).await,
                        false => front.drain.wait().await,
                    };
                    None
                };
                if let Some(e) = futures_lite::future::or(readable, looked_again).await {
                    front.receive_failed(e).await;
                }
            }
            Ok(n) => {
                let snapshot = front.slot.snapshot();
                let now = Instant::now();
                // A session's datagrams in a row go to its backend in one `sendmmsg`.
                let mut run = Run::default();
                for i in 0..n {
                    let (data, Some(client)) = batch.datagram(i) else { continue };
                    let Some(Forward { id, then_close }) = front.on_datagram(&snapshot, data, client, now)
                    else {
                        continue;
                    };
                    if run.id != Some(id) {
                        front.forward(&snapshot, &mut run);
                        run.id = Some(id);
                    }
                    run.datagrams[run.len] = data;
                    run.len += 1;
                    if then_close {
                        front.forward(&snapshot, &mut run);
                        front.close(id);
                    }
                }
                front.forward(&snapshot, &mut run);
                glommio::yield_if_needed().await;
            }
            Err(e) => front.receive_failed(e).await,
        }
    }
}

/// Datagrams of one session received in a row (of one batch), to be sent to its backend
/// together.
#[derive(Default)]
struct Run<'a> {
    id: Option<Id>,
    datagrams: [&'a [u8]; BATCH],
    len: usize,
}

/// Ends every session when the serving task is dropped or ends; the socket closes with the
/// last reference to the `Front`.
struct Stop(Rc<Front>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// One UDP server on one shard.
struct Front {
    shard: usize,
    slot: Arc<ServerSlot>,
    /// The server's socket (non-blocking): clients' datagrams in, replies out.
    socket: HeldSocket,
    /// Backend sockets are bound to the client's address (`udp.transparent`).
    transparent: bool,
    table: RefCell<Sessions<Flow>>,
    picker: RefCell<Picker>,
    /// One receive batch for every session's replies: replies are sent on before the next
    /// are read, and nothing holds it across an await.
    replies: RefCell<RecvBatch>,
    pool: RefCell<Pool>,
    /// The task ending idle sessions; runs only while some session has a deadline.
    timer: RefCell<Option<Task<()>>>,
    stopped: Cell<bool>,
    /// Once started, no new session (see `serve`).
    drain: Rc<DrainSignal>,
}

/// A session's resources; dropping it closes the backend socket and releases its places.
struct Flow {
    /// Declared first so it drops first: the reply task stops waiting on the socket before
    /// the socket closes.
    replies: Option<Task<()>>,
    socket: UdpSocket,
    /// The backend address `socket` is connected to.
    peer: SocketAddr,
    backend: Arc<Backend>,
    _server: Place,
    _backend: Place,
    /// The session's access log line, written when the flow drops (as `aborted` unless it
    /// was told how it ended).
    trace: Trace,
}

impl Front {
    fn server_slot<'s>(&self, snapshot: &'s ServerSnapshot) -> &'s Slot {
        snapshot.counters.shard(self.shard)
    }

    fn drop_datagram(&self, snapshot: &ServerSnapshot, why: Dropped) {
        Slot::add(&self.server_slot(snapshot).dropped[why as usize], 1);
    }

    /// A datagram from `client`: counted against its session, or a new session. Returns the
    /// session it is to be sent on (see `forward`); `None` when it was dropped or, in
    /// fire-and-forget mode, already sent straight to a backend.
    fn on_datagram(
        self: &Rc<Self>,
        snapshot: &Arc<ServerSnapshot>,
        data: &[u8],
        client: SocketAddr,
        now: Instant,
    ) -> Option<Forward> {
        let settings = &snapshot.settings;
        if settings.access.as_ref().is_some_and(|rules| !rules.allows(client.ip())) {
            log::debug!("server {}: {client} denied by access rules", settings.name);
            self.drop_datagram(snapshot, Dropped::Denied);
            return None;
        }
        let draining = self.drain.started();
        if self.table.borrow().limits().fire_and_forget() {
            if !draining {
                self.fire_and_forget(snapshot, data, client);
            }
            return None;
        }
        let known = self.table.borrow_mut().request(client, now);
        known.or_else(|| if draining { None } else { self.open(snapshot, client, now) })
    }

    /// Sends `run`'s datagrams to its session's backend, and empties it.
    fn forward(&self, snapshot: &ServerSnapshot, run: &mut Run) {
        let Some(id) = run.id.take() else { return };
        let table = self.table.borrow();
        if let Some(flow) = table.get(id) {
            batch::send(flow.socket.as_raw_fd(), &run.datagrams[..run.len], None, |sent| match sent {
                Ok(n) => {
                    self.count_sent(snapshot, &flow.backend, n);
                    flow.trace.datagram(true, n);
                }
                Err(e) => {
                    self.drop_datagram(snapshot, Dropped::SendFailed);
                    self.send_failed(&flow.backend, &e);
                }
            });
        }
        run.len = 0;
    }

    /// Picks a backend for a new session of `client` and connects a socket to it. `None` (the
    /// datagram dropped and counted) when the limits or the backends allow no session.
    fn open(
        self: &Rc<Self>,
        snapshot: &Arc<ServerSnapshot>,
        client: SocketAddr,
        now: Instant,
    ) -> Option<Forward> {
        let settings = &snapshot.settings;
        let Some(server_place) = Place::enter(&snapshot.counters, self.shard, settings.max_connections)
        else {
            betwixt_control::log_limited!(
                log::Level::Warn,
                "server {}: {client} dropped: max_connections {} (sessions) reached",
                settings.name,
                settings.max_connections
            );
            self.drop_datagram(snapshot, Dropped::Limit);
            return None;
        };
        let mut tried = [0; MAX_PICKS];
        for attempt in 0..MAX_PICKS {
            let Some(index) = self.picker.borrow_mut().pick(snapshot, client.ip(), &tried[..attempt]) else {
                break;
            };
            tried[attempt] = index;
            let backend = &snapshot.backends[index];
            let Some(backend_place) =
                Place::enter(&backend.counters, self.shard, backend.spec.max_connections)
            else {
                continue; // filled up by another shard since the pick
            };
            let (socket, peer) = match self.backend_socket(snapshot, backend, client, now) {
                Ok(found) => found,
                Err(e) => {
                    let slot = backend.counters.shard(self.shard);
                    Slot::add(&slot.refused, 1);
                    Slot::add(&slot.connect_errors[ConnectError::of(&e) as usize], 1);
                    betwixt_control::log_limited!(
                        log::Level::Warn,
                        "server {}: no socket to backend {}: {e}",
                        settings.name,
                        backend.spec.address()
                    );
                    continue;
                }
            };
            let fd = socket.as_raw_fd();
            // The session keeps the address as its socket gave it; the log has it as gobetween would.
            let mut trace = Trace::begin(snapshot, canonical_addr(client));
            trace.backend(backend);
            let flow = Flow {
                replies: None,
                socket,
                peer,
                backend: backend.clone(),
                _server: server_place,
                _backend: backend_place,
                trace,
            };
            let forward = self.table.borrow_mut().open(client, flow, now);
            if !forward.then_close {
                let task = glommio::spawn_local(relay_replies(self.clone(), forward.id, fd));
                if let Some(flow) = self.table.borrow_mut().get_mut(forward.id) {
                    flow.replies = Some(task);
                }
                self.arm_timer();
            }
            return Some(forward);
        }
        log::debug!("server {}: no backend for {client}", settings.name);
        self.drop_datagram(snapshot, Dropped::NoBackend);
        None
    }

    /// A socket connected to `backend` for a new session of `client`: an idle one if the
    /// shard has one, else a new one (always new in transparent mode, bound to the client).
    fn backend_socket(
        &self,
        snapshot: &ServerSnapshot,
        backend: &Backend,
        client: SocketAddr,
        now: Instant,
    ) -> io::Result<(UdpSocket, SocketAddr)> {
        if self.transparent {
            return connect(&backend.addrs, Some(client));
        }
        if let Some(idle) = self.pool.borrow_mut().take_idle(snapshot, &backend.addrs, now) {
            return Ok(idle);
        }
        connect(&backend.addrs, None)
    }

    /// gobetween's fire-and-forget mode: each datagram balanced on its own and sent through
    /// the shard's socket to that backend; replies are not relayed.
    fn fire_and_forget(&self, snapshot: &Arc<ServerSnapshot>, data: &[u8], client: SocketAddr) {
        let Some(index) = self.picker.borrow_mut().pick(snapshot, client.ip(), &[]) else {
            return self.drop_datagram(snapshot, Dropped::NoBackend);
        };
        let backend = &snapshot.backends[index];
        if self.transparent {
            return self.send_once_from(snapshot, backend, data, client);
        }
        let mut pool = self.pool.borrow_mut();
        pool.refresh(snapshot);
        let Some(&addr) = backend.addrs.first() else {
            return self.drop_datagram(snapshot, Dropped::NoBackend);
        };
        let socket = match pool.sockets.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match connect(&[addr], None) {
                Ok((socket, _)) => {
                    // Never read: a small receive buffer keeps unwanted replies from piling up.
                    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1);
                    e.insert(socket)
                }
                Err(e) => {
                    self.send_failed(backend, &e);
                    return self.drop_datagram(snapshot, Dropped::NoBackend);
                }
            },
        };
        match socket.send(data) {
            Ok(n) => self.count_sent(snapshot, backend, n),
            Err(e) => {
                self.drop_datagram(snapshot, Dropped::SendFailed);
                self.send_failed(backend, &e);
                // An ICMP error left on the socket: start afresh with a new one.
                pool.sockets.remove(&addr);
            }
        }
    }

    /// Fire-and-forget in transparent mode: every datagram carries its own client's address,
    /// so it goes out through a socket bound to that address, closed right after the send (one
    /// socket at a time, never held).
    fn send_once_from(&self, snapshot: &ServerSnapshot, backend: &Backend, data: &[u8], client: SocketAddr) {
        let sent = connect(&backend.addrs, Some(client)).and_then(|(socket, _)| socket.send(data));
        match sent {
            Ok(n) => self.count_sent(snapshot, backend, n),
            Err(e) => {
                self.drop_datagram(snapshot, Dropped::SendFailed);
                self.send_failed(backend, &e);
            }
        }
    }

    /// A client's datagram of `n` bytes went out to `backend`.
    fn count_sent(&self, snapshot: &ServerSnapshot, backend: &Backend, n: usize) {
        let server = self.server_slot(snapshot);
        Slot::add(&server.datagrams_in, 1);
        Slot::add(&server.tx, n as u64);
        Slot::add(&backend.counters.shard(self.shard).tx, n as u64);
    }

    fn send_failed(&self, backend: &Backend, e: &io::Error) {
        betwixt_control::log_limited!(
            log::Level::Warn,
            "server {}: sending to backend {} failed: {e}",
            self.slot.name,
            backend.spec.address()
        );
    }

    /// Replies on session `id`'s socket: relayed to its client from the server's socket, in
    /// one `sendmmsg`. Returns false once the session has ended.
    fn on_replies(self: &Rc<Self>, id: Id, datagrams: &[&[u8]]) -> bool {
        let now = Instant::now();
        let mut client = None;
        let mut relayed = 0;
        let mut then_close = false;
        {
            let mut table = self.table.borrow_mut();
            while relayed < datagrams.len() && !then_close {
                let Reply::Relay { client: to, then_close: last } = table.reply(id, now) else { break };
                client = Some(to);
                then_close = last;
                relayed += 1;
            }
        }
        let Some(client) = client else { return false };
        let snapshot = self.slot.snapshot();
        let server = self.server_slot(&snapshot);
        let table = self.table.borrow();
        let flow = table.get(id);
        let backend = flow.map(|flow| flow.backend.counters.shard(self.shard));
        let to = SockAddr::from(client);
        batch::send(self.socket.as_raw_fd(), &datagrams[..relayed], Some(&to), |sent| match sent {
            Ok(n) => {
                Slot::add(&server.datagrams_out, 1);
                Slot::add(&server.rx, n as u64);
                if let Some(backend) = backend {
                    Slot::add(&backend.rx, n as u64);
                }
                if let Some(flow) = flow {
                    flow.trace.datagram(false, n);
                }
            }
            Err(e) => {
                Slot::add(&server.dropped[Dropped::SendFailed as usize], 1);
                betwixt_control::log_limited!(
                    log::Level::Warn,
                    "server {}: reply to {client} failed: {e}",
                    self.slot.name
                );
            }
        });
        drop(table);
        if then_close {
            self.end_at_answer(id, &snapshot);
            return false;
        }
        relayed == datagrams.len()
    }

    /// Ends session `id` at its last reply, from its reply task (which returns right after);
    /// its socket is kept for a later session if every request it sent was answered.
    fn end_at_answer(self: &Rc<Self>, id: Id, snapshot: &ServerSnapshot) {
        let ended = self.table.borrow_mut().finish(id);
        let Some((Flow { replies, socket, peer, mut trace, .. }, answered)) = ended else { return };
        trace.end(STAGE, End::Done, None, None);
        if let Some(task) = replies {
            task.detach();
        }
        if !answered {
            self.linger(socket);
        } else if !self.transparent {
            self.pool.borrow_mut().put_idle(snapshot, socket, peer, Instant::now());
        }
    }

    /// Ends session `id`, which has done its work; its reply task, if waiting, is cancelled.
    fn close(self: &Rc<Self>, id: Id) {
        let ended = self.table.borrow_mut().finish(id);
        if let Some((flow, answered)) = ended {
            self.retire(flow, End::Done, None, answered);
        }
    }

    /// Ends session `flow`, taken from the table other than at its answer: its access log line
    /// says `how` (and, for a timeout, whose silence), its reply task is cancelled, and its
    /// socket closes, or lingers when a request went unanswered.
    fn retire(self: &Rc<Self>, flow: Flow, how: End, silent: Option<Side>, answered: bool) {
        let Flow { replies, socket, mut trace, .. } = flow;
        trace.end(STAGE, how, silent, None);
        // The reply task stops waiting on the socket before the socket is let go.
        drop(replies);
        if !answered {
            self.linger(socket);
        }
    }

    /// Holds the socket of a session that ended with a request unanswered (`Pool::linger`):
    /// closed now, its port could go to the next session's new socket, and the late reply
    /// with it to another client. In transparent mode it closes: bound to its own client's
    /// address, it leaves no port that another client's session could be given.
    fn linger(self: &Rc<Self>, socket: UdpSocket) {
        if self.transparent {
            return;
        }
        let max_connections = self.slot.snapshot().settings.max_connections;
        self.pool.borrow_mut().linger(socket, Instant::now(), max_connections);
        self.arm_timer();
    }

    /// Ends session `id` for `e` on its backend socket, from its own reply task, which is let
    /// run to its end (detached) rather than cancelled from inside itself.
    fn close_from_replies(&self, id: Id, e: io::Error) {
        let flow = self.table.borrow_mut().close(id);
        if let Some(mut flow) = flow {
            flow.trace.end(STAGE, End::of(&e), Some(Side::Backend), Some(e.to_string()));
            if let Some(task) = flow.replies.take() {
                task.detach();
            }
        }
    }

    /// Starts the expiry task if sessions have deadlines or sockets linger, and it is not
    /// running.
    fn arm_timer(self: &Rc<Self>) {
        if self.stopped.get() || self.next_deadline().is_none() {
            return;
        }
        let mut timer = self.timer.borrow_mut();
        if timer.is_none() {
            *timer = Some(glommio::spawn_local(expire_sessions(self.clone())));
        }
    }

    /// The earliest time the expiry task has something to do: a session's deadline or the end
    /// of a socket's lingering.
    fn next_deadline(&self) -> Option<Instant> {
        let sessions = self.table.borrow().next_deadline();
        let lingering = self.pool.borrow().next_lingering_end();
        sessions.into_iter().chain(lingering).min()
    }

    fn stop(&self) {
        self.stopped.set(true);
        let timer = self.timer.borrow_mut().take();
        drop(timer);
        let flows = self.table.borrow_mut().drain();
        drop(flows);
        self.pool.borrow_mut().clear();
    }

    async fn receive_failed(&self, e: io::Error) {
        betwixt_control::log_limited!(log::Level::Warn, "server {}: receive failed: {e}", self.slot.name);
        glommio::timer::sleep(ERROR_BACKOFF).await;
    }
}

/// Waits for replies on session `id`'s backend socket and relays them, until the session ends.
async fn relay_replies(front: Rc<Front>, id: Id, fd: RawFd) {
    loop {
        if let Err(e) = glommio::net::readable(fd).await {
            log::debug!("server {}: session socket: {e}", front.slot.name);
            return front.close_from_replies(id, e);
        }
        for _ in 0..REPLY_ROUNDS {
            let mut replies = front.replies.borrow_mut();
            // `fd` is the session's socket, open as long as the session (and so this task).
            let n = match replies.recv(fd) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    // An ICMP error (port unreachable: nothing listens there), as gobetween
                    // ends the session when its read fails.
                    drop(replies);
                    log::debug!("server {}: backend failed: {e}", front.slot.name);
                    return front.close_from_replies(id, e);
                }
            };
            let mut datagrams: [&[u8]; REPLY_BATCH] = [&[]; REPLY_BATCH];
            for (i, datagram) in datagrams.iter_mut().enumerate().take(n) {
                *datagram = replies.payload(i);
            }
            if !front.on_replies(id, &datagrams[..n]) {
                return;
            }
        }
        glommio::yield_if_needed().await;
    }
}

/// Ends sessions as their deadlines pass, and lingering sockets as their time is up; returns
/// when neither is left.
async fn expire_sessions(front: Rc<Front>) {
    loop {
        let next = front.next_deadline();
        let Some(next) = next else {
            if let Some(task) = front.timer.borrow_mut().take() {
                task.detach();
            }
            return;
        };
        let now = Instant::now();
        if next > now {
            glommio::timer::sleep(next - now).await;
            continue;
        }
        let mut ended = Vec::new();
        front.table.borrow_mut().expire(now, |flow, idled, answered| {
            let side = match idled {
                Idled::Client => Side::Client,
                Idled::Backend => Side::Backend,
            };
            ended.push((flow, side, answered));
        });
        // Reply tasks are cancelled and sockets let go here, outside the table's borrow.
        for (flow, side, answered) in ended {
            front.retire(flow, End::Idle, Some(side), answered);
        }
        front.pool.borrow_mut().end_lingering(now);
    }
}

/// A non-blocking UDP socket connected to the first of `addrs` that takes it: the kernel then
/// delivers only that address's datagrams to it (a reply from another port is dropped, as
/// with gobetween's connected sockets). With `from` (transparent mode) it is bound to that
/// address, the client's, first.
fn connect(addrs: &[SocketAddr], from: Option<SocketAddr>) -> io::Result<(UdpSocket, SocketAddr)> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "backend has no address");
    for &addr in addrs {
        let domain = Domain::for_address(addr);
        let attempt = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP)).and_then(|socket| {
            socket.set_nonblocking(true)?;
            if let Some(client) = from {
                let client = in_family_of(client, addr)?;
                betwixt_control::bind::set_transparent(&socket, domain)?;
                // The client's previous session may still hold this address while it waits
                // for its last replies (`max_requests`); both may bind it, the kernel tells
                // them apart by the backend they are connected to.
                socket.set_reuse_address(true)?;
                socket.bind(&client.into())?;
            }
            socket.connect(&addr.into())?;
            Ok(socket)
        });
        match attempt {
            Ok(socket) => return Ok((socket.into(), addr)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `client` in the address family of `backend`, for a socket bound to the one and connected
/// to the other: an IPv4 client reaches a dual-stack server as `::ffff:a.b.c.d`.
fn in_family_of(client: SocketAddr, backend: SocketAddr) -> io::Result<SocketAddr> {
    let client = canonical_addr(client);
    if client.is_ipv4() == backend.is_ipv4() {
        return Ok(client);
    }
    let message = format!("client {client} and backend {backend} are of different address families");
    Err(io::Error::new(io::ErrorKind::AddrNotAvailable, message))
}

/// A place a session holds in a server's or backend's counters (active, and the cross-shard
/// gauge under a limit); released when the session's `Flow` drops.
struct Place {
    counters: Arc<Counters>,
    shard: usize,
    limit: u32,
}

impl Place {
    fn enter(counters: &Arc<Counters>, shard: usize, limit: u32) -> Option<Place> {
        if !counters.try_acquire(limit) {
            return None;
        }
        let slot = counters.shard(shard);
        Slot::add(&slot.total, 1);
        Slot::add(&slot.active, 1);
        Some(Place { counters: counters.clone(), shard, limit })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        Slot::sub(&self.counters.shard(self.shard).active, 1);
        self.counters.release(self.limit);
    }
}
