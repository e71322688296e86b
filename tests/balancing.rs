//! Distribution over backends: round robin, weights, priority groups (one shard: exact counts).
//! gobetween parity details (hash choices, byte order, weight 0) are in parity_balancing.rs.

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, static_server, tally, wait_until, Betwixt};
use std::time::Duration;

fn named(names: &[&str]) -> Vec<Backend> {
    names.iter().map(|n| Backend::start(n, Behaviour::Named)).collect()
}

#[test]
fn roundrobin_spreads_exactly() {
    let backends = named(&["a", "b", "c"]);
    let port = free_port();
    let lines: Vec<String> = backends.iter().map(Backend::line).collect();
    let _bx = Betwixt::start(&static_server(port, "roundrobin", &lines, ""), &["--shards", "1"], &[port]);
    let counts = tally(port, 300);
    assert_eq!(counts.get("a"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("c"), Some(&100), "{counts:?}");
}

#[test]
fn weights_one_two_three() {
    let backends = named(&["w1", "w2", "w3"]);
    let port = free_port();
    let lines: Vec<String> =
        backends.iter().zip([1, 2, 3]).map(|(b, w)| format!("{} weight={w}", b.line())).collect();
    let _bx = Betwixt::start(&static_server(port, "weight", &lines, ""), &["--shards", "1"], &[port]);
    let counts = tally(port, 300);
    assert_eq!(counts.get("w1"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("w2"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("w3"), Some(&150), "{counts:?}");
}

#[test]
fn lower_priority_value_wins_until_it_dies() {
    // `weight` uses priorities as gobetween does; `priority_groups` opts other strategies in.
    for (balance, extra) in [("weight", ""), ("roundrobin", "priority_groups = true")] {
        let mut backends = named(&["primary1", "primary2", "standby"]);
        let port = free_port();
        let lines = vec![
            format!("{} priority=1", backends[0].line()),
            format!("{} priority=1", backends[1].line()),
            format!("{} priority=2", backends[2].line()),
        ];
        let check = "[servers.s.healthcheck]\nkind = \"ping\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n";
        let config = static_server(port, balance, &lines, extra) + check;
        let _bx = Betwixt::start(&config, &["--shards", "1"], &[port]);
        let counts = tally(port, 40);
        assert_eq!(counts.get("primary1"), Some(&20), "{balance}: {counts:?}");
        assert_eq!(counts.get("primary2"), Some(&20), "{balance}: {counts:?}");
        assert_eq!(counts.get("standby"), None, "{balance}: {counts:?}");

        backends[0].stop();
        backends[1].stop();
        assert!(
            wait_until(Duration::from_secs(3), || tally(port, 1).contains_key("standby")),
            "{balance}: standby group did not take over"
        );
        let counts = tally(port, 20);
        assert_eq!(counts.get("standby"), Some(&20), "{balance}: {counts:?}");
    }
}
