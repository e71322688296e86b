//! A shard's doorbell: an eventfd the control thread writes to when it has changed what the
//! shard should do, so that a shard with nothing to do sleeps until then instead of looking at
//! its inbox on a timer (fifty wake-ups a second per shard, each a pass of its event loop).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub struct Doorbell(OwnedFd);

impl Doorbell {
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a descriptor we now own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else holds it.
        Ok(Doorbell(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the descriptor readable until the shard `answer`s. Rings before the answer merge
    /// into one; a ring after it makes the descriptor readable again, so none is lost.
    pub fn ring(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64. The only possible failure is a counter at its
        // maximum (EAGAIN), which is readable already.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears the rings so far. The shard answers before it looks at what changed, so a ring
    /// that comes while it looks is kept for its next wait.
    pub fn answer(&self) {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64. EAGAIN (nothing rang) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }

    /// The descriptor to wait on: readable once the doorbell has rung.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(bell: &Doorbell) -> bool {
        let mut poll = libc::pollfd { fd: bell.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, no wait.
        unsafe { libc::poll(&mut poll, 1, 0) == 1 }
    }

    #[test]
    fn rings_until_answered_and_merges_rings() {
        let bell = Doorbell::new().unwrap();
        assert!(!rung(&bell));
        bell.ring();
        bell.ring();
        assert!(rung(&bell));
        bell.answer();
        assert!(!rung(&bell), "one answer clears every ring before it");
        bell.ring();
        assert!(rung(&bell), "a ring after the answer is kept");
    }
}
