//! Healthchecks observed through routing: a dead backend leaves within an interval and comes
//! back after `passes` successes; with every backend down, clients are closed at once.

mod common;

use common::backends::{Backend, Behaviour};
use common::{closed_without_data, free_port, tally, wait_until, Betwixt, TempDir};
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

/// A backend going down says why: the line carries the failing check's reason (a refused
/// connect, a probe's reply, escaped and bounded), and at debug level every failed check is
/// logged with its reason too.
#[test]
fn down_line_says_why_the_check_failed() {
    let refusing = common::RefusingPort::new();
    let closed = refusing.port;
    // It answers its name, "wrong\n", where the probe wants "PONG".
    let wrong = Backend::start("wrong", Behaviour::Named);
    let (ping_port, probe_port) = (free_port(), free_port());
    let check = "interval = \"100ms\"\ntimeout = \"500ms\"\nfails = 2\npasses = 1\n";
    let text = format!(
        "[servers.pinged]\nbind = \"127.0.0.1:{ping_port}\"\n\
         [servers.pinged.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{closed}\"]\n\
         [servers.pinged.healthcheck]\nkind = \"ping\"\n{check}\
         [servers.probed]\nbind = \"127.0.0.1:{probe_port}\"\n\
         [servers.probed.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n\
         [servers.probed.healthcheck]\nkind = \"probe\"\n{check}\
         probe_protocol = \"tcp\"\nprobe_send = 'ping\\n'\nprobe_recv = 'PONG'\n",
        wrong.line()
    );
    let dir = TempDir::new("down-why");
    let path = dir.write("c.toml", &text);
    let args = [std::ffi::OsStr::new("-c"), path.as_os_str(), std::ffi::OsStr::new("--shards=1")];
    let bx = Betwixt::start_args(&args, &[("RUST_LOG", "debug".into())], dir);
    let refused = format!(
        "server pinged: backend 127.0.0.1:{closed} is now down: connect to 127.0.0.1:{closed}: Connection refused"
    );
    let mismatch = format!(
        "server probed: backend {} is now down: probe got \"wron\", expected a reply starting with \"PONG\"",
        wrong.line()
    );
    let logged = wait_until(Duration::from_secs(10), || {
        let log = bx.log_text();
        log.contains(&refused) && log.contains(&mismatch)
    });
    let log = bx.log_text();
    assert!(logged, "{log}");
    // fails = 2: the first failed check is logged before the backend goes down.
    let failed = format!("server pinged: backend 127.0.0.1:{closed}: healthcheck failed: connect to");
    assert!(log.lines().filter(|l| l.contains(&failed)).count() >= 2, "{log}");
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
