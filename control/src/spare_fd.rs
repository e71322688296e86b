//! Descriptors the accepting threads (every shard, and the control thread for the API,
//! metrics and ACME listeners) keep in reserve for when the process runs out (EMFILE/ENFILE).
//!
//! Out of descriptors, `accept` fails before it looks at the queue, so a client that has
//! connected would wait there, its handshake done and nothing answering, until some other
//! connection closed: to the client, a hung server. With a descriptor in reserve a thread can
//! still take such clients off the queue: it frees the reserve, accepts each waiting client
//! into that slot and resets it at once (the client sees a refusal it can act on), then takes
//! the reserve back. libuv does the same for its servers.
//!
//! The reserves are one pool for the process, one per accepting thread, not one per thread:
//! the slot a thread frees can be taken by another thread's reopening of its own reserve (a
//! shard retries every 10 ms while out of descriptors), and with a reserve per thread the
//! thread that lost the race would have none until a connection closed, its clients left
//! waiting. Whoever takes the slot puts its reserve in the pool, where any thread finds it.
//! The pool is locked only on that cold path (out of descriptors) and at a thread's start.

use std::cell::Cell;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Clients refused per call, so a flood while out of descriptors does not hold the thread.
const REFUSE_AT_ONCE: usize = 64;

/// The reserve descriptors held now.
static RESERVES: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// How many the pool is to hold: one per thread that has called `keep`.
static WANTED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn reserves() -> MutexGuard<'static, Vec<OwnedFd>> {
    // The pool holds only descriptors: a thread that panicked holding the lock left it usable.
    RESERVES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts this thread among the accepting threads (once) and fills the pool up to one
/// reserve per such thread; when the process is out of descriptors this stops quietly and a
/// later call tries again.
pub fn keep() {
    if !COUNTED.replace(true) {
        WANTED.fetch_add(1, Ordering::Relaxed);
    }
    top_up();
}

/// Opens reserves until the pool holds as many as are wanted, or none can be opened.
fn top_up() {
    let mut reserves = reserves();
    while reserves.len() < WANTED.load(Ordering::Relaxed) {
        // SAFETY: open(2) of a constant path; a descriptor it returns is ours alone.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            crate::log_limited!(
                log::Level::Warn,
                "cannot keep a spare descriptor ({}): clients waiting to be accepted are not refused until one frees",
                std::io::Error::last_os_error()
            );
            return;
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        reserves.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// What an accept `error` calls for here: when the process is out of descriptors, the clients
/// waiting on the non-blocking `listener` are refused (see above). Returns a note for the
/// warning the caller logs: how many were refused, if any.
pub fn refuse_if_exhausted(error: &std::io::Error, listener: RawFd) -> String {
    match is_exhaustion(error).then(|| refuse_waiting(listener)) {
        Some(refused) if refused > 0 => format!(" ({refused} waiting clients refused)"),
        _ => String::new(),
    }
}

/// Whether an accept error means the process (or system) has no descriptor left.
fn is_exhaustion(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Out of descriptors: refuses (resets) up to `REFUSE_AT_ONCE` clients waiting on the
/// non-blocking `listener`, through the reserve's slot, and takes the reserve back. Returns how
/// many were refused.
fn refuse_waiting(listener: RawFd) -> usize {
    // The pool's lock ends with this statement: `top_up` takes it again.
    let popped = reserves().pop();
    let Some(reserve) = popped else {
        top_up();
        return 0;
    };
    drop(reserve);
    let mut refused = 0;
    while refused < REFUSE_AT_ONCE {
        // SAFETY: accept4(2) on a listening socket we hold, without asking for the address.
        let client = unsafe {
            libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        };
        if client < 0 {
            // Nobody waiting (EAGAIN), or another thread took the freed slot (EMFILE).
            break;
        }
        // SAFETY: `client` was just accepted and is owned by nothing else.
        let client = unsafe { OwnedFd::from_raw_fd(client) };
        reset_on_close(&client);
        drop(client);
        refused += 1;
    }
    top_up();
    refused
}

/// SO_LINGER 0: closing sends a reset, not a FIN, so the client does not take the close for an
/// answer.
fn reset_on_close(socket: &OwnedFd) {
    let _ = socket2::SockRef::from(socket).set_linger(Some(std::time::Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_reserve_left_by_another_thread_serves_this_one() {
        // Two accepting threads, as a shard and the control thread.
        std::thread::spawn(keep).join().unwrap();
        keep();
        let held = reserves().len();
        assert!(held >= 2, "{held} reserves for two threads");
        // Whoever opened them, this thread can refuse with one, and the pool is whole after.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut waiting = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(refuse_waiting(listener.as_raw_fd()), 1);
        assert_eq!(reserves().len(), held);
        let mut buf = [0u8; 1];
        let refused = waiting.read(&mut buf).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionReset);
    }
}
