use super::*;
use crate::backend::BackendSpec;
use crate::config::{Protocol, ServerSettings};
use crate::stats::{Counters, Slot};
use std::net::Ipv4Addr;

fn settings(balance: Balance) -> Arc<ServerSettings> {
    Arc::new(ServerSettings {
        name: "s".into(),
        bind: "127.0.0.1:1".into(),
        protocol: Protocol::Tcp,
        balance,
        max_connections: 0,
        client_idle_timeout: None,
        backend_idle_timeout: None,
        backend_connection_timeout: None,
        healthcheck: None,
        access: None,
    })
}

fn spec(n: usize, priority: i32) -> BackendSpec {
    let mut spec = BackendSpec::new(format!("10.0.{}.{}", n / 256, n % 256), 80);
    spec.priority = priority;
    spec
}

fn backend(spec: BackendSpec) -> Arc<Backend> {
    Arc::new(Backend { spec, addrs: Vec::new(), counters: Arc::new(Counters::new(1)) })
}

/// A snapshot of `live` (reusing their counters) with `down` discovered but not live.
fn snapshot(balance: Balance, live: &[Arc<Backend>], down: &[BackendSpec]) -> ServerSnapshot {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ServerSnapshot::build(generation, settings(balance), Arc::new(Counters::new(1)), live.to_vec(), down)
}

fn client(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n * 7919))
}

fn name(snapshot: &ServerSnapshot, index: usize) -> String {
    snapshot.backends[index].spec.address()
}

#[test]
fn roundrobin_cycles_and_skips_tried() {
    let live: Vec<_> = (0..3).map(|n| backend(spec(n, 1))).collect();
    let s = snapshot(Balance::Roundrobin, &live, &[]);
    let mut picker = Picker::new(0);
    let ip = client(0);
    let picks: Vec<usize> = (0..6).map(|_| picker.pick(&s, ip, &[]).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(picker.pick(&s, ip, &[0, 1]), Some(2));
    assert_eq!(picker.pick(&s, ip, &[0, 1, 2]), None);
}

#[test]
fn every_strategy_prefers_the_lowest_priority_and_falls_through() {
    for balance in SUPPORTED.iter().copied() {
        let live = vec![backend(spec(0, 2)), backend(spec(1, 1)), backend(spec(2, 1))];
        let s = snapshot(balance, &live, &[]);
        let mut picker = Picker::new(0);
        for n in 0..20 {
            let pick = picker.pick(&s, client(n), &[]).unwrap();
            assert_ne!(pick, 0, "{balance:?} picked the priority 2 backend");
        }
        assert_eq!(picker.pick(&s, client(1), &[1, 2]), Some(0), "{balance:?}");
        assert_eq!(picker.pick(&s, client(1), &[0, 1, 2]), None, "{balance:?}");
    }
}

#[test]
fn every_strategy_skips_a_full_backend() {
    for balance in SUPPORTED.iter().copied() {
        let mut full = spec(0, 1);
        full.max_connections = 1;
        let live = vec![backend(full), backend(spec(1, 1))];
        assert!(live[0].counters.try_acquire(1));
        let s = snapshot(balance, &live, &[]);
        let mut picker = Picker::new(0);
        for n in 0..20 {
            assert_eq!(picker.pick(&s, client(n), &[]), Some(1), "{balance:?}");
        }
    }
}

#[test]
fn leastconn_picks_fewest_and_rotates_ties() {
    let live: Vec<_> = (0..3).map(|n| backend(spec(n, 1))).collect();
    let s = snapshot(Balance::Leastconn, &live, &[]);
    let mut picker = Picker::new(0);
    Slot::add(&live[0].counters.shard(0).active, 5);
    Slot::add(&live[1].counters.shard(0).active, 2);
    Slot::add(&live[2].counters.shard(0).active, 3);
    assert_eq!(picker.pick(&s, client(0), &[]), Some(1));
    Slot::add(&live[1].counters.shard(0).active, 2);
    assert_eq!(picker.pick(&s, client(0), &[]), Some(2));
    // All equal: successive picks spread instead of sticking to one.
    Slot::sub(&live[0].counters.shard(0).active, 1);
    Slot::add(&live[2].counters.shard(0).active, 1);
    let picks: Vec<usize> = (0..3).map(|_| picker.pick(&s, client(0), &[]).unwrap()).collect();
    let mut sorted = picks.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2], "ties should rotate: {picks:?}");
}

#[test]
fn leastconn_reads_only_its_own_shard() {
    let live: Vec<_> = (0..2)
        .map(|n| {
            Arc::new(Backend { spec: spec(n, 1), addrs: Vec::new(), counters: Arc::new(Counters::new(2)) })
        })
        .collect();
    let s = snapshot(Balance::Leastconn, &live, &[]);
    Slot::add(&live[0].counters.shard(1).active, 9);
    Slot::add(&live[1].counters.shard(0).active, 1);
    assert_eq!(Picker::new(0).pick(&s, client(0), &[]), Some(0));
    assert_eq!(Picker::new(1).pick(&s, client(0), &[]), Some(1));
}

#[test]
fn leastbandwidth_avoids_a_busy_backend() {
    let live: Vec<_> = (0..3).map(|n| backend(spec(n, 1))).collect();
    let s = snapshot(Balance::Leastbandwidth, &live, &[]);
    let mut picker = Picker::new(0);
    picker.pick(&s, client(0), &[]); // takes the first samples
    Slot::add(&live[1].counters.shard(0).rx, 50_000_000);
    std::thread::sleep(std::time::Duration::from_millis(5));
    for _ in 0..10 {
        assert_ne!(picker.pick(&s, client(0), &[]), Some(1));
    }
}

