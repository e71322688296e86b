//! The configuration as users meet it: `betwixt check`, gobetween's own files, clear errors,
//! environment substitution, the command line.

mod common;

use common::backends::{Backend, Behaviour};
use common::{ask_name, free_port, run_betwixt, wait_until, Betwixt, TempDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gobetween_sample(name: &str) -> PathBuf {
    let path = repo().join("../shared/gobetween").join(name);
    assert!(
        path.exists(),
        "gobetween sample {} missing (shared/ must sit beside the repository)",
        path.display()
    );
    path
}

#[test]
fn every_shipped_config_passes_check() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("toml" | "json")) {
            continue;
        }
        // Shipped examples read cleanly: no warning, even under --strict.
        let (status, stdout, stderr) = run_betwixt(&["check", "--strict", path.to_str().unwrap()]);
        assert!(status.success() && stderr.is_empty(), "{}: {stderr}", path.display());
        assert!(
            stdout.contains("[servers.") || stdout.contains("\"servers\""),
            "{}: no servers printed:\n{stdout}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "expected example configs in config/");
}

/// gobetween's samples must parse; the only acceptable complaint is a feature not built yet.
fn assert_parses(path: &Path, extra: &[&str]) {
    let mut args = vec!["check", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (status, stdout, stderr) = run_betwixt(&args);
    if !status.success() {
        assert!(stderr.contains("not supported yet"), "{}: {stderr}", path.display());
        return;
    }
    assert!(stdout.contains("sample"), "{}: normalized config not printed:\n{stdout}", path.display());
}

#[test]
fn gobetween_samples_parse() {
    // The TOML sample's servers (tcp and udp) are all built: it passes outright.
    let sample = gobetween_sample("gobetween.toml");
    let (status, stdout, stderr) = run_betwixt(&["check", sample.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("udpsample") && stdout.contains("max_responses = 1"), "{stdout}");
    assert_parses(&gobetween_sample("gobetween.toml"), &[]);
    assert_parses(&gobetween_sample("gobetween.json"), &[]);
    assert_parses(&gobetween_sample("gobetween.json"), &["-f", "json"]);
}

/// The commented-out reference block of gobetween.toml, uncommented, is valid configuration.
#[test]
fn gobetween_reference_block_parses() {
    let text = std::fs::read_to_string(gobetween_sample("gobetween.toml")).unwrap();
    let start = text.find("#[servers.default]").expect("reference block");
    let mut block = String::new();
    let mut seen = std::collections::HashSet::new();
    let mut table = String::new();
    let mut in_array = false;
    for line in text[start..].lines() {
        // Settings are commented out with one '#'; explanations use "##" or trail behind.
        let Some(setting) = line.trim_start().strip_prefix('#') else { continue };
        let setting = setting.trim();
        if in_array {
            in_array = !setting.starts_with(']');
            block.push_str(setting);
            block.push('\n');
            continue;
        }
        if setting.starts_with('[') && !setting.starts_with("[#") {
            table = setting.split(']').next().unwrap().to_string();
            block.push_str(setting);
            block.push('\n');
            continue;
        }
        let Some((key, value)) = setting.split_once('=') else { continue };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        // The block lists each discovery/healthcheck kind as an alternative: keep the first
        // occurrence of every key within a table.
        if !seen.insert(format!("{table}.{key}")) {
            continue;
        }
        in_array = value.trim_start().starts_with('[') && !value.contains(']');
        block.push_str(setting);
        block.push('\n');
    }
    // The block names its files `/path/to/...`; a start, and so `check`, reads them.
    let dir = TempDir::new("reference");
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    for name in ["cert.pem", "key.pem", "file.pem", "file.crt", "file.key", "cacert.pem"] {
        let pem = if name.contains("key") { pair.key_pair.serialize_pem() } else { pair.cert.pem() };
        dir.write(name, &pem);
    }
    let block = block.replace("/path/to/", &format!("{}/", dir.0.display()));
    let path = dir.write("reference.toml", &block);
    let (status, stdout, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(status.success(), "reference block rejected: {stderr}\n---\n{block}");
    for key in
        ["backends_tls", "hostname_matching_strategy", "max_responses", "proxy_protocol", "probe_recv_len"]
    {
        assert!(stdout.contains(key), "{key} lost in normalized output:\n{stdout}");
    }
}

/// An unknown key is a warning, as gobetween ignores it; `--strict` makes it an error. Either
/// way the message names the file, the line, the key and the likely intended key. A check that
/// fails prints no configuration: its stdout, fed to a deploy step, must never look like a file
/// that passed.
#[test]
fn unknown_key_names_file_line_key_and_suggestion() {
    let dir = TempDir::new("bad");
    let path = dir.write(
        "bad.toml",
        "[servers.web]\nbind = \"127.0.0.1:1\"\nbalanse = \"weight\"\n\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n",
    );
    for (strict, label) in [(false, "config warning"), (true, "config error")] {
        let mut args = vec!["check", path.to_str().unwrap()];
        if strict {
            args.push("--strict");
        }
        let (status, stdout, stderr) = run_betwixt(&args);
        assert_eq!(status.success(), !strict, "{stderr}");
        match strict {
            true => assert!(stdout.is_empty(), "configuration printed by a failed check:\n{stdout}"),
            false => assert!(stdout.contains("[servers.web]"), "{stdout}"),
        }
        assert!(stderr.contains(label), "{stderr}");
        assert!(stderr.contains("bad.toml"), "{stderr}");
        assert!(stderr.contains("line 3"), "{stderr}");
        assert!(stderr.contains("servers.web.balanse"), "{stderr}");
        assert!(stderr.contains("did you mean `balance`"), "{stderr}");
    }
}

/// Values gobetween refuses are errors; values it reads loosely are errors under `--strict`.
/// Both name the line and the key.
#[test]
fn bad_values_are_located() {
    let dir = TempDir::new("values");
    let cases = [
        ("[defaults]\nclient_idle_timeout = \"10 minutes\"\n", "line 2", "defaults.client_idle_timeout", true),
        (
            "[servers.a]\nbind = \"127.0.0.1:1\"\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = [\n  \"127.0.0.1:2\",\n  \"127.0.0.1:3 weight=heavy\",\n]\n",
            "line 7",
            "servers.a.discovery.static_list[1]",
            true,
        ),
        ("[servers.a]\nbind = \"127.0.0.1:1\"\nbalance = \"random\"\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = []\n", "line 3", "servers.a.balance", false),
        ("[servers.a]\nbind = \"nowhere\"\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = []\n", "line 2", "servers.a.bind", false),
    ];
    for (text, line, key, tolerated) in cases {
        let path = dir.write("case.toml", text);
        let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
        assert_eq!(status.success(), tolerated, "{text}\n{stderr}");
        let (status, _, stderr) = run_betwixt(&["check", "--strict", path.to_str().unwrap()]);
        assert!(!status.success(), "accepted under --strict:\n{text}");
        assert!(stderr.contains(line) && stderr.contains(key), "want {line} and {key}, got: {stderr}");
    }
    let path =
        dir.write("case.json", "{\n  \"servers\": {\n    \"a\": {\n      \"bind\": 5\n    }\n  }\n}\n");
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(
        stderr.contains("case.json") && stderr.contains("line 4") && stderr.contains("servers.a.bind"),
        "{stderr}"
    );
}

#[test]
fn sni_on_a_udp_server_is_a_warning_and_strict_refuses_it() {
    let dir = TempDir::new("udp-sni");
    let path = dir.write(
        "u.toml",
        "[servers.a]\nbind = \"127.0.0.1:1\"\nprotocol = \"udp\"\n[servers.a.udp]\nmax_responses = 1\n[servers.a.sni]\nhostname_matching_strategy = \"exact\"\n\
         [servers.a.discovery]\nkind = \"static\"\nstatic_list = []\n",
    );
    let path = path.to_str().unwrap();
    let (status, _, stderr) = run_betwixt(&["check", path]);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("line 6") && stderr.contains("servers.a.sni") && stderr.contains("ignored"),
        "{stderr}"
    );
    let (status, _, stderr) = run_betwixt(&["check", "--strict", path]);
    assert!(!status.success() && stderr.contains("servers.a.sni"), "{stderr}");
}

/// A key repeated in a JSON object is read as Go's decoder reads it (each in turn: the last
/// value wins, a second `servers` adds its servers), with a warning that `--strict` refuses.
#[test]
fn repeated_json_keys_are_read_as_gobetween_reads_them() {
    let backend = Backend::start("repeated", Behaviour::Named);
    let (first, last, other) = (free_port(), free_port(), free_port());
    let discovery =
        format!("\"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{}\"]}}", backend.line());
    let text = format!(
        "{{\n  \"servers\": {{\"a\": {{\"bind\": \"127.0.0.1:{first}\",\n    \"bind\": \"127.0.0.1:{last}\", {discovery}}}}},\n  \
         \"servers\": {{\"b\": {{\"bind\": \"127.0.0.1:{other}\", {discovery}}}}}\n}}\n"
    );
    let dir = TempDir::new("repeated");
    let path = dir.write("repeated.json", &text);
    let (status, stdout, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(status.success(), "{text}\n{stderr}");
    assert!(
        stdout.contains(&format!("127.0.0.1:{last}")) && !stdout.contains(&format!(":{first}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("127.0.0.1:{other}")), "both servers objects are read: {stdout}");
    for (key, line) in [("servers.a.bind", "line 3"), ("key `servers`", "line 4")] {
        let warning = stderr.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{key}: {stderr}"));
        assert!(warning.starts_with("config warning in ") && warning.contains("repeated.json"), "{warning}");
        assert!(warning.contains(line) && warning.contains("repeated (first at line"), "{warning}");
    }
    let (status, stdout, stderr) = run_betwixt(&["check", "--strict", path.to_str().unwrap()]);
    assert!(!status.success() && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("config error") && stderr.contains("repeated"), "{stderr}");

    let _bx = Betwixt::start_file(&path, &["-f", "json"], dir);
    assert!(wait_until(Duration::from_secs(5), || ask_name(last).as_deref() == Some("repeated")));
    assert!(wait_until(Duration::from_secs(5), || ask_name(other).as_deref() == Some("repeated")));
    assert_eq!(ask_name(first), None);
}

#[test]
fn check_prints_defaults_folded_in() {
    let dir = TempDir::new("defaults");
    let path = dir.write(
        "d.toml",
        "[defaults]\nmax_connections = 7\nclient_idle_timeout = \"1m30s\"\n[servers.a]\nbind = \"127.0.0.1:1\"\nmax_connections = 9\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n",
    );
    let (status, stdout, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("max_connections = 9"), "{stdout}");
    assert!(stdout.contains("client_idle_timeout = \"1m30s\""), "{stdout}");
    assert!(stdout.contains("127.0.0.1:2 weight=1 priority=1"), "{stdout}");
}

#[test]
fn env_vars_are_substituted_with_dash_e() {
    let backend = Backend::start("from-env", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("env");
    let path = dir.write(
        "env.toml",
        "[servers.a]\nbind = \"127.0.0.1:${BX_PORT}\"\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = [\"${BX_BACKEND}\"]\n",
    );
    std::env::set_var("BX_PORT", port.to_string());
    std::env::set_var("BX_BACKEND", backend.line());
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(!status.success(), "without -e the literal ${{BX_PORT}} must be rejected");
    assert!(stderr.contains("${BX_"), "{stderr}");

    let _bx = Betwixt::start_file(&path, &["-e"], TempDir::new("env-run"));
    assert!(wait_until(Duration::from_secs(5), || ask_name(port).as_deref() == Some("from-env")));
}

#[test]
fn from_file_and_pidfile() {
    let backend = Backend::start("ff", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("fromfile");
    let config = dir.write(
        "c.json",
        &format!(
            "{{\"servers\": {{\"a\": {{\"bind\": \"127.0.0.1:{port}\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{}\"]}}}}}}}}",
            backend.line()
        ),
    );
    let pidfile = dir.0.join("betwixt.pid");
    let mut child = std::process::Command::new(common::binary())
        .args(["from-file", config.to_str().unwrap(), "-p", pidfile.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let served = wait_until(Duration::from_secs(5), || ask_name(port).as_deref() == Some("ff"));
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(served, "from-file config was not served");
    assert_eq!(pid.trim(), child.id().to_string());
}
