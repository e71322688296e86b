//! Balancing with gobetween's meaning, through the real binary: `iphash` and `iphash1` send each
//! client where gobetween would (the expectation is computed here with gobetween's algorithm
//! written out independently), `priority` is used by `weight` only, `weight=0`, and
//! roundrobin's order.

mod common;
mod from_address;

use common::backends::{Backend, Behaviour};
use common::{addr, free_port, read_line, static_server, tally, wait_until, Betwixt};
use from_address::{ask_name_from, connect_from};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Go's `hash/fnv.New32a`.
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// gobetween's election (src/balance/iphash.go, iphash1.go) for an IPv4 client of a server
/// bound to a specific IPv4 address (Go then reads the client as 4 bytes). `names` are the
/// eligible backends' `host:port` as written in the backend lines.
fn gobetween_pick(balance: &str, client: Ipv4Addr, names: &[String]) -> String {
    let ip = client.octets();
    match balance {
        "iphash" => {
            let mut sorted = names.to_vec();
            sorted.sort(); // Go's `<` on strings: byte order
            sorted[(fnv32a(&ip) % sorted.len() as u32) as usize].clone()
        }
        "iphash1" => {
            let (mut best, mut result) = (0u32, None);
            for name in names {
                let h = fnv32a(&[&ip[..], name.as_bytes()].concat());
                if h > best {
                    (best, result) = (h, Some(name));
                }
            }
            result.expect("some hash above 0").clone()
        }
        other => unreachable!("{other}"),
    }
}

/// Clients spread over 127.0.0.0/8 (all loopback, so the test can bind them as sources).
fn client(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, (n * 7 % 5) as u8, (n * 13 % 200) as u8, (1 + n * 31 % 250) as u8)
}

/// Five backends on different loopback addresses plus one named `localhost` (hashed as
/// written, not as the address it resolves to). Returns them with their backend lines.
fn pool() -> (Vec<Backend>, Vec<String>) {
    let mut backends: Vec<Backend> = (2..=6)
        .map(|last| Backend::start_at(&format!("b{last}"), Behaviour::Named, Ipv4Addr::new(127, 0, 0, last)))
        .collect();
    backends.push(Backend::start("named", Behaviour::Named));
    let lines = backends
        .iter()
        .map(|b| if b.name == "named" { format!("localhost:{}", b.port) } else { b.line() })
        .collect();
    (backends, lines)
}

/// Waits until betwixt has resolved the `localhost` backend of `pool` (name lookups run on the
/// control thread after the server listens): a client that hashes to it reaches it.
fn wait_for_named(balance: &str, port: u16, lines: &[String]) {
    let plain: Vec<String> = lines.iter().map(|l| l.split(' ').next().unwrap().to_string()).collect();
    let named =
        (0..).map(client).find(|&c| gobetween_pick(balance, c, &plain).starts_with("localhost:")).unwrap();
    let reached = wait_until(Duration::from_secs(5), || {
        ask_name_from(IpAddr::V4(named), addr(port)).as_deref() == Some("named")
    });
    assert!(reached, "{balance}: the client gobetween sends to the localhost backend never reached it");
}

/// The name of the backend behind `line`.
fn name_of<'a>(backends: &'a [Backend], lines: &[String], line: &str) -> &'a str {
    &backends[lines.iter().position(|l| l == line).unwrap()].name
}

#[test]
fn iphash_and_iphash1_send_each_client_where_gobetween_would() {
    for balance in ["iphash", "iphash1"] {
        let (backends, lines) = pool();
        let port = free_port();
        // Several shards: every shard must agree.
        let _bx = Betwixt::start(&static_server(port, balance, &lines, ""), &["--shards", "2"], &[port]);
        wait_for_named(balance, port, &lines);
        let mut used = std::collections::BTreeSet::new();
        for n in 0..60 {
            let source = client(n);
            let want = name_of(&backends, &lines, &gobetween_pick(balance, source, &lines));
            let got = ask_name_from(IpAddr::V4(source), addr(port));
            assert_eq!(got.as_deref(), Some(want), "{balance}: client {source}");
            used.insert(want);
        }
        assert!(used.len() >= 4, "{balance}: the clients should reach most backends: {used:?}");
    }
}

#[test]
fn a_full_backend_is_left_out_before_hashing() {
    for balance in ["iphash", "iphash1"] {
        let (backends, mut lines) = pool();
        // b4 takes one connection at most; a client whose backend is b4 holds it.
        let limited = lines.iter().position(|l| l.starts_with("127.0.0.4:")).unwrap();
        let full_line = lines[limited].clone();
        lines[limited] = format!("{full_line} max_connections=1");
        let port = free_port();
        let _bx = Betwixt::start(&static_server(port, balance, &lines, ""), &["--shards", "1"], &[port]);
        wait_for_named(balance, port, &lines);
        let plain: Vec<String> = lines.iter().map(|l| l.split(' ').next().unwrap().to_string()).collect();
        let holder = (0..).map(client).find(|&c| gobetween_pick(balance, c, &plain) == full_line).unwrap();
        let mut held = connect_from(IpAddr::V4(holder), addr(port)).unwrap();
        assert_eq!(read_line(&mut held).as_deref(), Some("b4"), "{balance}: the holder");

        // gobetween elects over the backends below their limit.
        let eligible: Vec<String> = plain.iter().filter(|l| **l != full_line).cloned().collect();
        let mut moved = 0;
        for n in 0..60 {
            let source = client(n);
            let want = name_of(&backends, &plain, &gobetween_pick(balance, source, &eligible));
            let got = ask_name_from(IpAddr::V4(source), addr(port));
            assert_eq!(got.as_deref(), Some(want), "{balance}: client {source} with b4 full");
            moved += usize::from(
                gobetween_pick(balance, source, &plain) != gobetween_pick(balance, source, &eligible),
            );
        }
        assert!(moved > 0, "{balance}: some client should have had b4");
    }
}

