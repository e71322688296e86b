use super::*;
use crate::backend::BackendSpec;
use crate::config::{Protocol, ServerSettings};
use crate::stats::{Counters, Slot};
use std::net::Ipv4Addr;

fn settings(balance: Balance) -> Arc<ServerSettings> {
    Arc::new(settings_with(balance, false, ClientBytes::Ipv4))
}

fn settings_with(balance: Balance, priority_groups: bool, client_bytes: ClientBytes) -> ServerSettings {
    ServerSettings {
        name: "s".into(),
        bind: "127.0.0.1:1".into(),
        protocol: Protocol::Tcp,
        balance,
        priority_groups,
        access_log: true,
        half_close: true,
        client_bytes,
        max_connections: 0,
        client_idle_timeout: None,
        backend_idle_timeout: None,
        backend_connection_timeout: None,
        healthcheck: None,
        access: None,
        sni: None,
        send_proxy: None,
        accept_proxy: None,
        tls: None,
        udp: Default::default(),
    }
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
    snapshot_with(settings(balance), live, down)
}

fn snapshot_with(
    settings: Arc<ServerSettings>,
    live: &[Arc<Backend>],
    down: &[BackendSpec],
) -> ServerSnapshot {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ServerSnapshot::build(generation, settings, Arc::new(Counters::new(1)), live.to_vec(), down)
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
fn priority_groups_make_every_strategy_prefer_the_lowest_priority() {
    for balance in SUPPORTED.iter().copied() {
        let live = vec![backend(spec(0, 2)), backend(spec(1, 1)), backend(spec(2, 1))];
        let s = snapshot_with(Arc::new(settings_with(balance, true, ClientBytes::Ipv4)), &live, &[]);
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
    for balance in [Balance::Iphash, Balance::Iphash1, Balance::Maglev] {
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
fn consistent_strategies_move_only_the_clients_of_a_backend_that_goes_down() {
    const CLIENTS: u32 = 100_000;
    for balance in [Balance::Iphash1, Balance::Maglev] {
        let specs: Vec<BackendSpec> = (0..10).map(|n| spec(n, 1)).collect();
        let all: Vec<_> = specs.iter().cloned().map(backend).collect();
        let before = assignment(&snapshot(balance, &all, &[]), CLIENTS);
        assert_even(&before, 10);

        let gone = specs[3].address();
        let survivors: Vec<_> = all.iter().filter(|b| b.spec.address() != gone).cloned().collect();
        let during = assignment(&snapshot(balance, &survivors, &[specs[3].clone()]), CLIENTS);
        for (b, d) in before.iter().zip(&during) {
            if *b == gone {
                assert_ne!(*d, gone, "{balance:?}");
            } else {
                assert_eq!(b, d, "{balance:?}: a client of a surviving backend moved");
            }
        }
        assert_even(&during, 9);

        let after = assignment(&snapshot(balance, &all, &[]), CLIENTS);
        assert_eq!(before, after, "{balance:?}: clients must return when the backend comes back");
    }
}

#[test]
fn hash_strategies_do_not_depend_on_discovery_order() {
    for balance in [Balance::Iphash, Balance::Iphash1, Balance::Maglev] {
        let specs: Vec<BackendSpec> = (0..5).map(|n| spec(n, 1)).collect();
        let forward: Vec<_> = specs.iter().cloned().map(backend).collect();
        let backward: Vec<_> = forward.iter().rev().cloned().collect();
        let a = assignment(&snapshot(balance, &forward, &[]), 10_000);
        let b = assignment(&snapshot(balance, &backward, &[]), 10_000);
        assert_eq!(a, b, "{balance:?}");
    }
}

#[test]
fn iphash_modulo_spreads_evenly() {
    let live: Vec<_> = (0..10).map(|n| backend(spec(n, 1))).collect();
    assert_even(&assignment(&snapshot(Balance::Iphash, &live, &[]), 100_000), 10);
}

/// CPU time this thread has used: unlike the time on a clock, it does not grow while the
/// thread waits for a CPU that tests running beside it (or a busy machine) hold.
fn thread_cpu_time() -> std::time::Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write into.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) }, 0);
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// One API request of 100,000 backends froze the control thread for seconds in a release
/// build (the weight table was O(steps × backends), the groups O(priorities × backends)).
/// Every strategy builds such a snapshot in 0.1–0.25 s of CPU in release and 0.3–0.7 s in a
/// debug build; the limits (1 s, 5 s) leave room for a slow machine and still fail the
/// quadratic cost. CPU time, not a clock: two tests a CPU made the clock read 2 s.
#[test]
fn a_hundred_thousand_backends_build_fast() {
    let limit = std::time::Duration::from_secs(if cfg!(debug_assertions) { 5 } else { 1 });
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
            let started = thread_cpu_time();
            let s = snapshot(balance, &live, &down);
            let used = thread_cpu_time() - started;
            assert!(used < limit, "{balance:?}: {used:?} of CPU");
            // Only `weight` groups by priority (gobetween's meaning).
            let grouped = distinct_priorities && balance == Balance::Weight;
            assert_eq!(s.groups.len(), if grouped { N } else { 1 }, "{balance:?}");
            assert!(Picker::new(0).pick(&s, client(1), &[]).is_some());
        }
    }
}

