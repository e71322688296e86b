//! `[runtime] forwarding = "kernel"`: the bytes of a plain TCP connection are moved by the
//! kernel instead of the shard. A stream-verdict program (see `program`) runs for every chunk
//! arriving on a socket of the `watched` map and redirects it to the socket the `peers` map
//! holds under the arriving socket's cookie: the connection's other socket. The shard only
//! watches for the ends (`forward`). See docs/kernel-forwarding.md.
//!
//! Two maps, so that a socket's chunks are never looked up before its peer is known: a
//! connection's sockets go into `peers` (no program: nothing runs yet) and only then into
//! `watched`, whose program starts handling their chunks.
//!
//! A third map holds each socket's state: what the program counted and decided for the
//! direction the socket reads (see `program`), and what betwixt set at the attach.
//!
//! One program and three maps serve the whole process: created at start, shared by the
//! shards, which add and remove their connections' entries concurrently (the kernel locks per
//! bucket).

mod bpf;
mod btf;
mod forward;
mod handover;
pub mod program;

pub use handover::take_over;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// The process's program and maps; `None` when forwarding is in user space (the default, or
/// the kernel refused them).
static KERNEL: OnceLock<Option<Kernel>> = OnceLock::new();

/// The most connections the maps are sized for, whatever the descriptor limit: each map
/// allocates its buckets up front, 16 bytes per entry (two entries per connection), so this
/// bounds them at 8 MiB each. Connections beyond it are forwarded in user space.
const MAX_CONNECTIONS: u64 = 1 << 18;

/// The BPF objects of kernel forwarding.
pub struct Kernel {
    /// `SOCKHASH` with the verdict program: cookie of a socket → that socket.
    watched: OwnedFd,
    /// `SOCKHASH` without a program: cookie of a socket → its peer socket.
    peers: OwnedFd,
    /// `HASH`: cookie of a socket → its `program::StateValue`.
    state: OwnedFd,
    /// Kept open so the program stays attached to `watched`.
    _program: OwnedFd,
    /// Reads in user space before a connection is handed over (`kernel_forwarding_after_reads`).
    after_reads: u64,
}

impl Kernel {
    /// Creates the maps, loads the program and attaches it; room for `connections` pairs.
    fn create(connections: u32, after_reads: u64) -> io::Result<Kernel> {
        let entries = connections.saturating_mul(2).max(2);
        let sockhash = |name: &str| {
            bpf::map_create(bpf::MAP_TYPE_SOCKHASH, 8, 4, entries, 0)
                .map_err(|e| io::Error::new(e.kind(), format!("{name} map: {e}")))
        };
        let (watched, peers) = (sockhash("socket")?, sockhash("peer")?);
        // Not preallocated: a large descriptor limit must not reserve memory for every entry.
        let state = bpf::map_create(bpf::MAP_TYPE_HASH, 8, program::State::SIZE, entries, bpf::NO_PREALLOC)
            .map_err(|e| io::Error::new(e.kind(), format!("state map: {e}")))?;
        let tcp =
            btf::tcp_sock_fields().map_err(|e| io::Error::new(e.kind(), format!("tcp_sock layout: {e}")))?;
        let code = program::verdict(state.as_raw_fd(), peers.as_raw_fd(), watched.as_raw_fd(), tcp);
        let program =
            bpf::load_sk_skb(&code).map_err(|e| io::Error::new(e.kind(), format!("verdict program: {e}")))?;
        bpf::attach_verdict(watched.as_raw_fd(), program.as_raw_fd())
            .map_err(|e| io::Error::new(e.kind(), format!("attaching the program: {e}")))?;
        Ok(Kernel { watched, peers, state, _program: program, after_reads })
    }

    fn state(&self) -> RawFd {
        self.state.as_raw_fd()
    }

    fn watched(&self) -> RawFd {
        self.watched.as_raw_fd()
    }

    fn peers(&self) -> RawFd {
        self.peers.as_raw_fd()
    }
}

/// Reads in user space before a connection is handed to the kernel, unless configured.
pub const AFTER_READS: u64 = 8;

/// Sets forwarding up at start. With `kernel` (the number of reads before a hand-over),
/// creates the program and maps sized for `files` open descriptors; when the kernel refuses
/// them (no CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, no sockmap support), says so once and
/// leaves forwarding in user space. Returns whether kernel forwarding is on.
pub fn setup(kernel: Option<u64>, files: u64) -> bool {
    let made = kernel.map(|after_reads| {
        let connections = (files / 2).clamp(1, MAX_CONNECTIONS) as u32;
        Kernel::create(connections, after_reads)
            .inspect(|_| log::info!("kernel forwarding on: room for {connections} connections"))
            .map_err(|e| {
                log::warn!("[runtime] forwarding = \"kernel\": cannot set up the BPF sockmap ({e}); forwarding in user space")
            })
            .ok()
    });
    let _ = KERNEL.set(made.flatten());
    active().is_some()
}

/// The process's kernel forwarding, if on.
pub fn active() -> Option<&'static Kernel> {
    KERNEL.get().and_then(Option::as_ref)
}
