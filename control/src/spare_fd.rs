//! One descriptor each accepting thread (every shard, and the control thread for the API,
//! metrics and ACME listeners) keeps in reserve for when the process runs out (EMFILE/ENFILE).
//!
//! Out of descriptors, `accept` fails before it looks at the queue, so a client that has
//! connected would wait there, its handshake done and nothing answering, until some other
//! connection closed: to the client, a hung server. With a descriptor in reserve the thread can
//! still take such clients off the queue: it frees the reserve, accepts each waiting client
//! into that slot and resets it at once (the client sees a refusal it can act on), then takes
//! the reserve back. libuv does the same for its servers.

use std::cell::RefCell;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Clients refused per call, so a flood while out of descriptors does not hold the thread.
const REFUSE_AT_ONCE: usize = 64;

thread_local! {
    static RESERVE: RefCell<Option<OwnedFd>> = const { RefCell::new(None) };
}

/// Opens this thread's reserve descriptor unless it holds one; when the process is out of
/// descriptors this fails quietly and a later call tries again.
pub fn keep() {
    RESERVE.with_borrow_mut(|reserve| {
        if reserve.is_none() {
            // SAFETY: open(2) of a constant path; a descriptor it returns is ours alone.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd >= 0 {
                // SAFETY: `fd` was just opened and is owned by nothing else.
                *reserve = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            } else {
                crate::log_limited!(
                    log::Level::Warn,
                    "cannot keep a spare descriptor ({}): clients waiting to be accepted are not refused until one frees",
                    std::io::Error::last_os_error()
                );
            }
        }
    });
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
    if RESERVE.with_borrow_mut(Option::take).is_none() {
        keep();
        return 0;
    }
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
    keep();
    refused
}

/// SO_LINGER 0: closing sends a reset, not a FIN, so the client does not take the close for an
/// answer.
fn reset_on_close(socket: &OwnedFd) {
    let _ = socket2::SockRef::from(socket).set_linger(Some(std::time::Duration::ZERO));
}
