//! What one access log line says: a fixed-size record that a shard fills as the connection goes
//! and pushes once at its end. Formatting is left to the writer thread; the shard only copies
//! values and clones `Arc`s (no allocation beyond the texts the connection already made).

use crate::config::ServerSettings;
use crate::snapshot::Backend;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How a connection or session ended. With `side` on the record, this says who closed, reset
/// or timed out, or why betwixt refused or closed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both directions reached their end of stream and everything was passed on (UDP: the
    /// session ended at its answer, by `max_responses` or `max_requests`).
    Done,
    /// `side` closed before a step was complete (e.g. before the end of its ClientHello).
    Closed,
    /// `side` reset the connection (or broke the pipe we wrote to).
    Reset,
    /// A step's time limit passed waiting for `side` (PROXY header, ClientHello, handshake).
    Timeout,
    /// `side`'s idle timeout passed.
    Idle,
    /// Any other failure of `side`; `error` says which.
    Error,
    /// The client's address is denied by the server's access rules.
    Denied,
    /// The server's `max_connections` was reached.
    Limit,
    /// No backend took the connection: none live, all full, or every one tried failed.
    NoBackend,
    /// betwixt closed it: the server was removed or its drain time, or the shutdown grace,
    /// ran out.
    Aborted,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Done => "done",
            End::Closed => "closed",
            End::Reset => "reset",
            End::Timeout => "timeout",
            End::Idle => "idle",
            End::Error => "error",
            End::Denied => "denied",
            End::Limit => "limit",
            End::NoBackend => "no_backend",
            End::Aborted => "aborted",
        }
    }

    /// The end of a failed socket operation, by its error.
    pub fn of(e: &std::io::Error) -> End {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe => End::Reset,
            TimedOut => End::Timeout,
            UnexpectedEof => End::Closed,
            _ => End::Error,
        }
    }
}

/// The two ends of a proxied connection, as the record names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
}

/// One connection (TCP, TLS) or one session (UDP).
#[derive(Debug)]
pub struct Record {
    /// When it was accepted (UDP: its first datagram).
    pub start: SystemTime,
    pub duration: Duration,
    pub server: Arc<ServerSettings>,
    /// The client's address: from its PROXY protocol header when the server accepts one.
    pub client: SocketAddr,
    /// The server name the client asked for (SNI), as it sent it: peer-supplied text.
    pub sni: Option<Box<str>>,
    /// The backend it was connected to, if it got that far.
    pub backend: Option<Arc<Backend>>,
    /// Bytes from the client (to the backend), and to the client (from the backend).
    pub bytes: [u64; 2],
    /// UDP: datagrams from the client and to it.
    pub datagrams: Option<[u64; 2]>,
    /// The step it ended in (`transfer` once connected; see docs/access-log.md).
    pub stage: &'static str,
    pub end: End,
    pub side: Option<Side>,
    /// What failed, in words; may quote peer-supplied text.
    pub error: Option<String>,
}
