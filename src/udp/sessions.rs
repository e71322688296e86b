//! The UDP session table of one server on one shard, with no I/O: datagrams and the time are
//! passed in, and the answers say where a datagram goes, when a session ends and when the next
//! deadline falls. The shard layer (`udp::mod`) owns the sockets and acts on the answers.
//!
//! A session belongs to a client address and holds `T` (the shard's backend socket and
//! counters). It ends, as in gobetween, when
//! - its client has been silent for `client_idle_timeout`, or its backend for
//!   `backend_idle_timeout` (counted from the session's start until the first reply);
//! - it has relayed `max_responses` replies;
//! - it has taken `max_requests` datagrams and has nothing left to wait for. Once it has taken
//!   its last datagram it leaves the client's place: that client's next datagram opens a new
//!   session (balanced anew), while the old one still relays replies until one of the limits
//!   above ends it. With no such limit it ends at once. `max_requests = 1` is gobetween's
//!   fire-and-forget mode, whatever else is set, which the shard serves without sessions
//!   (`Limits::fire_and_forget`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How sessions end; 0 and `None` mean no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_requests: u64,
    pub max_responses: u64,
    pub client_idle: Option<Duration>,
    pub backend_idle: Option<Duration>,
}

impl Limits {
    /// Whether a session that takes no more requests still waits for replies.
    fn awaits_replies(&self) -> bool {
        self.max_responses > 0 || self.client_idle.is_some() || self.backend_idle.is_some()
    }

    /// `max_requests = 1`, whatever else is set: every datagram is balanced and sent on its
    /// own and no reply is relayed, as gobetween serves it. The shard then sends through one
    /// socket per backend instead of opening a session per datagram.
    pub fn fire_and_forget(&self) -> bool {
        self.max_requests == 1
    }
}

/// Whose silence ended a session: its client's (`client_idle_timeout`) or its backend's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idled {
    Client,
    Backend,
}

/// Names a session; stale once the session ended (its slot may hold a newer one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id {
    index: u32,
    generation: u32,
}

/// Where a client's datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    pub id: Id,
    /// The session has nothing left to do after this datagram: send it, then `close` it.
    pub then_close: bool,
}

/// What to do with a backend's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send it to `client`; with `then_close` the session ends after it.
    Relay { client: SocketAddr, then_close: bool },
    /// The session has ended: drop the datagram.
    Gone,
}

struct Session<T> {
    client: SocketAddr,
    generation: u32,
    requests: u64,
    responses: u64,
    last_request: Instant,
    /// The session's start until the first reply, then the last reply.
    last_reply: Instant,
    /// Still the session the client's datagrams go to.
    current: bool,
    data: T,
}

impl<T> Session<T> {
    /// Each request has had a reply: nothing it sent can still be answered, unless its backend
    /// answers twice.
    fn answered_all(&self) -> bool {
        self.responses >= self.requests
    }
}

pub struct Sessions<T> {
    limits: Limits,
    slots: Vec<Option<Session<T>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    /// The client's current session.
    by_client: HashMap<SocketAddr, Id>,
    /// Deadlines, earliest first. An entry may be stale (the session ended, or was active since
    /// and now ends later): `expire` checks each against the session when it comes due.
    deadlines: BinaryHeap<Reverse<(Instant, Id)>>,
    live: usize,
}

impl<T> Sessions<T> {
    pub fn new(limits: Limits) -> Self {
        Sessions {
            limits,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_client: HashMap::new(),
            deadlines: BinaryHeap::new(),
            live: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sessions open now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// A datagram from `client`: the session that takes it, or `None` when the client has none
    /// (the caller then picks a backend and calls `open`).
    pub fn request(&mut self, client: SocketAddr, now: Instant) -> Option<Forward> {
        let id = *self.by_client.get(&client)?;
        Some(self.count_request(id, now))
    }

    /// Opens a session for `client` holding `data`, and counts the datagram that opened it.
    pub fn open(&mut self, client: SocketAddr, data: T, now: Instant) -> Forward {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.generations.push(0);
            (self.slots.len() - 1) as u32
        });
        let generation = self.generations[index as usize];
        let id = Id { index, generation };
        self.slots[index as usize] = Some(Session {
            client,
            generation,
            requests: 0,
            responses: 0,
            last_request: now,
            last_reply: now,
            current: true,
            data,
        });
        self.live += 1;
        // A client's previous session, if any, had already taken its last request.
        self.by_client.insert(client, id);
        let forward = self.count_request(id, now);
        if !forward.then_close {
            if let Some(deadline) = self.deadline_of(id) {
                self.deadlines.push(Reverse((deadline, id)));
            }
        }
        forward
    }

