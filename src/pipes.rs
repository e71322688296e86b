//! The shard's pool of kernel pipes, for moving bulk data without copying it through user space.
//!
//! `splice` moves a socket's received pages into a pipe and from the pipe into the other socket,
//! so the proxy never copies the payload. A connection direction borrows a pipe only while bytes
//! sit in it, as it does with transfer buffers: idle and small-message connections hold none,
//! which keeps the descriptor cost (two per pipe) away from the connection count. Only empty
//! pipes go back to the pool.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes a pipe can hold, as much as a transfer buffer. The pages are the sender's, referenced
/// rather than copied, so the size costs no memory of its own; 1 MiB pipes measured no better.
pub const PIPE_SIZE: usize = 256 * 1024;

/// Empty pipes kept for reuse.
const POOL_LIMIT: usize = 32;

/// Pipes lent out at once per shard; beyond it, directions copy through a buffer instead. This
/// bounds the descriptors splicing can take (two per pipe) on a shard with many bulk streams.
const LENT_LIMIT: usize = 512;

pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet out.
    pub held: usize,
    /// What the pipe holds at most (`PIPE_SIZE` unless the kernel refused to grow it).
    pub capacity: usize,
}

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    static LENT: Cell<usize> = const { Cell::new(0) };
}

/// Lets this shard splice (`[runtime] splice`); a shard that is not enabled lends no pipes.
pub fn enable(on: bool) {
    ENABLED.set(on);
}

pub fn enabled() -> bool {
    ENABLED.get()
}

/// A pipe from the pool or a new one; `None` when splicing is off, the shard has lent its limit
/// or the process cannot open more descriptors (the caller copies instead).
pub fn take() -> Option<Pipe> {
    if !ENABLED.get() || LENT.get() >= LENT_LIMIT {
        return None;
    }
    let pipe = POOL.with(|pool| pool.borrow_mut().pop()).or_else(|| Pipe::open().ok())?;
    LENT.set(LENT.get() + 1);
    Some(pipe)
}

/// Returns a pipe; one that still holds bytes is closed, as those bytes belong to no one now.
pub fn give_back(pipe: Pipe) {
    LENT.set(LENT.get() - 1);
    if pipe.held == 0 {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_LIMIT {
                pool.push(pipe);
            }
        });
    }
}

impl Pipe {
    fn open() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Unprivileged users over their pipe quota cannot grow pipes; the default size still works.
        // SAFETY: plain fcntl on a descriptor we own.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
        let capacity = if size > 0 {
            size as usize
        } else {
            // SAFETY: as above.
            let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            if size <= 0 {
                return Err(io::Error::last_os_error());
            }
            size as usize
        };
        Ok(Pipe { read, write, held: 0, capacity })
    }

    /// Moves what the socket has received (up to the pipe's free room) into the pipe, without
    /// blocking. `None` when the socket has nothing to read; `Some(Ok(0))` at its end of stream.
    pub fn fill_from(&mut self, socket: RawFd) -> Option<io::Result<usize>> {
        let moved = splice(socket, self.write.as_raw_fd(), self.capacity - self.held);
        if let Some(Ok(n)) = moved {
            self.held += n;
        }
        moved
    }

    /// Moves held bytes into the socket, as many as it takes without blocking; `None` when its
    /// send buffer is full.
    pub fn drain_into(&mut self, socket: RawFd) -> Option<io::Result<usize>> {
        let moved = splice(self.read.as_raw_fd(), socket, self.held);
        if let Some(Ok(n)) = moved {
            self.held -= n;
        }
        moved
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> Option<io::Result<usize>> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: both descriptors are open for the duration of the call; no offsets are passed.
    let moved = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    if moved >= 0 {
        return Some(Ok(moved as usize));
    }
    let e = io::Error::last_os_error();
    (e.kind() != io::ErrorKind::WouldBlock).then_some(Err(e))
}

/// Makes the socket non-blocking. Splicing into a socket blocks on a full send buffer unless the
/// socket itself is non-blocking (`SPLICE_F_NONBLOCK` only covers the pipe side).
pub fn set_nonblocking(socket: RawFd) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int from the pointer.
    if unsafe { libc::ioctl(socket, libc::FIONBIO, &mut on) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
