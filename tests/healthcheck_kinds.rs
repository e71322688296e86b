//! exec and probe healthchecks, `fails` / `passes` and `initial_status`, observed through
//! routing: which backends the proxy sends new connections to.

mod common;

use common::backends::{Backend, Behaviour};
use common::{closed_without_data, free_port, reported_count, tally, wait_until, Betwixt, TempDir};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An exec healthcheck script whose answer for a backend is the content of a file named after
/// the backend's port: `up` and `down` are the expected outputs, `hang` makes it sleep.
struct Script {
    dir: TempDir,
    path: PathBuf,
}

impl Script {
    fn new() -> Script {
        let dir = TempDir::new("exec");
        let body = format!(
            "#!/bin/sh\nstate=$(cat \"{}/$2\" 2>/dev/null)\n[ \"$state\" = hang ] && exec sleep 5\necho \"$state\"\n",
            dir.0.display()
        );
        let path = dir.write_executable("check.sh", &body);
        Script { dir, path }
    }

    /// Replaces the state atomically, so the script never reads a half-written file.
    fn set(&self, backend: &Backend, state: &str) {
        let staged = self.dir.write("staged", state);
        std::fs::rename(staged, self.dir.0.join(backend.port.to_string())).unwrap();
    }

    fn healthcheck(&self, interval: &str, extra: &str) -> String {
        format!(
            "[servers.s.healthcheck]\nkind = \"exec\"\ninterval = \"{interval}\"\ntimeout = \"300ms\"\n\
             exec_command = \"{}\"\nexec_expected_positive_output = \"up\"\n\
             exec_expected_negative_output = \"down\"\n{extra}",
            self.path.display()
        )
    }
}

/// Backends "a" and "b", both reported up by the check script.
fn two_backends_up() -> (Script, Backend, Backend) {
    let script = Script::new();
    let a = Backend::start("a", Behaviour::Named);
    let b = Backend::start("b", Behaviour::Named);
    script.set(&a, "up");
    script.set(&b, "up");
    (script, a, b)
}

fn config(port: u16, backends: &[&Backend], healthcheck: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.line())).collect();
    format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\nbalance = \"roundrobin\"\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [{}]\n{healthcheck}",
        list.join(", ")
    )
}

/// Waits until new connections reach exactly the backends named in `expected`. Each shard
/// balances on its own, so two connections could each be a different shard's first and both
/// reach "a" while "b" is still live: with four, some shard takes two and, if "b" is live,
/// round robin sends it one of them.
fn routes_to(port: u16, expected: &[&str]) -> bool {
    wait_until(Duration::from_secs(3), || {
        let counts = tally(port, 4 * expected.len().max(1));
        counts.len() == expected.len() && expected.iter().all(|name| counts.contains_key(*name))
    })
}

#[test]
fn exec_outputs_drive_routing() {
    let (script, a, b) = two_backends_up();
    let port = free_port();
    let bx = Betwixt::start(&config(port, &[&a, &b], &script.healthcheck("100ms", "")), &[], &[port]);
    assert!(routes_to(port, &["a", "b"]));

    // Output that is neither expected one gives no verdict, as in gobetween: b stays as it
    // was, up or down, and the log says why.
    let verdicts = [
        ("down", false),
        ("up", true),
        ("who knows", true),
        ("down", false),
        ("who knows", false),
        ("up", true),
        ("hang", false),
    ];
    let mut warnings = 0;
    for (state, live) in verdicts {
        script.set(&b, state);
        if state == "who knows" {
            warnings += 1;
            let warned = wait_until(Duration::from_secs(2), || {
                bx.log_text().matches("printed \"who knows\\n\"").count() >= warnings
            });
            assert!(warned, "unexpected output should be logged as a warning; log:\n{}", bx.log_text());
        }
        let expected: &[&str] = if live { &["a", "b"] } else { &["a"] };
        assert!(routes_to(port, expected), "after b's script says {state:?}; log:\n{}", bx.log_text());
    }

    script.set(&b, "down"); // no hanging script left behind when the test ends
    script.set(&a, "down");
    assert!(wait_until(Duration::from_secs(3), || closed_without_data(port, Duration::from_secs(2))));
}

