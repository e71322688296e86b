//! Process-level behaviour: CPU affinity, logging configuration, name resolution of backends.

mod common;

use common::backends::{Backend, Behaviour};
use common::{ask_name, free_port, serve_until_named, wait_until, Betwixt, TempDir};
use std::process::{Command, Stdio};
use std::time::Duration;

fn simple(port: u16, backend: &str, head: &str) -> String {
    format!(
        "{head}\n[servers.s]\nbind = \"127.0.0.1:{port}\"\n[servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"{backend}\"]\n"
    )
}

/// CPUs each thread of `pid` may run on, from /proc.
fn thread_cpus(pid: u32) -> Vec<String> {
    let mut lists = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
            lists.push(line.split(':').nth(1).unwrap().trim().to_string());
        }
    }
    lists
}

#[test]
fn shards_stay_inside_the_inherited_affinity_mask() {
    let backend = Backend::start("pinned", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("taskset");
    let path = dir.write("c.toml", &simple(port, &backend.line(), ""));
    let log = dir.0.join("log");
    let mut child = Command::new("taskset")
        .args(["-c", "0", common::binary(), "-c", path.to_str().unwrap()])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset (util-linux) is needed");
    let served = wait_until(Duration::from_secs(5), || ask_name(port).as_deref() == Some("pinned"));
    let cpus = thread_cpus(child.id());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(served, "not serving under taskset; log:\n{text}");
    assert!(cpus.len() >= 2, "expected control and shard threads: {cpus:?}");
    assert!(cpus.iter().all(|c| c == "0"), "a thread escaped the mask: {cpus:?}");
    assert!(text.contains("starting 1 shard(s) on cpus [0]"), "{text}");
}

#[test]
fn json_logs_go_to_the_configured_file() {
    let backend = Backend::start("logged", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("logfile");
    let file = dir.0.join("betwixt.log.json");
    // An unknown key: a warning to log.
    let head = format!(
        "[logging]\nlevel = \"debug\"\nformat = \"json\"\noutput = \"{}\"\nsurely_unknown = 1\n",
        file.display()
    );
    let path = dir.write("c.toml", &simple(port, &backend.line(), &head));
    let (served, stdout) = serve_until_named(&["-c", path.to_str().unwrap()], port, "logged");
    assert!(served);
    assert!(stdout.is_empty(), "logs leaked to stdout");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON line: {line}");
        // logrus' keys, in its (sorted) order.
        let at = |key: &str| line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key}: {line}"));
        assert!(
            at("level") == 1
                && at("level") < at("msg")
                && at("msg") < at("target")
                && at("target") < at("time")
        );
        let parsed: Result<sonic_rs::Value, _> = sonic_rs::from_str(line);
        assert!(parsed.is_ok(), "not JSON: {line}");
    }
    assert!(text.contains("\"level\":\"debug\"") || text.contains("\"level\":\"info\""), "{text}");
    // logrus' name for the warning level.
    assert!(text.contains("\"level\":\"warning\""), "{text}");
}

#[test]
fn warn_level_hides_info() {
    let backend = Backend::start("quiet", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("level");
    let path = dir.write(
        "c.toml",
        &simple(port, &backend.line(), "[logging]\nlevel = \"warn\"\noutput = \"stdout\"\n"),
    );
    let (served, stdout) = serve_until_named(&["-c", path.to_str().unwrap()], port, "quiet");
    assert!(served);
    let text = String::from_utf8_lossy(&stdout);
    assert!(!text.contains("INFO"), "info lines at warn level:\n{text}");
}

#[test]
fn backend_host_names_are_resolved() {
    let backend = Backend::start("by-name", Behaviour::Named);
    let port = free_port();
    let _bx = Betwixt::start(&simple(port, &format!("localhost:{}", backend.port), ""), &[], &[port]);
    assert!(wait_until(Duration::from_secs(5), || ask_name(port).as_deref() == Some("by-name")));
}
