//! Settings that used to be taken quietly with a wrong meaning: overflowing durations, servers
//! that overlap through a v4-mapped address, a healthcheck interval of a nanosecond, an
//! unbounded shard count. Each is now an error, a floor with a warning, or (where gobetween reads
//! it loosely) gobetween's meaning with a warning.

mod api_client;
mod common;

use api_client::{static_server, Client};
use common::backends::{Backend, Behaviour};
use common::{free_port, run_betwixt, wait_until, Betwixt, TempDir};
use std::time::Duration;

fn server(name: &str, bind: &str, backend: &str) -> String {
    format!(
        "[servers.{name}]\nbind = \"{bind}\"\n\
         [servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [\"{backend}\"]\n"
    )
}

/// Starts betwixt on `config` with `args` and expects it to exit with status 1 within 10 s;
/// returns what it printed.
fn fails_to_start(config: &str, args: &[&str]) -> String {
    let dir = TempDir::new("refused");
    let path = dir.write("c.toml", config);
    let mut bx = Betwixt::start_file(&path, args, dir);
    let status = bx.wait_exit(Duration::from_secs(10));
    let log = bx.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "did not fail to start; log:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    log
}

#[test]
fn v4_mapped_bind_overlapping_a_running_server_is_refused() {
    let backend = Backend::start("b", Behaviour::Named);
    let (api, port) = (free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n{}",
        server("v4", &format!("127.0.0.1:{port}"), &backend.line())
    );
    let _bx = Betwixt::start(&config, &[], &[api, port]);
    let client = Client::http(api);
    for bind in [format!("[::ffff:127.0.0.1]:{port}"), format!("[::ffff:0.0.0.0]:{port}")] {
        let created = client.send("POST", "/servers/mapped", &static_server(&bind, &backend.line()));
        assert_eq!(created.status, 409, "{bind}: {}", created.body);
        assert!(created.message().contains("server \"v4\" listens there"), "{}", created.body);
    }
}

#[test]
fn v4_mapped_bind_overlapping_another_server_fails_the_start() {
    let port = free_port();
    let config = server("a", &format!("127.0.0.1:{port}"), "127.0.0.1:9")
        + &server("b", &format!("[::ffff:127.0.0.1]:{port}"), "127.0.0.1:9");
    let log = fails_to_start(&config, &[]);
    assert!(
        log.contains(&format!(
            "server b: cannot listen on [::ffff:127.0.0.1]:{port}: server \"a\" listens there"
        )),
        "{log}"
    );
}

#[test]
fn shard_count_is_bounded() {
    let port = free_port();
    let plain = server("s", &format!("127.0.0.1:{port}"), "127.0.0.1:9");
    let log = fails_to_start(&plain, &["--shards", "100000"]);
    assert!(log.contains("--shards 100000: at most "), "{log}");
    let log = fails_to_start(&format!("[runtime]\nshards = 100000\n{plain}"), &[]);
    assert!(log.contains("[runtime] shards = 100000: at most "), "{log}");
    let log = fails_to_start(&plain, &["--shards", "0"]);
    assert!(log.contains("--shards 0: there must be at least 1 shard"), "{log}");
}

#[test]
fn an_overflowing_duration_is_an_error() {
    let dir = TempDir::new("duration");
    let check = |extra: &str, text: String| {
        let path = dir.write("c.toml", &text);
        let (status, _, stderr) = run_betwixt(&["check", extra, path.to_str().unwrap()]);
        assert!(!stderr.contains("panicked"), "{stderr}");
        (status.code(), stderr)
    };
    let plain = server("s", "127.0.0.1:1", "127.0.0.1:9");
    // The sum of the parts once wrapped around to 1ns.
    for value in ["340282366920938463463374607431768211455ns1ns", "99999999999999999999h", "2562048h"] {
        // gobetween reads a connection timeout it cannot parse as no limit: a warning, an error
        // under --strict (tests/parity_config.rs); never a wrapped-around 1ns.
        let idle = format!("[defaults]\nclient_idle_timeout = \"{value}\"\n{plain}");
        let (code, stderr) = check("--format=toml", idle.clone());
        assert_eq!(code, Some(0), "{value}: {stderr}");
        assert!(stderr.contains("client_idle_timeout") && stderr.contains("too large"), "{value}: {stderr}");
        assert!(stderr.contains("no limit"), "{value}: {stderr}");
        assert_eq!(check("--strict", idle).0, Some(1), "{value}");
        // Where gobetween refuses an unparsable duration, so does betwixt.
        let timeout = format!(
            "{plain}[servers.s.healthcheck]\nkind = \"ping\"\ninterval = \"1s\"\ntimeout = \"{value}\"\n"
        );
        let (code, stderr) = check("--format=toml", timeout);
        assert_eq!(code, Some(1), "{value}: {stderr}");
        assert!(stderr.contains("healthcheck.timeout") && stderr.contains("too large"), "{value}: {stderr}");
    }
}

#[test]
fn a_healthcheck_interval_below_the_floor_is_raised_with_a_warning() {
    let backend = Backend::start("b", Behaviour::Named);
    let port = free_port();
    let config = server("s", &format!("127.0.0.1:{port}"), &backend.line())
        + "[servers.s.healthcheck]\nkind = \"ping\"\ninterval = \"1ns\"\ntimeout = \"1s\"\n";
    let bx = Betwixt::start(&config, &["--shards", "1"], &[port]);
    let warned = wait_until(Duration::from_secs(5), || {
        bx.log_text().contains(
            "key `servers.s.healthcheck.interval`: 1ns is below betwixt's floor; checking every 100ms",
        )
    });
    assert!(warned, "no warning; log:\n{}", bx.log_text());
    // A ping check connects once per interval: about 10 a second at the floor.
    let before = backend.accepted.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    let checks = backend.accepted.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!((1..=15).contains(&checks), "{checks} checks in one second");
}
