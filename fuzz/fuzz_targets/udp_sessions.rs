#![no_main]
//! The UDP session table (`src/udp/sessions.rs`) driven by a fuzzed sequence of datagrams,
//! replies, closes and clock ticks, checked against a plain model of the sessions: each answer
//! names the right session and client, a stale id never reaches a newer session, and `expire`
//! ends exactly the sessions whose idle deadline has passed, naming a side that was idle and
//! saying rightly whether a request was left unanswered.

#[allow(dead_code)]
#[path = "../../src/udp/sessions.rs"]
mod sessions;

use sessions::{Forward, Id, Idled, Limits, Reply, Sessions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the model knows of an open session.
struct Model {
    client: SocketAddr,
    data: u64,
    requests: u64,
    responses: u64,
    last_request: Instant,
    last_reply: Instant,
}

struct Run {
    table: Sessions<u64>,
    limits: Limits,
    open: HashMap<Id, Model>,
    /// Every id handed out, open or not: stale ones must find nothing.
    ids: Vec<Id>,
    next_data: u64,
    now: Instant,
}

impl Run {
    fn deadline(&self, m: &Model) -> Option<Instant> {
        let client = self.limits.client_idle.map(|d| m.last_request + d);
        let backend = self.limits.backend_idle.map(|d| m.last_reply + d);
        match (client, backend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn close(&mut self, id: Id) {
        let expected = self.open.remove(&id).map(|m| m.data);
        assert_eq!(self.table.close(id), expected, "close {id:?}");
    }

    fn datagram(&mut self, client: SocketAddr) {
        let forward = match self.table.request(client, self.now) {
            Some(forward) => {
                let m = self.open.get_mut(&forward.id).expect("a request went to a closed session");
                assert_eq!(m.client, client, "a request went to another client's session");
                m.requests += 1;
                m.last_request = self.now;
                forward
            }
            None => {
                let data = self.next_data;
                self.next_data += 1;
                let forward: Forward = self.table.open(client, data, self.now);
                assert!(!self.open.contains_key(&forward.id), "a new session took an open one's id");
                let (last_request, last_reply) = (self.now, self.now);
                let model = Model { client, data, requests: 1, responses: 0, last_request, last_reply };
                self.open.insert(forward.id, model);
                self.ids.push(forward.id);
                forward
            }
        };
        let m = &self.open[&forward.id];
        if self.limits.max_requests > 0 {
            assert!(m.requests <= self.limits.max_requests, "more requests than max_requests");
        }
        if forward.then_close {
            self.close(forward.id);
        }
    }

    fn reply(&mut self, id: Id) {
        match (self.table.reply(id, self.now), self.open.get_mut(&id)) {
            (Reply::Gone, None) => {}
            (Reply::Relay { client, then_close }, Some(m)) => {
                assert_eq!(client, m.client, "a reply went to another client");
                m.last_reply = self.now;
                m.responses += 1;
                if then_close {
                    self.close(id);
                }
            }
            (answer, model) => panic!("reply on {id:?}: {answer:?}, open: {}", model.is_some()),
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        let mut ended = Vec::new();
        self.table.expire(self.now, |data, idled, answered| ended.push((data, idled, answered)));
        for (data, idled, answered) in ended {
            let id = self.open.iter().find(|(_, m)| m.data == data).map(|(id, _)| *id);
            let id = id.expect("expire ended a session twice");
            let m = &self.open[&id];
            let blamed = match idled {
                Idled::Client => self.limits.client_idle.map(|d| m.last_request + d),
                Idled::Backend => self.limits.backend_idle.map(|d| m.last_reply + d),
            };
            assert!(blamed.is_some_and(|d| d <= self.now), "expire named a side that was not idle");
            assert!(self.deadline(m).is_some_and(|d| d <= self.now), "expire ended a live session early");
            assert_eq!(answered, m.responses >= m.requests, "expire misjudged what was answered");
            self.open.remove(&id);
        }
        for m in self.open.values() {
            assert!(!self.deadline(m).is_some_and(|d| d <= self.now), "expire left a session past its deadline");
        }
        if let Some(next) = self.table.next_deadline() {
            let earliest = self.open.values().filter_map(|m| self.deadline(m)).min();
            assert!(earliest.is_none_or(|e| next <= e), "next_deadline after a session's deadline");
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((head, events)) = data.split_first_chunk::<4>() else { return };
    let idle = |b: u8| (b & 0x80 != 0).then(|| Duration::from_millis(u64::from(b & 0x7f) * 10));
    let limits = Limits {
        max_requests: u64::from(head[0] % 4),
        max_responses: u64::from(head[1] % 4),
        client_idle: idle(head[2]),
        backend_idle: idle(head[3]),
    };
    let mut run = Run {
        table: Sessions::new(limits),
        limits,
        open: HashMap::new(),
        ids: Vec::new(),
        next_data: 0,
        now: Instant::now(),
    };
    for pair in events.chunks_exact(2) {
        let (op, arg) = (pair[0] % 5, pair[1]);
        let pick = |run: &Run| run.ids.get(usize::from(arg) % run.ids.len().max(1)).copied();
        match op {
            0 | 1 => run.datagram(SocketAddr::from(([127, 0, 0, 1], u16::from(arg % 8)))),
            2 => {
                if let Some(id) = pick(&run) {
                    run.reply(id);
                }
            }
            3 => {
                if let Some(id) = pick(&run) {
                    run.close(id);
                    assert!(run.table.get(id).is_none(), "a closed session is still there");
                }
            }
            _ => run.tick(Duration::from_millis(u64::from(arg) * 5)),
        }
        for (id, m) in &run.open {
            assert_eq!(run.table.get(*id), Some(&m.data), "{id:?} holds another session's data");
        }
    }
    let mut left = run.table.drain();
    left.sort_unstable();
    let mut expected: Vec<u64> = run.open.values().map(|m| m.data).collect();
    expected.sort_unstable();
    assert_eq!(left, expected, "drain");
});