#[test]
fn iphash_is_sticky_per_client() {
    for balance in [Balance::Iphash, Balance::Iphash1] {
        let live: Vec<_> = (0..4).map(|n| backend(spec(n, 1))).collect();
        let s = snapshot(balance, &live, &[]);
        let mut picker = Picker::new(0);
        let mut seen = std::collections::HashSet::new();
        for n in 0..50 {
            let first = picker.pick(&s, client(n), &[]).unwrap();
            seen.insert(first);
            for _ in 0..3 {
                assert_eq!(picker.pick(&s, client(n), &[]), Some(first), "{balance:?}");
            }
            // A mapped IPv4 address is the same client.
            let IpAddr::V4(v4) = client(n) else { unreachable!() };
            assert_eq!(picker.pick(&s, IpAddr::V6(v4.to_ipv6_mapped()), &[]), Some(first));
        }
        assert_eq!(seen.len(), 4, "{balance:?} should use every backend");
    }
}

/// Which backend (by address) each of `clients` lands on.
fn assignment(s: &ServerSnapshot, clients: u32) -> Vec<String> {
    let mut picker = Picker::new(0);
    (0..clients).map(|n| name(s, picker.pick(s, client(n), &[]).unwrap())).collect()
}

fn assert_even(assigned: &[String], backends: usize) {
    let mut counts = std::collections::HashMap::new();
    for b in assigned {
        *counts.entry(b.as_str()).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), backends);
    let even = assigned.len() / backends;
    for (b, count) in counts {
        assert!(count * 4 >= even * 3 && count * 4 <= even * 5, "{b} has {count}, even is {even}");
    }
}

#[test]
fn iphash1_moves_only_the_clients_of_a_backend_that_goes_down() {
    const CLIENTS: u32 = 100_000;
    let specs: Vec<BackendSpec> = (0..10).map(|n| spec(n, 1)).collect();
    let all: Vec<_> = specs.iter().cloned().map(backend).collect();
    let before = assignment(&snapshot(Balance::Iphash1, &all, &[]), CLIENTS);
    assert_even(&before, 10);

    let gone = specs[3].address();
    let survivors: Vec<_> = all.iter().filter(|b| b.spec.address() != gone).cloned().collect();
    let during = assignment(&snapshot(Balance::Iphash1, &survivors, &[specs[3].clone()]), CLIENTS);
    for (b, d) in before.iter().zip(&during) {
        if *b == gone {
            assert_ne!(*d, gone);
        } else {
            assert_eq!(b, d, "a client of a surviving backend moved");
        }
    }
    assert_even(&during, 9);

    let after = assignment(&snapshot(Balance::Iphash1, &all, &[]), CLIENTS);
    assert_eq!(before, after, "clients must return when the backend comes back");
}

#[test]
fn iphash1_does_not_depend_on_discovery_order() {
    let specs: Vec<BackendSpec> = (0..5).map(|n| spec(n, 1)).collect();
    let forward: Vec<_> = specs.iter().cloned().map(backend).collect();
    let backward: Vec<_> = forward.iter().rev().cloned().collect();
    let a = assignment(&snapshot(Balance::Iphash1, &forward, &[]), 10_000);
    let b = assignment(&snapshot(Balance::Iphash1, &backward, &[]), 10_000);
    assert_eq!(a, b);
}

#[test]
fn iphash_modulo_spreads_evenly() {
    let live: Vec<_> = (0..10).map(|n| backend(spec(n, 1))).collect();
    assert_even(&assignment(&snapshot(Balance::Iphash, &live, &[]), 100_000), 10);
}

/// One API request of 100,000 backends froze the control thread for seconds (the weight table
/// was O(steps × backends), the groups O(priorities × backends)). Every strategy must build
/// such a snapshot well within a second in release; 2 s here allows for a debug build.
#[test]
fn a_hundred_thousand_backends_build_fast() {
    const N: usize = 100_000;
    for distinct_priorities in [false, true] {
        let live: Vec<_> = (0..N)
            .map(|n| {
                let mut spec = spec(n, if distinct_priorities { n as i32 } else { 1 });
                spec.weight = 1 + (n % 7) as u32;
                backend(spec)
            })
            .collect();
        let down: Vec<BackendSpec> = (N..N + 1000).map(|n| spec(n, 1)).collect();
        for balance in SUPPORTED.iter().copied() {
            let started = std::time::Instant::now();
            let s = snapshot(balance, &live, &down);
            let elapsed = started.elapsed();
            assert!(elapsed < std::time::Duration::from_secs(2), "{balance:?}: {elapsed:?}");
            assert_eq!(s.groups.len(), if distinct_priorities { N } else { 1 });
            assert_eq!(s.groups[0].members[0], 0, "members keep discovery order");
            assert!(Picker::new(0).pick(&s, client(1), &[]).is_some());
        }
    }
}

#[test]
fn groups_are_ordered_by_priority_and_keep_discovery_order() {
    let live: Vec<_> = [3, 1, 2, 1, 3].iter().enumerate().map(|(n, &p)| backend(spec(n, p))).collect();
    let s = snapshot(Balance::Roundrobin, &live, &[]);
    let groups: Vec<(i32, Vec<usize>)> = s.groups.iter().map(|g| (g.priority, g.members.clone())).collect();
    assert_eq!(groups, vec![(1, vec![1, 3]), (2, vec![2]), (3, vec![0, 4])]);
}
