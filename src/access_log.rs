//! The shard's side of `[access_log]`: a `Trace` per connection (TCP, TLS) or UDP session
//! collects what its line will say and, when it is dropped, hands one record to the writer
//! (`betwixt_control::access_log`). Being a drop guard, it logs every connection exactly once,
//! however it ends: a failed step, a finished transfer, or its task dropped by an abort.
//! With the access log off, a trace is its byte counts and nothing else.

use betwixt_control::access_log::{self, AccessLog, End, Record, Side};
use betwixt_control::config::{Protocol, ServerSettings};
use betwixt_control::snapshot::{Backend, ServerSnapshot};
use betwixt_control::stats::Slot;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Bytes a connection moved: from the client, and to it. Bumped next to the server's and the
/// backend's counters, on the same thread (`Slot::add`: no atomic read-modify-write).
#[derive(Default)]
pub struct Moved {
    pub from_client: AtomicU64,
    pub to_client: AtomicU64,
}

impl Moved {
    fn read(&self) -> [u64; 2] {
        use std::sync::atomic::Ordering::Relaxed;
        [self.from_client.load(Relaxed), self.to_client.load(Relaxed)]
    }
}

/// What a line says besides the byte counts, while the access log runs.
struct Entry {
    log: &'static AccessLog,
    began: Instant,
    start: SystemTime,
    server: Arc<ServerSettings>,
    client: SocketAddr,
    sni: Option<Box<str>>,
    backend: Option<Arc<Backend>>,
    /// A UDP session: datagram counts go in the line.
    udp: bool,
    stage: &'static str,
    end: End,
    side: Option<Side>,
    error: Option<String>,
}

/// One connection's (or session's) line, pushed when dropped.
pub struct Trace {
    pub moved: Moved,
    /// UDP: datagrams from the client, and to it.
    datagrams: [Cell<u64>; 2],
    /// Boxed: every connection carries its trace for its whole life, most with no line to
    /// write (the log off, or the server opted out).
    entry: Option<Box<Entry>>,
}

impl Trace {
    /// A trace for a client of `snapshot`'s server, logged unless the server opts out
    /// (`access_log = false`); it ends as `aborted` unless `end` says otherwise before it is
    /// dropped.
    pub fn begin(snapshot: &ServerSnapshot, client: SocketAddr) -> Trace {
        let logged = access_log::running().filter(|_| snapshot.settings.access_log);
        let entry = logged.map(|log| {
            Box::new(Entry {
                log,
                began: Instant::now(),
                start: SystemTime::now(),
                server: snapshot.settings.clone(),
                client,
                sni: None,
                backend: None,
                udp: snapshot.settings.protocol == Protocol::Udp,
                stage: "transfer",
                end: End::Aborted,
                side: None,
                error: None,
            })
        });
        Trace { moved: Moved::default(), datagrams: Default::default(), entry }
    }

    /// Whether a line will be written: what is costly to note can be skipped otherwise.
    pub fn is_logged(&self) -> bool {
        self.entry.is_some()
    }

    /// The client's address as its PROXY protocol header gives it.
    pub fn client(&mut self, client: SocketAddr) {
        if let Some(entry) = &mut self.entry {
            entry.client = client;
        }
    }

    pub fn sni(&mut self, name: Option<Box<str>>) {
        if let Some(entry) = &mut self.entry {
            entry.sni = name;
        }
    }

    pub fn backend(&mut self, backend: &Arc<Backend>) {
        if let Some(entry) = &mut self.entry {
            entry.backend = Some(backend.clone());
        }
    }

    /// UDP: one more datagram passed on from the client (`from_client`) or to it.
    pub fn datagram(&self, from_client: bool, bytes: usize) {
        let (counter, count) = match from_client {
            true => (&self.moved.from_client, &self.datagrams[0]),
            false => (&self.moved.to_client, &self.datagrams[1]),
        };
        Slot::add(counter, bytes as u64);
        count.set(count.get() + 1);
    }

    /// How it ended: at `stage`, by `side` when one side did it.
    pub fn end(&mut self, stage: &'static str, end: End, side: Option<Side>, error: Option<String>) {
        if let Some(entry) = &mut self.entry {
            (entry.stage, entry.end, entry.side, entry.error) = (stage, end, side, error);
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let Some(entry) = self.entry.take().map(|entry| *entry) else { return };
        entry.log.push(Record {
            start: entry.start,
            duration: entry.began.elapsed(),
            server: entry.server,
            client: entry.client,
            sni: entry.sni,
            backend: entry.backend,
            bytes: self.moved.read(),
            datagrams: entry.udp.then(|| self.datagrams.each_ref().map(Cell::get)),
            stage: entry.stage,
            end: entry.end,
            side: entry.side,
            error: entry.error,
        });
    }
}