/// Backends named `p1`/`p2` with priority 1 and 2.
fn two_priorities() -> (Vec<Backend>, Vec<String>) {
    let backends = vec![Backend::start("p1", Behaviour::Named), Backend::start("p2", Behaviour::Named)];
    let lines =
        vec![format!("{} priority=1", backends[0].line()), format!("{} priority=2", backends[1].line())];
    (backends, lines)
}

#[test]
fn priority_is_used_by_weight_only() {
    for balance in ["roundrobin", "leastconn", "iphash", "iphash1", "maglev"] {
        let (_backends, lines) = two_priorities();
        let port = free_port();
        let _bx = Betwixt::start(&static_server(port, balance, &lines, ""), &["--shards", "1"], &[port]);
        let counts = if balance.contains("hash") || balance == "maglev" {
            // One connection each from many clients: both priorities must get some.
            let mut counts = std::collections::BTreeMap::new();
            for n in 0..40 {
                let name = ask_name_from(IpAddr::V4(client(n)), addr(port)).unwrap_or_default();
                *counts.entry(name).or_insert(0) += 1;
            }
            counts
        } else {
            tally(port, 20)
        };
        assert!(counts.contains_key("p1") && counts.contains_key("p2"), "{balance}: {counts:?}");
        if balance == "roundrobin" {
            assert_eq!((counts["p1"], counts["p2"]), (10, 10), "{counts:?}");
        }
    }

    let (_backends, lines) = two_priorities();
    let port = free_port();
    let _bx = Betwixt::start(&static_server(port, "weight", &lines, ""), &["--shards", "1"], &[port]);
    let counts = tally(port, 20);
    assert_eq!(counts.get("p1"), Some(&20), "weight keeps to the lowest priority: {counts:?}");
}

#[test]
fn priority_groups_opt_every_strategy_in() {
    let (_backends, lines) = two_priorities();
    let port = free_port();
    let config = static_server(port, "roundrobin", &lines, "priority_groups = true");
    let _bx = Betwixt::start(&config, &["--shards", "1"], &[port]);
    let counts = tally(port, 20);
    assert_eq!(counts.get("p1"), Some(&20), "{counts:?}");
}

#[test]
fn weight_zero_backends_take_traffic_only_when_nothing_else_can() {
    let a = Backend::start("a", Behaviour::Named);
    let z = Backend::start("z", Behaviour::Named);
    let lines = vec![format!("{} weight=1", a.line()), format!("{} weight=0", z.line())];
    let port = free_port();
    let _bx = Betwixt::start(&static_server(port, "weight", &lines, ""), &["--shards", "1"], &[port]);
    assert_eq!(tally(port, 10).get("a"), Some(&10));

    // With `a` at its limit, the weight-0 backend is all that is left.
    let lines = vec![format!("{} weight=1 max_connections=1", a.line()), format!("{} weight=0", z.line())];
    let port = free_port();
    let _bx = Betwixt::start(&static_server(port, "weight", &lines, ""), &["--shards", "1"], &[port]);
    let mut held = std::net::TcpStream::connect(addr(port)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_line(&mut held).as_deref(), Some("a"));
    assert_eq!(tally(port, 5).get("z"), Some(&5));
    drop(held);

    // A group where every weight is 0 is shared evenly.
    let zeros = [Backend::start("z1", Behaviour::Named), Backend::start("z2", Behaviour::Named)];
    let lines: Vec<String> = zeros.iter().map(|b| format!("{} weight=0", b.line())).collect();
    let port = free_port();
    let _bx = Betwixt::start(&static_server(port, "weight", &lines, ""), &["--shards", "1"], &[port]);
    let counts = tally(port, 20);
    assert_eq!((counts.get("z1"), counts.get("z2")), (Some(&10), Some(&10)), "{counts:?}");
}

#[test]
fn roundrobin_goes_in_byte_order_of_host_port() {
    // Listed out of order; gobetween sorts "host:port" byte by byte: 127.0.0.100 < 127.0.0.10:
    // < 127.0.0.2 < 127.0.0.9, whatever the ports.
    let backends: Vec<Backend> = [10, 9, 100, 2]
        .map(|last| Backend::start_at(&format!("h{last}"), Behaviour::Named, Ipv4Addr::new(127, 0, 0, last)))
        .into();
    let lines: Vec<String> = backends.iter().map(Backend::line).collect();
    let port = free_port();
    let _bx = Betwixt::start(&static_server(port, "roundrobin", &lines, ""), &["--shards", "1"], &[port]);
    let order: Vec<String> = (0..8).map(|_| common::ask_name(port).unwrap_or_default()).collect();
    let cycle = ["h100", "h10", "h2", "h9"].map(String::from);
    assert_eq!(order, [cycle.clone(), cycle].concat());
}
