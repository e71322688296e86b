//! Healthchecks observed through routing: a dead backend leaves within an interval and comes
//! back after `passes` successes; with every backend down, clients are closed at once.

mod common;

use common::backends::{Backend, Behaviour};
use common::{closed_without_data, free_port, tally, wait_until, Betwixt};
use std::time::{Duration, Instant};

fn config(port: u16, backends: &[&Backend], interval: &str, passes: u32) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.line())).collect();
    format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\nbalance = \"roundrobin\"\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [{}]\n\
         [servers.s.healthcheck]\nkind = \"ping\"\ninterval = \"{interval}\"\ntimeout = \"100ms\"\nfails = 1\npasses = {passes}\n",
        list.join(", ")
    )
}

#[test]
fn dead_backend_leaves_within_an_interval_and_returns() {
    let keep = Backend::start("keep", Behaviour::Named);
    let mut flaky = Backend::start("flaky", Behaviour::Named);
    let flaky_port = flaky.port;
    let port = free_port();
    let bx = Betwixt::start(&config(port, &[&keep, &flaky], "300ms", 2), &["--shards", "1"], &[port]);
    assert!(wait_until(Duration::from_secs(2), || tally(port, 2).contains_key("flaky")));

    flaky.stop();
    let stopped = Instant::now();
    // The check runs every 300 ms with a 100 ms timeout: the backend must be marked down within
    // one interval plus the timeout (and a little scheduling margin).
    let down = format!("backend 127.0.0.1:{flaky_port} is now down");
    assert!(
        wait_until(Duration::from_millis(600), || bx.log_text().contains(&down)),
        "not marked down {:?} after it stopped; log:\n{}",
        stopped.elapsed(),
        bx.log_text()
    );
    let counts = tally(port, 20);
    assert_eq!(counts.get("keep"), Some(&20), "{counts:?}");

    let _back = Backend::start_on("flaky", Behaviour::Named, flaky_port);
    assert!(
        wait_until(Duration::from_secs(3), || tally(port, 2).contains_key("flaky")),
        "restarted backend did not return"
    );
}

#[test]
fn all_backends_down_closes_clients_promptly() {
    let mut only = Backend::start("only", Behaviour::Named);
    let port = free_port();
    let _bx = Betwixt::start(&config(port, &[&only], "200ms", 1), &["--shards", "1"], &[port]);
    only.stop();
    std::thread::sleep(Duration::from_millis(600));
    let started = Instant::now();
    assert!(closed_without_data(port, Duration::from_secs(3)), "client was not closed");
    assert!(started.elapsed() < Duration::from_millis(500), "close took {:?}", started.elapsed());
}
