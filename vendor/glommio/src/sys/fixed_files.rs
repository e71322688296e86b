//! The main ring's registered-file table (`GLOMMIO_FIXED_FILES=1`, a measurement switch).
//!
//! A request on a registered file names its slot in the ring's table (`IOSQE_FIXED_FILE`)
//! instead of a descriptor, which spares the kernel the look-up and reference count of the
//! descriptor (`fget`/`fput`) on every request. A stream's socket takes a slot when the stream
//! is made and gives it back when the stream is dropped; both changes of the table are
//! `IORING_OP_FILES_UPDATE` requests that go in with the next submission, so registering costs
//! no system call of its own.
//!
//! The table holds a reference to each socket it names: closing the descriptor alone does not
//! close the socket. The slot's release, queued when the stream is dropped, does; the socket's
//! FIN (or reset) leaves with the next submission rather than at `close`.

use ahash::AHashMap;
use std::{os::unix::io::RawFd, sync::OnceLock};

/// The switch, read once.
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("GLOMMIO_FIXED_FILES").is_some_and(|v| v == "1"))
}

/// Slots per ring at most; the soft `RLIMIT_NOFILE` bounds it too (the kernel refuses a larger
/// table). Streams beyond it use their descriptor, as without the switch.
const MAX_SLOTS: u64 = 65536;

/// Which socket each slot names, and the free slots.
#[derive(Debug)]
pub(crate) struct FixedFiles {
    /// Slot → descriptor, -1 for a free slot. `IORING_OP_FILES_UPDATE` reads the entry when
    /// the request is submitted, so the entry must live as long as the ring: this boxed table
    /// does, and never moves. An update submitted after the slot changed hands again reads
    /// the newest entry, which is what the table should end up holding anyway.
    table: Box<[RawFd]>,
    free: Vec<u32>,
    by_fd: AHashMap<RawFd, u32>,
}

impl FixedFiles {
    /// The table's size, or `None` when the switch is off.
    pub(crate) fn wanted_slots() -> Option<usize> {
        if !enabled() {
            return None;
        }
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
        Some(soft.min(MAX_SLOTS) as usize)
    }

    /// An empty (all free) table of `slots` entries, to register with the ring as it is.
    pub(crate) fn new(slots: usize) -> Self {
        FixedFiles {
            table: vec![-1; slots].into_boxed_slice(),
            free: (0..slots as u32).rev().collect(),
            by_fd: AHashMap::new(),
        }
    }

    pub(crate) fn table(&self) -> &[RawFd] {
        &self.table
    }

    /// Takes a slot for `fd`: returns the slot and the table entry an update request reads.
    pub(crate) fn take(&mut self, fd: RawFd) -> Option<(u32, *const RawFd)> {
        let slot = self.free.pop()?;
        self.table[slot as usize] = fd;
        self.by_fd.insert(fd, slot);
        Some((slot, &self.table[slot as usize]))
    }

    /// Frees `fd`'s slot: returns it and the (now -1) entry an update request reads.
    pub(crate) fn release(&mut self, fd: RawFd) -> Option<(u32, *const RawFd)> {
        let slot = self.by_fd.remove(&fd)?;
        self.table[slot as usize] = -1;
        self.free.push(slot);
        Some((slot, &self.table[slot as usize]))
    }

    /// The slot naming `fd`, if it has one.
    pub(crate) fn slot(&self, fd: RawFd) -> Option<u32> {
        self.by_fd.get(&fd).copied()
    }
}
