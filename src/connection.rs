//! One client connection, from accept to close: access rules, limits, backend choice with
//! bounded retries, connect timeout, then the byte transfer with idle timeouts and faults
//! passed on (see `transfer`). Counters are released by guards, so every exit path (error,
//! timeout, cancellation) leaves them right.

use crate::transfer::{self, End, Meters};
use betwixt_control::balance::Picker;
use betwixt_control::snapshot::{Backend, ServerSnapshot};
use betwixt_control::stats::{ConnectError, Counters, Slot};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many different backends one connection tries before giving up.
const MAX_CONNECT_ATTEMPTS: usize = 3;

/// Holds one place in a counter set (active count and, when limited, the cross-shard gauge).
/// `total` is counted apart (`count_total`): for a backend only once it is connected, as
/// gobetween counts it.
struct Occupancy<'a> {
    counters: &'a Counters,
    shard: usize,
    limit: u32,
}

impl<'a> Occupancy<'a> {
    /// Takes a place under `limit`; `None` when the limit is reached.
    fn enter(counters: &'a Counters, shard: usize, limit: u32) -> Option<Self> {
        if !counters.try_acquire(limit) {
            return None;
        }
        Slot::add(&counters.shard(shard).active, 1);
        Some(Occupancy { counters, shard, limit })
    }

    fn slot(&self) -> &Slot {
        self.counters.shard(self.shard)
    }

    fn count_total(&self) {
        Slot::add(&self.slot().total, 1);
    }
}

impl Drop for Occupancy<'_> {
    fn drop(&mut self) {
        Slot::sub(&self.slot().active, 1);
        self.counters.release(self.limit);
    }
}

pub async fn handle(
    shard: usize,
    snapshot: Arc<ServerSnapshot>,
    picker: Rc<RefCell<Picker>>,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let settings = &snapshot.settings;
    if settings.access.as_ref().is_some_and(|rules| !rules.allows(peer.ip())) {
        // Denied clients are closed at once (dropping the stream) and counted as refused.
        Slot::add(&snapshot.counters.shard(shard).refused, 1);
        log::debug!("server {}: {peer} denied by access rules", settings.name);
        return;
    }
    let Some(server_place) = Occupancy::enter(&snapshot.counters, shard, settings.max_connections) else {
        Slot::add(&snapshot.counters.shard(shard).refused, 1);
        log::debug!(
            "server {}: refused {peer}: max_connections {} reached",
            settings.name,
            settings.max_connections
        );
        return;
    };
    server_place.count_total();
    let Some((backend, mut upstream, backend_place)) = connect_backend(shard, &snapshot, &picker, peer).await
    else {
        Slot::add(&server_place.slot().refused, 1);
        log::debug!("server {}: no backend available for {peer}", settings.name);
        return;
    };
    // The client's socket inherited TCP_NODELAY from the listener (see `bind`): one system call
    // fewer per connection.
    if let Err(e) = upstream.set_nodelay(true) {
        log::warn!("server {}: cannot set socket options: {e}", settings.name);
        return;
    }
    let meters = Meters { server: server_place.slot(), backend: backend_place.slot() };
    let idle = [settings.client_idle_timeout, settings.backend_idle_timeout];
    let why = match transfer::bidirectional(&mut client, &mut upstream, meters, idle).await {
        End::Done => return,
        End::Idle(side) => format!("{side:?} idle timeout"),
        // The other side is reset as the sockets drop here.
        End::Failed(side, e) => format!("{side:?} failed: {e}"),
    };
    log::debug!("server {}: {peer} <-> {}: {why}", settings.name, backend.spec.address());
}

/// Picks backends until one accepts the connection, at most `MAX_CONNECT_ATTEMPTS` of them.
/// Counted as gobetween counts a connection: each backend that fails gets one `refused`, and
/// only the backend that connects gets one `total` (`active` holds the place meanwhile, so
/// that `max_connections` and `leastconn` see a connect in progress).
async fn connect_backend<'s>(
    shard: usize,
    snapshot: &'s ServerSnapshot,
    picker: &RefCell<Picker>,
    peer: SocketAddr,
) -> Option<(&'s Arc<Backend>, TcpStream, Occupancy<'s>)> {
    let timeout = snapshot.settings.backend_connection_timeout;
    // On the stack: no allocation per connection.
    let mut tried = [0; MAX_CONNECT_ATTEMPTS];
    for attempt in 0..MAX_CONNECT_ATTEMPTS {
        let index = picker.borrow_mut().pick(snapshot, peer.ip(), &tried[..attempt])?;
        tried[attempt] = index;
        let backend = &snapshot.backends[index];
        let Some(place) = Occupancy::enter(&backend.counters, shard, backend.spec.max_connections) else {
            continue; // filled up by another shard since the pick
        };
        let started = Instant::now();
        match connect(&backend.addrs, timeout).await {
            Ok(stream) => {
                place.count_total();
                place.slot().connect_latency.observe(started.elapsed());
                return Some((backend, stream, place));
            }
            Err(e) => {
                Slot::add(&place.slot().refused, 1);
                Slot::add(&place.slot().connect_errors[ConnectError::of(&e) as usize], 1);
                // Every client of a dead backend meets this: limited, or it floods the log.
                betwixt_control::log_limited!(
                    log::Level::Warn,
                    "server {}: backend {} failed: {e}",
                    snapshot.settings.name,
                    backend.spec.address()
                );
            }
        }
    }
    None
}

async fn connect(addrs: &[SocketAddr], timeout: Option<Duration>) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "backend has no address");
    for &addr in addrs {
        let attempt = match timeout {
            Some(limit) => TcpStream::connect_timeout(addr, limit).await,
            None => TcpStream::connect(addr).await,
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}
