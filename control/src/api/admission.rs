//! How many connections an HTTP endpoint (API, metrics) holds at once, in all and per client
//! address, so that one client — or a few — cannot fill the control thread with connections.

use crate::balance::canonical_ip;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections open at once; 0 means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub total: u32,
    pub per_client: u32,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_client: HashMap<IpAddr, u32>,
}

/// The connections one listener holds now.
#[derive(Clone, Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// A place taken by one connection, given back on drop.
#[derive(Debug)]
pub struct Place {
    counts: Arc<Mutex<Counts>>,
    client: IpAddr,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Admission {
        Admission { limits, counts: Arc::default() }
    }

    /// A place for a connection from `client`, or `None` when it would exceed a limit.
    pub fn admit(&self, client: IpAddr) -> Option<Place> {
        // `::ffff:a.b.c.d` is the same client as `a.b.c.d`.
        let client = canonical_ip(client);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mine = counts.per_client.get(&client).copied().unwrap_or(0);
        let full = |count: u32, limit: u32| limit != 0 && count >= limit;
        if full(counts.total, self.limits.total) || full(mine, self.limits.per_client) {
            return None;
        }
        counts.total += 1;
        counts.per_client.insert(client, mine + 1);
        Some(Place { counts: self.counts.clone(), client })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(mine) = counts.per_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                counts.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn per_client_and_total_limits() {
        let admission = Admission::new(ConnectionLimits { total: 3, per_client: 2 });
        let a1 = admission.admit(ip("192.0.2.1")).unwrap();
        let _a2 = admission.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(admission.admit(ip("192.0.2.1")).is_none(), "a third from one client");
        let _b1 = admission.admit(ip("192.0.2.2")).unwrap();
        assert!(admission.admit(ip("192.0.2.3")).is_none(), "a fourth in all");
        drop(a1);
        let _c1 = admission.admit(ip("192.0.2.3")).unwrap();
        assert!(admission.admit(ip("192.0.2.4")).is_none());
    }

    #[test]
    fn zero_is_no_limit_and_places_are_returned() {
        let admission = Admission::new(ConnectionLimits { total: 0, per_client: 0 });
        let places: Vec<Place> = (0..1000).map(|_| admission.admit(ip("::1")).unwrap()).collect();
        drop(places);
        let counts = admission.counts.lock().unwrap();
        assert_eq!(counts.total, 0);
        assert!(counts.per_client.is_empty(), "no entry is left behind for a gone client");
    }
}