    fn count_request(&mut self, id: Id, now: Instant) -> Forward {
        let limits = self.limits;
        let session = self.session_mut(id).expect("sessions in by_client are open");
        session.requests += 1;
        session.last_request = now;
        let last = limits.max_requests > 0 && session.requests >= limits.max_requests;
        if last {
            session.current = false;
            let client = session.client;
            self.by_client.remove(&client);
        }
        Forward { id, then_close: last && !limits.awaits_replies() }
    }

    /// A reply arrived on session `id`'s backend socket.
    pub fn reply(&mut self, id: Id, now: Instant) -> Reply {
        let max_responses = self.limits.max_responses;
        let Some(session) = self.session_mut(id) else { return Reply::Gone };
        session.responses += 1;
        session.last_reply = now;
        let then_close = max_responses > 0 && session.responses >= max_responses;
        Reply::Relay { client: session.client, then_close }
    }

    pub fn get(&self, id: Id) -> Option<&T> {
        self.session(id).map(|s| &s.data)
    }

    pub fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        self.session_mut(id).map(|s| &mut s.data)
    }

    /// Whether session `id` has had a reply for each of its requests: nothing it sent can
    /// still be answered, unless its backend answers twice (`finish` says it as it ends one).
    #[cfg(test)]
    pub fn answered_all(&self, id: Id) -> bool {
        self.session(id).is_some_and(Session::answered_all)
    }

    /// Ends session `id` and hands back what it held.
    pub fn close(&mut self, id: Id) -> Option<T> {
        self.finish(id).map(|(data, _)| data)
    }

    /// Ends session `id` and hands back what it held, and whether each of its requests had a
    /// reply (nothing is still owed on its socket, unless its backend answers twice).
    pub fn finish(&mut self, id: Id) -> Option<(T, bool)> {
        self.session(id)?;
        let session = self.slots[id.index as usize].take()?;
        let answered = session.answered_all();
        if session.current {
            self.by_client.remove(&session.client);
        }
        self.generations[id.index as usize] = session.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        self.compact();
        Some((session.data, answered))
    }

    /// Ends every session whose deadline has passed; `ended` gets each one's data, whose
    /// silence ended it, and whether each of its requests had a reply (see `finish`).
    pub fn expire(&mut self, now: Instant, mut ended: impl FnMut(T, Idled, bool)) {
        while let Some(&Reverse((due, id))) = self.deadlines.peek() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            match self.deadline_of(id) {
                None => {} // ended already
                Some(deadline) if deadline > now => self.deadlines.push(Reverse((deadline, id))),
                Some(_) => {
                    let client_due =
                        self.session(id).and_then(|s| self.limits.client_idle.map(|d| s.last_request + d));
                    let idled =
                        if client_due.is_some_and(|due| due <= now) { Idled::Client } else { Idled::Backend };
                    if let Some((data, answered)) = self.finish(id) {
                        ended(data, idled, answered);
                    }
                }
            }
        }
    }

    /// The earliest time `expire` may end a session (possibly early: it may find nothing due).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((due, _))| *due)
    }

    /// Ends every session (the server is going away).
    pub fn drain(&mut self) -> Vec<T> {
        let ids = self.open_ids();
        ids.into_iter().filter_map(|id| self.close(id)).collect()
    }

    /// When session `id` ends by idleness; `None` if it has ended or never idles out.
    fn deadline_of(&self, id: Id) -> Option<Instant> {
        let session = self.session(id)?;
        let client = self.limits.client_idle.map(|d| session.last_request + d);
        let backend = self.limits.backend_idle.map(|d| session.last_reply + d);
        match (client, backend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn open_ids(&self) -> Vec<Id> {
        let ids = self.slots.iter().enumerate();
        ids.filter_map(|(index, s)| s.as_ref().map(|s| Id { index: index as u32, generation: s.generation }))
            .collect()
    }

    fn session(&self, id: Id) -> Option<&Session<T>> {
        self.slots.get(id.index as usize)?.as_ref().filter(|s| s.generation == id.generation)
    }

    fn session_mut(&mut self, id: Id) -> Option<&mut Session<T>> {
        self.slots.get_mut(id.index as usize)?.as_mut().filter(|s| s.generation == id.generation)
    }

    /// Sessions ended by a reply leave their deadline behind; once those outnumber the open
    /// sessions, the heap is rebuilt from the open ones so that it stays O(open sessions).
    fn compact(&mut self) {
        if self.deadlines.len() <= 2 * self.live + 1024 {
            return;
        }
        let live = self.open_ids();
        self.deadlines =
            live.into_iter().filter_map(|id| Some(Reverse((self.deadline_of(id)?, id)))).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn expired<T>(table: &mut Sessions<T>, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        table.expire(now, |data, _, _| out.push(data));
        out
    }

    #[test]
    fn one_session_per_client_until_it_idles_out() {
        let t0 = Instant::now();
        let mut table = Sessions::new(Limits { client_idle: Some(secs(5)), ..Limits::default() });
        assert_eq!(table.request(client(1), t0), None);
        let a = table.open(client(1), "a", t0);
        assert!(!a.then_close);
        let b = table.open(client(2), "b", t0);
        assert_eq!(table.request(client(1), t0 + secs(3)), Some(Forward { id: a.id, then_close: false }));
        assert_eq!(table.next_deadline(), Some(t0 + secs(5)));
        // b is silent for 5 s; a spoke at 3 s, so its deadline moved to 8 s.
        assert_eq!(expired(&mut table, t0 + secs(5)), vec!["b"]);
        assert_eq!(table.request(client(2), t0 + secs(5)), None);
        assert_eq!(table.get(b.id), None);
        assert_eq!(table.len(), 1);
        assert_eq!(expired(&mut table, t0 + secs(7)), Vec::<&str>::new());
        assert_eq!(expired(&mut table, t0 + secs(8)), vec!["a"]);
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn backend_silence_ends_a_session_even_while_the_client_talks() {
        let t0 = Instant::now();
        let mut table = Sessions::new(Limits { backend_idle: Some(secs(2)), ..Limits::default() });
        let a = table.open(client(1), (), t0);
        table.request(client(1), t0 + secs(1));
        assert!(matches!(table.reply(a.id, t0 + secs(1)), Reply::Relay { then_close: false, .. }));
        table.request(client(1), t0 + secs(2));
        assert_eq!(expired(&mut table, t0 + secs(2)).len(), 0);
        assert_eq!(expired(&mut table, t0 + secs(3)).len(), 1);
    }

    #[test]
    fn expiry_says_whether_a_request_was_left_unanswered() {
        let t0 = Instant::now();
        let mut table = Sessions::new(Limits { client_idle: Some(secs(1)), ..Limits::default() });
        let answered = table.open(client(1), "answered", t0);
        table.reply(answered.id, t0);
        let owed = table.open(client(2), "owed", t0);
        table.reply(owed.id, t0);
        table.request(client(2), t0);
        let mut ended = Vec::new();
        table.expire(t0 + secs(1), |data, _, answered| ended.push((data, answered)));
        ended.sort();
        assert_eq!(ended, vec![("answered", true), ("owed", false)]);
    }

    #[test]
    fn max_responses_ends_the_session_at_the_answer() {
        let t0 = Instant::now();
        let mut table = Sessions::new(Limits { max_responses: 2, ..Limits::default() });
        let a = table.open(client(1), (), t0);
        assert!(!table.answered_all(a.id));
        assert_eq!(table.reply(a.id, t0), Reply::Relay { client: client(1), then_close: false });
        assert!(table.answered_all(a.id));
        assert_eq!(table.reply(a.id, t0), Reply::Relay { client: client(1), then_close: true });
        table.close(a.id).unwrap();
        assert_eq!(table.reply(a.id, t0), Reply::Gone);
        // The client's next datagram opens a new session, in the same slot but a new id.
        assert_eq!(table.request(client(1), t0), None);
        let b = table.open(client(1), (), t0);
        assert_ne!(a.id, b.id);
        assert_eq!(table.close(a.id), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn max_requests_moves_the_client_on_and_the_old_session_waits_for_replies() {
        let t0 = Instant::now();
        let limits = Limits { max_requests: 2, max_responses: 1, ..Limits::default() };
        let mut table = Sessions::new(limits);
        let a = table.open(client(1), "a", t0);
        assert_eq!(table.request(client(1), t0), Some(Forward { id: a.id, then_close: false }));
        // Two requests taken: the third opens a new session while `a` waits for its reply.
        assert_eq!(table.request(client(1), t0), None);
        let b = table.open(client(1), "b", t0);
        assert_eq!(table.len(), 2);
        assert!(!table.answered_all(a.id), "two requests, one reply");
        assert_eq!(table.reply(a.id, t0), Reply::Relay { client: client(1), then_close: true });
        assert!(!table.answered_all(a.id));
        assert_eq!(table.close(a.id), Some("a"));
        assert!(!table.answered_all(a.id), "ended");
        assert_eq!(table.request(client(1), t0).map(|f| f.id), Some(b.id));
    }

    #[test]
    fn max_requests_with_nothing_to_wait_for_ends_at_once() {
        let limits = Limits { max_requests: 3, ..Limits::default() };
        assert!(!limits.fire_and_forget());
        assert!(Limits { max_requests: 1, ..Limits::default() }.fire_and_forget());
        // Also with limits that would wait for replies: gobetween relays none.
        let waiting =
            Limits { max_requests: 1, max_responses: 1, client_idle: Some(secs(5)), ..Limits::default() };
        assert!(waiting.fire_and_forget());
        let t0 = Instant::now();
        let mut table = Sessions::new(limits);
        let a = table.open(client(1), (), t0);
        assert!(!table.request(client(1), t0).unwrap().then_close);
        assert_eq!(table.request(client(1), t0), Some(Forward { id: a.id, then_close: true }));
        table.close(a.id);
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn exhausted_session_idles_out_from_its_last_request() {
        let t0 = Instant::now();
        let limits = Limits { max_requests: 1, client_idle: Some(secs(2)), ..Limits::default() };
        let mut table = Sessions::new(limits);
        let a = table.open(client(1), "a", t0);
        assert!(!a.then_close);
        let b = table.open(client(1), "b", t0 + secs(1));
        assert_eq!(table.len(), 2);
        assert_eq!(expired(&mut table, t0 + secs(2)), vec!["a"]);
        assert!(matches!(table.reply(b.id, t0 + secs(2)), Reply::Relay { .. }));
        assert_eq!(expired(&mut table, t0 + secs(3)), vec!["b"]);
    }

    #[test]
    fn drain_ends_everything_and_stale_deadlines_stay_bounded() {
        let t0 = Instant::now();
        let limits = Limits { max_responses: 1, client_idle: Some(secs(60)), ..Limits::default() };
        let mut table = Sessions::new(limits);
        for port in 0..10_000u16 {
            let forward = table.open(client(port), port, t0);
            assert!(matches!(table.reply(forward.id, t0), Reply::Relay { then_close: true, .. }));
            table.close(forward.id);
        }
        assert!(table.is_empty());
        assert!(table.deadlines.len() <= 1024 + 1, "{}", table.deadlines.len());
        assert!(table.slots.len() == 1, "slots are reused");
        for port in 0..3 {
            table.open(client(port), port, t0);
        }
        let mut drained = table.drain();
        drained.sort();
        assert_eq!(drained, vec![0, 1, 2]);
        assert!(table.is_empty() && table.by_client.is_empty());
    }
}
