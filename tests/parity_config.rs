//! Drop-in parity of configuration reading: files gobetween starts, betwixt starts with the same
//! meaning. What gobetween tolerates is a warning naming file, line and key; `--strict` and
//! `[runtime] strict = true` turn those warnings into errors. What gobetween refuses stays an
//! error. (gobetween's behaviour: its `src/config`, `src/logging`, `src/manager`,
//! `src/utils/parsers/backend.go` and `src/discovery/static.go`.)

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::{ask_name, closed_without_data, free_port, run_betwixt, tally, wait_until, Betwixt, TempDir};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `betwixt check` on `text` (TOML) with `extra` arguments: (exit ok, stdout, stderr).
fn check(text: &str, extra: &[&str]) -> (bool, String, String) {
    let dir = TempDir::new("parity-check");
    let path = dir.write("gobetween.toml", text);
    let mut args = vec!["check", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (status, stdout, stderr) = run_betwixt(&args);
    (status.success(), stdout, stderr)
}

/// `check` that must pass: (stdout, stderr).
fn check_passes(text: &str) -> (String, String) {
    let (ok, stdout, stderr) = check(text, &[]);
    assert!(ok, "{stderr}");
    (stdout, stderr)
}

/// A named backend, and a free port for the server in front of it.
fn backend_and_port(name: &str) -> (Backend, u16) {
    (Backend::start(name, Behaviour::Named), free_port())
}

/// A server section of gobetween style, with a static list of `lines`.
fn server(name: &str, port: u16, lines: &[String]) -> String {
    let list: Vec<String> = lines.iter().map(|l| format!("{l:?}")).collect();
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n\n[servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

fn one_shard() -> &'static [&'static str] {
    &["--shards", "1"]
}

#[test]
fn unknown_keys_and_sections_are_warnings_and_the_file_starts() {
    let (backend, port) = backend_and_port("known");
    let text = format!(
        "[tracing]\nenabled = true\n\n{}",
        server("web", port, &[backend.line()])
            .replace("\n\n", "\ncolour = \"red\"\n\n")
            .replace("kind = \"static\"\n", "kind = \"static\"\nkindd = 1\n")
    );
    let (_, stderr) = check_passes(&text);
    for (key, line) in [
        ("`tracing`", "line 1"),
        ("servers.web.colour", "line 6"),
        ("servers.web.discovery.kindd", "line 10"),
    ] {
        let warning = stderr.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{key}: {stderr}"));
        assert!(warning.starts_with("config warning in ") && warning.contains(line), "{warning}");
    }
    assert!(stderr.contains("did you mean `kind`?"), "{stderr}");

    let bx = Betwixt::start(&text, one_shard(), &[port]);
    assert_eq!(ask_name(port).as_deref(), Some("known"));
    assert!(
        bx.log_text().contains("servers.web.discovery.kindd"),
        "warnings are logged at start:\n{}",
        bx.log_text()
    );
}

#[test]
fn keys_match_in_any_case() {
    let (backend, port) = backend_and_port("cased");
    let text = server("web", port, &[backend.line()])
        .replace("[servers.web]\nbind", "[Servers.web]\nBIND")
        .replace("[servers.web.discovery]\nkind", "[Servers.web.Discovery]\nKind");
    let (_, stderr) = check_passes(&text);
    assert!(stderr.contains("`BIND` read as `bind`"), "{stderr}");
    let _bx = Betwixt::start(&text, one_shard(), &[port]);
    assert_eq!(ask_name(port).as_deref(), Some("cased"));

    // JSON too, as gobetween's encoding/json does.
    let port = free_port();
    let dir = TempDir::new("parity-json");
    let json = format!(
        "{{\"Servers\": {{\"web\": {{\"Bind\": \"127.0.0.1:{port}\", \"extra\": [1, {{\"deep\": true}}],\n \"DISCOVERY\": {{\"kind\": \"static\", \"static_list\": [\"{}\"]}}}}}}}}",
        backend.line()
    );
    let path = dir.write("gobetween.json", &json);
    let _bx = Betwixt::start_file(&path, one_shard(), dir);
    assert!(wait_until(Duration::from_secs(10), || ask_name(port).as_deref() == Some("cased")));
}

#[test]
fn strict_turns_warnings_into_errors() {
    let text = "[runtime]\nstrict = true\n\n[servers.web]\nbind = \"127.0.0.1:1\"\nbalanse = \"weight\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = []\n";
    // `[runtime] strict = true` refuses to start (and to pass `check`) ...
    let dir = TempDir::new("parity-strict");
    let path = dir.write("strict.toml", text);
    let (status, _, stderr) = run_betwixt(&["-c", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("config error in ") && stderr.contains("line 6"), "{stderr}");
    assert!(stderr.contains("servers.web.balanse") && stderr.contains("did you mean `balance`"), "{stderr}");
    assert!(!stderr.contains("`strict`"), "strict is a known key: {stderr}");
    let (ok, _, stderr) = check(text, &[]);
    assert!(!ok && stderr.contains("servers.web.balanse"), "{stderr}");

    // ... and `check --strict` does the same for a file that does not ask for it.
    let lenient = text.replace("strict = true", "strict = false");
    let (ok, _, stderr) = check(&lenient, &[]);
    assert!(ok && stderr.contains("config warning"), "{stderr}");
    let (ok, _, stderr) = check(&lenient, &["--strict"]);
    assert!(!ok && stderr.contains("config error"), "{stderr}");
    let (ok, _, stderr) = check(&lenient.replace("balanse", "balance"), &["--strict"]);
    assert!(ok, "a clean file passes strict: {stderr}");
    // `-e` leaving a variable empty is a warning too (gobetween substitutes it silently).
    let unset = lenient.replace("balanse", "balance").replace("127.0.0.1:1", "127.0.0.1:${BX_PARITY_UNSET}1");
    let (ok, _, stderr) = check(&unset, &["-e"]);
    assert!(ok && stderr.contains("BX_PARITY_UNSET is not set"), "{stderr}");
    let (ok, _, stderr) = check(&unset, &["-e", "--strict"]);
    assert!(!ok && stderr.contains("config error"), "{stderr}");
}

#[test]
fn logging_level_and_format_as_gobetween_reads_them() {
    for level in ["", "INFO", "Debug", "warning", "fatal", "panic"] {
        let (ok, _, stderr) = check(&format!("[logging]\nlevel = {level:?}\n"), &[]);
        assert!(ok, "level {level:?}: {stderr}");
        assert_eq!(stderr.is_empty(), level.is_empty(), "level {level:?} warns unless empty: {stderr}");
    }
    // An unknown level stops gobetween ("Unknown loglevel"); betwixt refuses it too.
    let (ok, _, stderr) = check("[logging]\nlevel = \"loud\"\n", &[]);
    assert!(!ok && stderr.contains("line 2") && stderr.contains("logging.level"), "{stderr}");

    // Any format but exactly "json" is gobetween's text format.
    let (ok, _, stderr) = check("[logging]\nformat = \"\"\n", &[]);
    assert!(ok && stderr.is_empty(), "{stderr}");
    let (backend, port) = backend_and_port("logged");
    let text = format!(
        "[logging]\nlevel = \"WARNING\"\nformat = \"JSON\"\n\n{}",
        server("web", port, &[backend.line()])
    );
    let bx = Betwixt::start(&text, one_shard(), &[port]);
    let log = bx.log_text();
    let line = log.lines().find(|l| l.contains("logging.format")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("[WARN") && !line.starts_with('{'), "text format: {line}");
}

#[test]
fn healthcheck_counts_below_one_are_one() {
    let (backend, port) = backend_and_port("checked");
    let text = format!(
        "{}\n[servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"100ms\"\nfails = 0\npasses = -3\ninitial_status = \"unhealthy\"\n",
        server("web", port, &[backend.line()])
    );
    let (_, stderr) = check_passes(&text);
    assert!(stderr.contains("servers.web.healthcheck.fails") && stderr.contains("0 read as 1"), "{stderr}");
    assert!(stderr.contains("servers.web.healthcheck.passes") && stderr.contains("-3 read as 1"), "{stderr}");
    // One passing check is enough to bring the backend in.
    let _bx = Betwixt::start(&text, one_shard(), &[port]);
    assert!(wait_until(Duration::from_secs(5), || ask_name(port).as_deref() == Some("checked")));
}

/// A backend that answers each connection only after `delay`, with `name\n`.
struct SlowBackend {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowBackend {
    fn start(name: &'static str, delay: Duration) -> SlowBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            let _ = stream.write_all(format!("{name}\n").as_bytes());
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                            let _ = stream.read(&mut [0u8; 64]);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowBackend { port, stop }
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// gobetween gives a check with `timeout = "0"` no time limit of its own: a probe answered
/// after longer than the interval still passes.
#[test]
fn healthcheck_timeout_zero_is_no_limit_of_its_own() {
    let slow = SlowBackend::start("slow", Duration::from_millis(1500));
    let port = free_port();
    let text = format!(
        "{}\n[servers.web.healthcheck]\nkind = \"probe\"\ninterval = \"500ms\"\ntimeout = \"0\"\ninitial_status = \"unhealthy\"\nprobe_protocol = \"tcp\"\nprobe_send = \"ping\"\nprobe_recv = \"slow\"\n",
        server("web", port, &[format!("127.0.0.1:{}", slow.port)])
    );
    let _bx = Betwixt::start(&text, one_shard(), &[port]);
    assert!(
        wait_until(Duration::from_secs(10), || ask_name(port).as_deref() == Some("slow")),
        "the slow but passing probe never brought the backend in"
    );
}

#[test]
fn empty_or_unparsable_connection_timeouts_are_no_limit() {
    let (backend, port) = backend_and_port("patient");
    let text = format!(
        "[defaults]\nclient_idle_timeout = \"\"\n\n{}",
        server("web", port, &[backend.line()]).replace(
            "\n\n",
            "\nbackend_idle_timeout = \"10 minutes\"\nbackend_connection_timeout = \"5\"\n\n"
        )
    );
    let (stdout, stderr) = check_passes(&text);
    for key in [
        "defaults.client_idle_timeout",
        "servers.web.backend_idle_timeout",
        "servers.web.backend_connection_timeout",
    ] {
        assert!(stderr.lines().any(|l| l.contains(key) && l.contains("no limit")), "{key}: {stderr}");
    }
    // Kept as written (the API shows them as written).
    assert!(stdout.contains("backend_idle_timeout = \"10 minutes\""), "{stdout}");
    let _bx = Betwixt::start(&text, one_shard(), &[port]);
    assert_eq!(ask_name(port).as_deref(), Some("patient"));
}

#[test]
fn access_without_default_allows() {
    let (backend, port) = backend_and_port("let-in");
    let text = format!(
        "{}\n[servers.web.access]\nrules = [\"deny 192.0.2.1\"]\n",
        server("web", port, &[backend.line()])
    );
    let (ok, _, stderr) = check(&text, &[]);
    assert!(ok && stderr.is_empty(), "{stderr}");
    let _bx = Betwixt::start(&text, one_shard(), &[port]);
    assert_eq!(ask_name(port).as_deref(), Some("let-in"));
}

/// gobetween crashes on a static server without `static_list`; betwixt starts it with an empty
/// pool and says so.
#[test]
fn static_server_without_list_is_an_empty_pool() {
    let port = free_port();
    let text =
        format!("[servers.web]\nbind = \"127.0.0.1:{port}\"\n[servers.web.discovery]\nkind = \"static\"\n");
    let (_, stderr) = check_passes(&text);
    assert!(stderr.contains("servers.web.discovery.static_list") && stderr.contains("line 3"), "{stderr}");
    let _bx = Betwixt::start(&text, one_shard(), &[port]);
    assert!(closed_without_data(port, Duration::from_secs(5)));
}

#[test]
fn consul_datacenter_and_its_alias() {
    let consul = "[servers.c]\nbind = \"127.0.0.1:1\"\n[servers.c.discovery]\nkind = \"consul\"\nconsul_host = \"127.0.0.1:8500\"\nconsul_service_name = \"web\"\n";
    let (ok, _, stderr) = check(&format!("{consul}consul_datacenter = \"dc1\"\n"), &[]);
    assert!(ok, "consul discovery is built: {stderr}");
    assert!(!stderr.contains("warning"), "consul_datacenter is gobetween's key: {stderr}");
    let (_, _, stderr) = check(&format!("{consul}consul_service_datacenter = \"dc1\"\n"), &[]);
    let warning = stderr.lines().find(|l| l.contains("config warning")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(warning.contains("line 7") && warning.contains("read as `consul_datacenter`"), "{warning}");
}

/// gobetween reads backend lines with one fixed pattern and skips (with a warning) every line
/// that does not match it: options out of order, two spaces, a sign, an unknown option.
#[test]
fn bad_backend_lines_are_skipped_with_a_warning() {
    let good = Backend::start("good", Behaviour::Named);
    let others: Vec<Backend> =
        (0..4).map(|i| Backend::start(&format!("skipped{i}"), Behaviour::Named)).collect();
    let port = free_port();
    let lines = [
        good.line(),
        format!("{} priority=1 weight=2", others[0].line()),
        format!("{}  weight=2", others[1].line()),
        format!("{} weight=+2", others[2].line()),
        format!("{} colour=red", others[3].line()),
        "no port at all".to_string(),
    ];
    let text = server("web", port, &lines);
    let (stdout, stderr) = check_passes(&text);
    for index in 1..lines.len() {
        let key = format!("servers.web.discovery.static_list[{index}]");
        assert!(stderr.lines().any(|l| l.contains(&key) && l.contains("line skipped")), "{key}: {stderr}");
    }
    assert!(stdout.contains(&format!("{} weight=1 priority=1", good.line())), "{stdout}");
    assert!(!stdout.contains(&others[0].line()), "skipped lines are not run: {stdout}");
    let _bx = Betwixt::start(&text, one_shard(), &[port]);
    let counts = tally(port, 12);
    assert_eq!(counts.get("good"), Some(&12), "{counts:?}");
}

#[test]
fn weight_zero_is_accepted() {
    let (ok, stdout, stderr) = check(&server("web", 1, &["127.0.0.1:2 weight=0".into()]), &[]);
    assert!(ok && stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("127.0.0.1:2 weight=0 priority=1"), "{stdout}");
}

/// Empty strings gobetween reads as the key's default: the same as leaving the key out.
#[test]
fn empty_values_are_the_default() {
    let text = "[servers.web]\nbind = \"127.0.0.1:1\"\nprotocol = \"\"\nbalance = \"\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = []\nfailpolicy = \"\"\ninterval = \"\"\ntimeout = \"\"\n\
        [servers.web.healthcheck]\nkind = \"probe\"\ninterval = \"1s\"\ntimeout = \"\"\nprobe_protocol = \"tcp\"\nprobe_send = \"a\"\nprobe_recv = \"b\"\nprobe_strategy = \"\"\n";
    let (ok, stdout, stderr) = check(text, &["--strict"]);
    assert!(ok, "{stderr}");
    // The defaults, tcp and weight.
    assert!(stdout.contains("protocol = \"tcp\"\nbalance = \"weight\""), "{stdout}");
}

/// What gobetween refuses at start stays an error, strict or not.
#[test]
fn what_gobetween_refuses_stays_an_error() {
    let base = "[servers.web]\nbind = \"127.0.0.1:1\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = []\n";
    for (extra, key) in [
        ("max_connections = \"10\"\n", "servers.web.max_connections"),
        ("balance = \"random\"\n", "servers.web.balance"),
        (
            "[servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"5x\"\n",
            "servers.web.healthcheck.interval",
        ),
        (
            "[servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"1s\"\nfails = 1.5\n",
            "servers.web.healthcheck.fails",
        ),
        ("[servers.web.access]\ndefault = \"maybe\"\n", "servers.web.access.default"),
    ] {
        let text = if extra.starts_with('[') {
            format!("{base}{extra}")
        } else {
            base.replace("bind", &format!("{extra}bind"))
        };
        let (ok, _, stderr) = check(&text, &[]);
        assert!(!ok && stderr.contains(key) && stderr.contains("config error"), "{extra}: {stderr}");
    }
}

/// A server created over the API is read like a file: tolerated oddities are logged; with
/// `[runtime] strict = true` they refuse the server.
#[test]
fn api_created_servers_are_read_tolerantly() {
    let backend = Backend::start("posted", Behaviour::Named);
    for strict in [false, true] {
        let (api, port) = (free_port(), free_port());
        let text =
            format!("[runtime]\nstrict = {strict}\n[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n");
        let bx = Betwixt::start(&text, one_shard(), &[api]);
        let body = format!(
            "{{\"Bind\": \"127.0.0.1:{port}\", \"colour\": \"red\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{}\", \"junk\"]}}, \"healthcheck\": {{\"kind\": \"none\", \"fails\": 0}}}}",
            backend.line()
        );
        let reply = Client::http(api).send("POST", "/servers/posted", &body);
        if strict {
            assert_ne!(reply.status, 200, "{}", reply.body);
            assert!(reply.body.contains("Bind"), "{}", reply.body);
            assert!(closed_without_data(port, Duration::from_millis(200)));
        } else {
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(ask_name(port).as_deref(), Some("posted"));
            let log = bx.log_text();
            for key in ["Bind", "colour", "static_list[1]"] {
                assert!(
                    log.lines().any(|l| l.contains("config warning") && l.contains(key)),
                    "{key}:\n{log}"
                );
            }
        }
    }
}