#[test]
fn only_weight_uses_priority_by_default() {
    for balance in SUPPORTED.iter().copied() {
        let live = vec![backend(spec(0, 2)), backend(spec(1, 1)), backend(spec(2, 1))];
        let s = snapshot(balance, &live, &[]);
        let mut picker = Picker::new(0);
        let used: std::collections::HashSet<usize> =
            (0..300).map(|n| picker.pick(&s, client(n), &[]).unwrap()).collect();
        if balance == Balance::Weight {
            assert!(!used.contains(&0), "weight picked the priority 2 backend");
            assert_eq!(picker.pick(&s, client(1), &[1, 2]), Some(0), "weight falls through to priority 2");
        } else {
            assert_eq!(used.len(), 3, "{balance:?} should spread over every priority: {used:?}");
        }
    }
}

/// Backends from gobetween backend lines, in the order given.
fn pool(lines: &[&str]) -> Vec<Arc<Backend>> {
    lines.iter().map(|line| backend(line.parse().unwrap())).collect()
}

/// Picks for `client` from a snapshot of `live` whose server uses `form`.
fn pick_name(
    balance: Balance,
    form: ClientBytes,
    live: &[Arc<Backend>],
    client: &str,
    tried: &[usize],
) -> String {
    let s = snapshot_with(Arc::new(settings_with(balance, false, form)), live, &[]);
    name(&s, Picker::new(0).pick(&s, client.parse().unwrap(), tried).unwrap())
}

#[test]
fn iphash_and_iphash1_match_the_parity_vectors() {
    use ClientBytes::{DualStack, Ipv4};
    // gobetween parity notes §2.9, computed by a separate Python re-implementation:
    // (client, form, iphash's pick, iphash1's pick) per pool.
    let p3 = ["10.1.0.1:8000", "10.1.0.2:8000", "10.1.0.3:8000"];
    // Sorted byte-wise: 10.0.0.100:80 < 10.0.0.10:80 < 10.0.0.2:80 < 10.0.0.9:80.
    let s4 = ["10.0.0.10:80", "10.0.0.9:80", "10.0.0.100:80", "10.0.0.2:80"];
    let vectors = [
        (&p3[..], "10.0.0.1", Ipv4, "10.1.0.3:8000", "10.1.0.3:8000"),
        (&p3, "10.0.0.1", DualStack, "10.1.0.2:8000", "10.1.0.2:8000"),
        (&p3, "192.168.1.10", Ipv4, "10.1.0.1:8000", "10.1.0.3:8000"),
        (&p3, "192.168.1.10", DualStack, "10.1.0.2:8000", "10.1.0.1:8000"),
        (&p3, "127.0.0.1", Ipv4, "10.1.0.2:8000", "10.1.0.2:8000"),
        (&p3, "127.0.0.1", DualStack, "10.1.0.3:8000", "10.1.0.2:8000"),
        (&p3, "2001:db8::1", DualStack, "10.1.0.3:8000", "10.1.0.3:8000"),
        (&s4, "10.0.0.1", Ipv4, "10.0.0.100:80", "10.0.0.100:80"),
        (&s4, "127.0.0.1", Ipv4, "10.0.0.10:80", "10.0.0.9:80"),
        (&s4, "127.0.0.1", DualStack, "10.0.0.9:80", "10.0.0.2:80"),
        (&s4, "192.168.1.10", Ipv4, "10.0.0.2:80", "10.0.0.10:80"),
    ];
    for (lines, client, form, iphash, iphash1) in vectors {
        let live = pool(lines);
        assert_eq!(pick_name(Balance::Iphash, form, &live, client, &[]), iphash, "iphash {client} {form:?}");
        assert_eq!(
            pick_name(Balance::Iphash1, form, &live, client, &[]),
            iphash1,
            "iphash1 {client} {form:?}"
        );
    }
    // Host names are hashed as written, not resolved.
    let l3 = pool(&["localhost:8002", "localhost:8000", "localhost:8001"]);
    assert_eq!(pick_name(Balance::Iphash, Ipv4, &l3, "127.0.0.1", &[]), "localhost:8001");
    assert_eq!(pick_name(Balance::Iphash1, Ipv4, &l3, "127.0.0.1", &[]), "localhost:8002");
}

