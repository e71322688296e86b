//! Backend sockets a UDP server holds on a shard beyond a session: the fire-and-forget socket
//! per backend address; idle sockets of sessions that ended at their answer, kept for the next
//! session to the same address; and lingering sockets of sessions that ended while their
//! backend still owed replies, held unread for a while so that their ports are not handed out
//! again (see `Pool::linger`).

use betwixt_control::snapshot::ServerSnapshot;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Idle backend sockets one server keeps per shard, for all its backends together (and never
/// more than its `max_connections`): room for the sessions a busy DNS server has in flight at
/// once, so that each query does not cost a `socket`, `connect` and `close`.
const IDLE_SOCKETS: usize = 1024;

/// An idle socket unused for this long is closed when its queue is next touched: the pool
/// follows the traffic down after a burst.
const IDLE_REST: Duration = Duration::from_secs(10);

/// How long the socket of a session that ended with requests unanswered is held before it
/// closes: the time a late reply (to a client's retry, say) plausibly takes to arrive.
const LINGER: Duration = Duration::from_secs(2);

/// Lingering sockets one server holds per shard (and never more than its `max_connections`);
/// past this the oldest closes early.
const LINGERING_SOCKETS: usize = 1024;

/// `most` sockets of a kind, and never more than the server's `max_connections`: a limit on
/// sessions is read as a limit on the sockets they leave behind too.
fn held_limit(most: usize, max_connections: u32) -> usize {
    match max_connections {
        0 => most,
        sessions => most.min(sessions as usize),
    }
}

/// Sockets connected to backend addresses and held between uses: the fire-and-forget socket
/// per address, and idle sockets of sessions that ended at their answer; those of backends that
/// left the snapshot close when the snapshot changes. And lingering sockets, never used again,
/// which close when their time is up.
#[derive(Default)]
pub struct Pool {
    generation: u64,
    pub sockets: HashMap<SocketAddr, UdpSocket>,
    /// Oldest first: the socket taken is the one that has rested longest; with the time it
    /// was put there.
    idle: HashMap<SocketAddr, VecDeque<(UdpSocket, Instant)>>,
    idle_count: usize,
    /// Sockets of ended sessions with their closing time, earliest first (they all linger
    /// for `LINGER`).
    lingering: VecDeque<(UdpSocket, Instant)>,
}

impl Pool {
    /// Closes the sockets of backend addresses `snapshot` no longer has.
    pub fn refresh(&mut self, snapshot: &ServerSnapshot) {
        if self.generation == snapshot.generation {
            return;
        }
        self.generation = snapshot.generation;
        let known = |addr: &SocketAddr| snapshot.backends.iter().any(|b| b.addrs.contains(addr));
        self.sockets.retain(|addr, _| known(addr));
        self.idle.retain(|addr, _| known(addr));
        self.idle_count = self.idle.values().map(VecDeque::len).sum();
    }

    /// Keeps `socket`, connected to `peer`, for a later session; closes it when the pool is full.
    /// Only the socket of a session that had a reply for each of its requests comes here:
    /// nothing the backend was asked is still unanswered on it.
    pub fn put_idle(&mut self, snapshot: &ServerSnapshot, socket: UdpSocket, peer: SocketAddr, now: Instant) {
        self.refresh(snapshot);
        let limit = held_limit(IDLE_SOCKETS, snapshot.settings.max_connections);
        let queue = self.idle.entry(peer).or_default();
        while queue.front().is_some_and(|(_, since)| now.duration_since(*since) > IDLE_REST) {
            queue.pop_front();
            self.idle_count -= 1;
        }
        if self.idle_count < limit {
            queue.push_back((socket, now));
            self.idle_count += 1;
        }
    }

    /// An idle socket connected to one of `addrs`, drained. Why a reply cannot reach the wrong
    /// client through it: it comes from a session whose every request was answered, so the
    /// backend owes nothing on it; anything that arrived while it was idle (a backend answering
    /// twice, a duplicated datagram) is found here and the socket is closed instead of reused,
    /// and the backend's later datagrams on it are only answers to the new session's requests.
    /// What is left is a backend that answers one request twice with the second answer held back
    /// until the socket's next session has begun; `docs/udp.md` says so.
    pub fn take_idle(
        &mut self,
        snapshot: &ServerSnapshot,
        addrs: &[SocketAddr],
        now: Instant,
    ) -> Option<(UdpSocket, SocketAddr)> {
        self.refresh(snapshot);
        for &addr in addrs {
            let Some(queue) = self.idle.get_mut(&addr) else { continue };
            while let Some((socket, since)) = queue.pop_front() {
                self.idle_count -= 1;
                if now.duration_since(since) > IDLE_REST {
                    continue; // rested too long: closed
                }
                match crate::sock::read_now(socket.as_raw_fd(), &mut [0; 1]) {
                    Ok(None) => return Some((socket, addr)),
                    // A stray datagram, or an ICMP error left on it: closed, never reused.
                    _ => log::debug!("idle socket to {addr} was not quiet: closed"),
                }
            }
        }
        None
    }

    /// Holds `socket`, whose session ended with requests its backend has not answered, until
    /// `LINGER` from `now`. Closed at once, its port would be free for the next socket the
    /// kernel binds, and a new session's socket given that port, connected to the same
    /// backend, would take the late reply and relay it to the wrong client. It is never read:
    /// with its receive buffer at the minimum, what still arrives on it is dropped. At most
    /// `LINGERING_SOCKETS`, or `max_connections` if fewer, are held: past that the oldest
    /// closes.
    pub fn linger(&mut self, socket: UdpSocket, now: Instant, max_connections: u32) {
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1);
        let limit = held_limit(LINGERING_SOCKETS, max_connections);
        while self.lingering.len() >= limit {
            self.lingering.pop_front();
        }
        self.lingering.push_back((socket, now + LINGER));
    }

    /// Closes the lingering sockets whose time is up by `now`.
    pub fn end_lingering(&mut self, now: Instant) {
        while self.lingering.front().is_some_and(|&(_, until)| until <= now) {
            self.lingering.pop_front();
        }
    }

    /// When the earliest lingering socket is to close.
    pub fn next_lingering_end(&self) -> Option<Instant> {
        self.lingering.front().map(|&(_, until)| until)
    }

    pub fn clear(&mut self) {
        self.sockets.clear();
        self.idle.clear();
        self.idle_count = 0;
        self.lingering.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound_socket() -> (UdpSocket, u16) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    fn port_is_free(port: u16) -> bool {
        UdpSocket::bind(("127.0.0.1", port)).is_ok()
    }

    #[test]
    fn a_lingering_socket_holds_its_port_until_its_time_is_up() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        let (first, first_port) = bound_socket();
        let (second, second_port) = bound_socket();
        pool.linger(first, t0, 0);
        pool.linger(second, t0 + Duration::from_secs(1), 0);
        pool.end_lingering(t0 + LINGER - Duration::from_millis(1));
        assert_eq!(pool.next_lingering_end(), Some(t0 + LINGER));
        assert!(!port_is_free(first_port), "closed before its time");
        pool.end_lingering(t0 + LINGER);
        assert_eq!(pool.next_lingering_end(), Some(t0 + Duration::from_secs(1) + LINGER));
        assert!(port_is_free(first_port));
        assert!(!port_is_free(second_port));
        pool.clear();
        assert!(port_is_free(second_port));
        assert_eq!(pool.next_lingering_end(), None);
    }

    #[test]
    fn past_the_limit_the_oldest_lingering_socket_closes_early() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        let (oldest, oldest_port) = bound_socket();
        pool.linger(oldest, t0, 0);
        for _ in 1..LINGERING_SOCKETS {
            pool.linger(bound_socket().0, t0 + Duration::from_millis(1), 0);
        }
        assert!(!port_is_free(oldest_port));
        pool.linger(bound_socket().0, t0 + Duration::from_millis(2), 0);
        assert!(port_is_free(oldest_port), "the oldest was not let go");
        assert_eq!(pool.lingering.len(), LINGERING_SOCKETS);
        // A server limited to 10 sessions keeps no more than 10 lingering sockets either.
        pool.linger(bound_socket().0, t0 + Duration::from_millis(3), 10);
        assert_eq!(pool.lingering.len(), 10);
    }
}