/// A broken script answers nonsense for every backend at every interval: a warning each would
/// flood the log, so they are rate-limited (10 lines a second, then a count of those left out).
#[test]
fn a_broken_scripts_warnings_are_rate_limited() {
    let script = Script::new();
    let backends: Vec<Backend> = (0..40).map(|_| Backend::start("x", Behaviour::Named)).collect();
    for backend in &backends {
        script.set(backend, "who knows");
    }
    let port = free_port();
    let refs: Vec<&Backend> = backends.iter().collect();
    let bx = Betwixt::start(&config(port, &refs, &script.healthcheck("1s", "")), &[], &[port]);
    let no_verdict = |line: &&str| line.contains("healthcheck exec:") && line.contains("no verdict");
    let counted = |log: &str| -> u64 { log.lines().filter(no_verdict).map(reported_count).sum() };
    assert!(wait_until(Duration::from_secs(6), || counted(&bx.log_text()) >= 100), "{}", bx.log_text());
    let log = bx.log_text();
    let lines = log.lines().filter(no_verdict).count() as u64;
    // 40 a second against 10: of the 100, most were left out (the latest count of those is
    // only written with the next line let through).
    assert!(counted(&log) >= lines + 30, "{lines} lines for {} warnings:\n{log}", counted(&log));
}

#[test]
fn unhealthy_at_start_until_passes_succeed() {
    let script = Script::new();
    let a = Backend::start("a", Behaviour::Named);
    script.set(&a, "up");
    let port = free_port();
    let healthcheck = script.healthcheck("400ms", "initial_status = \"unhealthy\"\npasses = 3\n");
    let started = Instant::now();
    let _bx = Betwixt::start(&config(port, &[&a], &healthcheck), &[], &[port]);
    assert!(closed_without_data(port, Duration::from_secs(2)), "an unhealthy-at-start backend got a client");
    assert!(routes_to(port, &["a"]));
    // Three passes one interval apart: the first check runs at once, the third 800 ms later.
    assert!(started.elapsed() >= Duration::from_millis(800), "live after {:?}", started.elapsed());
}

#[test]
fn fails_consecutive_failures_before_leaving() {
    let (script, a, b) = two_backends_up();
    let port = free_port();
    let healthcheck = script.healthcheck("300ms", "fails = 3\n");
    let _bx = Betwixt::start(&config(port, &[&a, &b], &healthcheck), &["--shards", "1"], &[port]);
    assert!(routes_to(port, &["a", "b"]));

    script.set(&b, "down");
    let failing = Instant::now();
    assert!(wait_until(Duration::from_secs(3), || !tally(port, 2).contains_key("b")), "b never left");
    // Three failed checks 300 ms apart take at least 600 ms.
    assert!(failing.elapsed() >= Duration::from_millis(600), "left after {:?}", failing.elapsed());
}

#[test]
fn tcp_probe_with_both_strategies() {
    let backends: Vec<Backend> =
        ["a", "b", "c"].iter().map(|n| Backend::start(n, Behaviour::Named)).collect();
    let refs: Vec<&Backend> = backends.iter().collect();
    let (starts, regexp) = (free_port(), free_port());
    let probe = |port: u16, name: &str, strategy: &str| {
        config(
            port,
            &refs,
            &format!(
                "[servers.s.healthcheck]\nkind = \"probe\"\ninterval = \"100ms\"\ntimeout = \"300ms\"\n\
             probe_protocol = \"tcp\"\nprobe_send = 'hello\\r\\n'\n{strategy}"
            ),
        )
        .replace("[servers.s", &format!("[servers.{name}"))
    };
    let text = probe(starts, "starts", "probe_recv = 'a\\x0a'\n")
        + &probe(
            regexp,
            "regexp",
            "probe_strategy = \"regexp\"\nprobe_recv = '^(a|c)\\n$'\nprobe_recv_len = 2\n",
        );
    let _bx = Betwixt::start(&text, &[], &[starts, regexp]);
    assert!(routes_to(starts, &["a"]));
    assert!(routes_to(regexp, &["a", "c"]));
}

/// gobetween starts an exec check without a command or a positive output, and runs it as
/// written; betwixt starts it too, with warnings that `--strict` makes errors.
#[test]
fn an_exec_check_without_its_outputs_starts_with_warnings() {
    let dir = TempDir::new("exec-unset");
    let path = dir.write(
        "b.toml",
        "[servers.s]\nbind = \"127.0.0.1:1\"\n[servers.s.discovery]\nkind = \"static\"\n\
         static_list = [\"127.0.0.1:2\"]\n[servers.s.healthcheck]\nkind = \"exec\"\ninterval = \"1s\"\n",
    );
    let path = path.to_str().unwrap();
    let (status, _, stderr) = common::run_betwixt(&["check", path]);
    assert!(status.success(), "{stderr}");
    for key in ["healthcheck.exec_command", "healthcheck.exec_expected_positive_output"] {
        assert!(stderr.contains(&format!("servers.s.{key}")), "{key}: {stderr}");
    }
    let (status, _, stderr) = common::run_betwixt(&["check", "--strict", path]);
    assert!(!status.success() && stderr.contains("exec_command"), "{stderr}");
}