#[test]
fn a_full_backend_is_left_out_before_hashing() {
    use ClientBytes::{DualStack, Ipv4};
    // P3 with 10.1.0.2:8000 full is gobetween's election over P3 minus it (§2.9 removal rows).
    let mut lines: Vec<BackendSpec> = ["10.1.0.1:8000", "10.1.0.2:8000 max_connections=1", "10.1.0.3:8000"]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    lines[2].max_connections = 5; // limited but not full: must not change the answer
    let live: Vec<_> = lines.into_iter().map(backend).collect();
    assert!(live[1].counters.try_acquire(1));
    assert_eq!(pick_name(Balance::Iphash, Ipv4, &live, "10.0.0.1", &[]), "10.1.0.1:8000");
    assert_eq!(pick_name(Balance::Iphash, DualStack, &live, "10.0.0.1", &[]), "10.1.0.1:8000");
    assert_eq!(pick_name(Balance::Iphash1, Ipv4, &live, "127.0.0.1", &[]), "10.1.0.3:8000");
    assert_eq!(pick_name(Balance::Iphash1, DualStack, &live, "192.168.1.10", &[]), "10.1.0.1:8000");
    assert_eq!(pick_name(Balance::Iphash1, Ipv4, &live, "10.0.0.1", &[]), "10.1.0.3:8000");
    // A retry leaves out the backend already tried the same way.
    let p3 = pool(&["10.1.0.1:8000", "10.1.0.2:8000", "10.1.0.3:8000"]);
    let s = snapshot_with(Arc::new(settings_with(Balance::Iphash1, false, Ipv4)), &p3, &[]);
    let second = s.backends.iter().position(|b| b.spec.address() == "10.1.0.2:8000").unwrap();
    assert_eq!(pick_name(Balance::Iphash1, Ipv4, &p3, "127.0.0.1", &[second]), "10.1.0.3:8000");
    assert_eq!(pick_name(Balance::Iphash, Ipv4, &p3, "127.0.0.1", &[second]), "10.1.0.3:8000");
}

/// gobetween's hash, written out again independently of `hash::Fnv32`.
fn go_fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// `net.IP` of the accepted connection as gobetween sees it.
fn go_ip(client: IpAddr, dual_stack: bool) -> Vec<u8> {
    match client {
        IpAddr::V4(v4) if dual_stack => v4.to_ipv6_mapped().octets().to_vec(),
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// gobetween's iphash.go and iphash1.go over `names` (the eligible backends' `host:port`).
fn go_elect(balance: Balance, ip: &[u8], names: &[String]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort();
    match balance {
        Balance::Iphash => sorted[(go_fnv32a(ip) % sorted.len() as u32) as usize].clone(),
        _ => {
            let (mut best, mut result) = (0u32, None);
            for name in names {
                let h = go_fnv32a(&[ip, name.as_bytes()].concat());
                if h > best {
                    (best, result) = (h, Some(name.clone()));
                }
            }
            result.unwrap()
        }
    }
}

#[test]
fn iphash_and_iphash1_choose_what_gobetween_would() {
    // Pools of mixed address lengths and host names, so byte order differs from numeric order.
    let mut names: Vec<String> =
        (0..40).map(|n| format!("10.0.{}.{}:{}", n % 3, n * 37 % 250, 80 + n % 7)).collect();
    names.extend(
        ["[::1]:9000", "[2001:db8::7]:80", "backend-a.example:8080", "localhost:3000"].map(String::from),
    );
    for size in [1, 2, 3, 7, 44] {
        let names: Vec<String> = names.iter().take(size).cloned().collect();
        let live: Vec<_> = names.iter().map(|n| backend(n.parse().unwrap())).collect();
        for (form, dual_stack) in [(ClientBytes::Ipv4, false), (ClientBytes::DualStack, true)] {
            for balance in [Balance::Iphash, Balance::Iphash1] {
                let s = snapshot_with(Arc::new(settings_with(balance, false, form)), &live, &[]);
                let mut picker = Picker::new(0);
                for n in 0..500u32 {
                    let ip = if n % 5 == 4 {
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, n as u16, 1])
                    } else {
                        IpAddr::V4(Ipv4Addr::from(n.wrapping_mul(2_654_435_761)))
                    };
                    let want = go_elect(balance, &go_ip(ip, dual_stack), &names);
                    let got = name(&s, picker.pick(&s, ip, &[]).unwrap());
                    assert_eq!(got, want, "{balance:?} {form:?} client {ip}, {size} backends");
                }
            }
        }
    }
}

#[test]
fn weight_zero_is_used_only_when_nothing_else_is_left() {
    let lines = |ws: &[u32]| -> Vec<Arc<Backend>> {
        ws.iter()
            .enumerate()
            .map(|(n, &w)| {
                let mut s = spec(n, 1);
                s.weight = w;
                s.max_connections = 1;
                backend(s)
            })
            .collect()
    };
    let picks = |live: &[Arc<Backend>], n: u32| -> Vec<usize> {
        let s = snapshot(Balance::Weight, live, &[]);
        let mut picker = Picker::new(0);
        (0..n).map(|k| picker.pick(&s, client(k), &[]).unwrap()).collect()
    };
    // A weight-0 backend beside a weighted one never gets a connection...
    let live = lines(&[0, 1, 0]);
    assert!(picks(&live, 30).iter().all(|&p| p == 1));
    // ...until the weighted one is full (gobetween's group is then the weight-0 ones: uniform).
    assert!(live[1].counters.try_acquire(1));
    let used = picks(&live, 30);
    assert_eq!(used.iter().filter(|&&p| p == 0).count(), 15, "{used:?}");
    assert_eq!(used.iter().filter(|&&p| p == 2).count(), 15, "{used:?}");
    // Alone in its group, or all of the group weight 0: it is used (evenly).
    assert!(picks(&lines(&[0]), 5).iter().all(|&p| p == 0));
    let used = picks(&lines(&[0, 0, 0]), 30);
    for b in 0..3 {
        assert_eq!(used.iter().filter(|&&p| p == b).count(), 10, "{used:?}");
    }
    // A weight-0 backend of priority 1 beats a weighted one of priority 2 (lowest priority first).
    let mut standby = spec(7, 2);
    standby.weight = 5;
    let mut zero = spec(8, 1);
    zero.weight = 0;
    assert!(picks(&[backend(zero), backend(standby)], 10).iter().all(|&p| p == 0));
}

#[test]
fn roundrobin_goes_in_byte_order_of_host_port() {
    let live = pool(&["10.0.0.10:80", "10.0.0.9:80", "10.0.0.100:80", "10.0.0.2:80"]);
    let s = snapshot(Balance::Roundrobin, &live, &[]);
    let mut picker = Picker::new(0);
    let order: Vec<String> = (0..8).map(|_| name(&s, picker.pick(&s, client(0), &[]).unwrap())).collect();
    let cycle = ["10.0.0.100:80", "10.0.0.10:80", "10.0.0.2:80", "10.0.0.9:80"];
    assert_eq!(order, [cycle, cycle].concat());
}

/// Shards enter a weighted sequence at places of their own, so that after a start, a reload or
/// a health change their first connections do not all go to the same backend.
#[test]
fn shards_start_the_weighted_sequence_apart() {
    let live: Vec<_> = (0..8).map(|n| backend(spec(n, 1))).collect();
    let s = snapshot(Balance::Weight, &live, &[]);
    let firsts: std::collections::HashSet<_> =
        (0..8).map(|shard| Picker::new(shard).pick(&s, client(0), &[]).unwrap()).collect();
    assert!(firsts.len() > 2, "first picks of 8 shards: {firsts:?}");
    // Each shard still goes through the whole sequence: every backend once in 8 picks.
    let mut picker = Picker::new(3);
    let mut picks: Vec<usize> = (0..8).map(|_| picker.pick(&s, client(0), &[]).unwrap()).collect();
    picks.sort();
    assert_eq!(picks, (0..8).collect::<Vec<_>>());
}
