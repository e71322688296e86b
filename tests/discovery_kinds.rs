//! exec, plaintext and json discovery with the real binary: real scripts and a real HTTP server
//! whose answers change between requests, observed through routing (which backend answers a
//! connection made through betwixt) and through the API's stats.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::connect_proxy::socks5_to;
use common::{ask_name, closed_without_data, free_port, wait_until, Betwixt, TempDir};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(10);

/// A discovery script that prints the file `list` next to it; `hang` in the file `mode` makes
/// it start a child that sleeps (its pid in `child.pid`) and wait for it, `fail` makes it exit 1.
struct Script {
    dir: TempDir,
    path: PathBuf,
}

impl Script {
    fn new() -> Script {
        let dir = TempDir::new("discovery-exec");
        let d = dir.0.display();
        let body = format!(
            "#!/bin/sh\nmode=$(cat {d}/mode 2>/dev/null)\n\
             if [ \"$mode\" = hang ]; then sleep 60 & echo $! > {d}/child.pid; wait; fi\n\
             [ \"$mode\" = fail ] && exit 1\ncat {d}/list\n"
        );
        let path = dir.write_executable("discover.sh", &body);
        Script { dir, path }
    }

    /// Replaces a file atomically, so the script never reads a half-written one.
    fn set(&self, name: &str, text: &str) {
        let staged = self.dir.write("staged", text);
        std::fs::rename(staged, self.dir.0.join(name)).unwrap();
    }

    /// Starts betwixt with server `s` discovering through a new script (listing `first` until
    /// told otherwise) and `keys` added to its discovery section, and the API. Returns the
    /// script, betwixt, the server's port and the API's.
    fn start_betwixt(first: &Backend, keys: &str) -> (Script, Betwixt, u16, u16) {
        let script = Script::new();
        script.set("list", &format!("{}\n", first.line()));
        let (port, api) = (free_port(), free_port());
        let discovery =
            format!("kind = \"exec\"\n{keys}\nexec_command = [\"/bin/sh\", \"{}\"]", script.path.display());
        let bx = Betwixt::start(&(api_section(api) + &server("s", port, &discovery)), &[], &[port, api]);
        assert!(answers(port, &first.name), "{}", bx.log_text());
        (script, bx, port, api)
    }
}

/// An HTTP server on loopback answering every GET with the current status and body; `None`
/// as status: accept and never answer. A 3xx answer names its body as `Location`.
#[derive(Clone)]
struct Document(Arc<Mutex<(Option<u16>, String)>>);

impl Document {
    fn serve(body: &str) -> (u16, Document) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let document = Document(Arc::new(Mutex::new((Some(200), body.to_string()))));
        let shared = document.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    let (status, body) = shared.0.lock().unwrap().clone();
                    let Some(status) = status else {
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    };
                    let location = if (300..400).contains(&status) {
                        format!("Location: {body}\r\n")
                    } else {
                        String::new()
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        (port, document)
    }

    fn set(&self, status: Option<u16>, body: &str) {
        *self.0.lock().unwrap() = (status, body.to_string());
    }
}

fn api_section(api: u16) -> String {
    format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\nallow_exec = true\n")
}

fn server(name: &str, port: u16, discovery: &str) -> String {
    format!("[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\n{discovery}\n")
}

/// A `plaintext` or `json` discovery section fetching `url` every 200 ms.
fn polled(kind: &str, url: &str) -> String {
    format!("kind = \"{kind}\"\ninterval = \"200ms\"\n{kind}_endpoint = \"{url}\"")
}

fn discovery_stats(api: u16, name: &str) -> Value {
    Client::http(api).get_json(&format!("/servers/{name}/stats")).get("discovery").unwrap().clone()
}

fn answers(port: u16, name: &str) -> bool {
    wait_until(LONG, || ask_name(port).as_deref() == Some(name))
}

#[test]
fn exec_backends_follow_the_scripts_output_and_garbage_is_skipped() {
    let (a, b) = (Backend::start("a", Behaviour::Named), Backend::start("b", Behaviour::Named));
    let (script, bx, port, api) = Script::start_betwixt(&a, "interval = \"200ms\"");

    script.set("list", &format!("garbage line\n\n{} weight=3\n", b.line()));
    assert!(answers(port, "b"), "{}", bx.log_text());
    assert!((0..20).all(|_| ask_name(port).as_deref() == Some("b")), "a left the list");
    assert!(bx.log_text().contains("\"garbage line\""), "{}", bx.log_text());
    let stats = discovery_stats(api, "s");
    assert_eq!(stats.get("kind").and_then(|v| v.as_str()), Some("exec"));
    assert_eq!(stats.get("state").and_then(|v| v.as_str()), Some("ok"));
    assert_eq!(stats.get("backends").and_then(|v| v.as_u64()), Some(1));
}

#[test]
fn a_hanging_script_is_killed_with_its_children_and_the_last_list_kept() {
    let a = Backend::start("a", Behaviour::Named);
    let (script, bx, port, api) = Script::start_betwixt(&a, "interval = \"100ms\"\ntimeout = \"300ms\"");

    script.set("mode", "hang");
    let pid_file = script.dir.0.join("child.pid");
    let child: i32 = {
        assert!(wait_until(LONG, || std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))));
        std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap()
    };
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) } == 0;
    assert!(wait_until(LONG, || !alive(child)), "the script's child outlived the timeout");
    assert!(wait_until(LONG, || discovery_stats(api, "s").get("state").and_then(|v| v.as_str())
        == Some("failing")));
    let stats = discovery_stats(api, "s");
    let error = stats.get("last_error").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    assert!(error.contains("no answer within 300ms"), "{error}");
    // keeplast: the backend found before goes on taking connections.
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")));
    assert_eq!(stats.get("backends").and_then(|v| v.as_u64()), Some(1));

    // Failures are counted, but logged once until discovery works again.
    assert!(
        wait_until(LONG, || discovery_stats(api, "s").get("failures").and_then(|v| v.as_u64()) >= Some(2))
    );
    assert_eq!(bx.log_text().matches("exec discovery failed").count(), 1, "{}", bx.log_text());
    script.set("mode", "");
    assert!(wait_until(LONG, || bx.log_text().contains("exec discovery works again")));
}

#[test]
fn setempty_removes_the_backends_while_the_script_fails() {
    let a = Backend::start("a", Behaviour::Named);
    let (script, bx, port, _) = Script::start_betwixt(&a, "interval = \"100ms\"\nfailpolicy = \"setempty\"");
    script.set("mode", "fail");
    assert!(wait_until(LONG, || closed_without_data(port, Duration::from_secs(2))), "{}", bx.log_text());
    assert!(bx.log_text().contains("exited with exit status: 1"), "{}", bx.log_text());
    script.set("mode", "");
    assert!(answers(port, "a"), "{}", bx.log_text());
}

#[test]
fn plaintext_follows_the_document_and_a_silent_source_delays_no_other_server() {
    let (a, b) = (Backend::start("a", Behaviour::Named), Backend::start("b", Behaviour::Named));
    let (http, document) = Document::serve(&format!("{}\n", a.line()));
    let (silent_http, silent) = Document::serve("");
    silent.set(None, "");
    let (port, silent_port, api) = (free_port(), free_port(), free_port());
    let config = api_section(api)
        + &server("s", port, &polled("plaintext", &format!("http://127.0.0.1:{http}/list")))
        + &server(
            "silent",
            silent_port,
            &format!("kind = \"plaintext\"\ninterval = \"200ms\"\ntimeout = \"1s\"\nplaintext_endpoint = \"http://127.0.0.1:{silent_http}/\""),
        );
    let bx = Betwixt::start(&config, &[], &[port, silent_port, api]);
    assert!(answers(port, "a"), "{}", bx.log_text());
    document.set(Some(200), &format!("# a comment is skipped\n{}\n", b.line()));
    assert!(answers(port, "b"), "{}", bx.log_text());
    document.set(Some(200), &format!("{}\n", a.line()));
    assert!(answers(port, "a"), "{}", bx.log_text());

    let stats = discovery_stats(api, "silent");
    assert!(
        wait_until(LONG, || discovery_stats(api, "silent")
            .get("last_error")
            .and_then(|v| v.as_str())
            .is_some_and(|e| e.contains("no answer within 1s"))),
        "{stats:?}"
    );

    // A 404 is a failed round (keeplast), not an empty list.
    document.set(Some(404), "not found");
    assert!(wait_until(LONG, || discovery_stats(api, "s").get("state").and_then(|v| v.as_str())
        == Some("failing")));
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")));

    // A body over 16 MiB: a failed round too.
    document.set(Some(200), &"#".repeat(17 << 20));
    assert!(wait_until(LONG, || discovery_stats(api, "s")
        .get("last_error")
        .and_then(|v| v.as_str())
        .is_some_and(|e| e.contains("length limit exceeded"))));
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")));
}

#[test]
fn plaintext_and_json_endpoints_are_followed_through_redirects() {
    let (a, b) = (Backend::start("a", Behaviour::Named), Backend::start("b", Behaviour::Named));
    let (list, _list) = Document::serve(&format!("{}\n", a.line()));
    let json = format!(r#"[{{"host": "{}", "port": {}}}]"#, b.ip, b.port);
    let (json_http, _json) = Document::serve(&json);
    // Moved for good, and moved for now, each to another server (relative references are
    // the client's unit test).
    let (moved, moved_doc) = Document::serve("");
    moved_doc.set(Some(301), &format!("http://127.0.0.1:{list}/backends.txt"));
    let (temporary, temporary_doc) = Document::serve("");
    temporary_doc.set(Some(302), &format!("http://127.0.0.1:{json_http}/v2/backends.json"));
    let (port, json_port, api) = (free_port(), free_port(), free_port());
    let config = api_section(api)
        + &server("s", port, &polled("plaintext", &format!("http://127.0.0.1:{moved}/old")))
        + &server("j", json_port, &polled("json", &format!("http://127.0.0.1:{temporary}/v1/backends")));
    let bx = Betwixt::start(&config, &[], &[port, json_port, api]);
    assert!(answers(port, "a"), "{}", bx.log_text());
    assert!(answers(json_port, "b"), "{}", bx.log_text());

    // A redirect to itself: followed ten times, then the round fails (the list is kept).
    moved_doc.set(Some(307), "/old");
    assert!(
        wait_until(LONG, || discovery_stats(api, "s")
            .get("last_error")
            .and_then(|v| v.as_str())
            .is_some_and(|e| e.contains("stopped after 10 redirects"))),
        "{:?}",
        discovery_stats(api, "s")
    );
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")));
}

#[test]
fn plaintext_goes_through_the_environments_proxy() {
    let a = Backend::start("a", Behaviour::Named);
    // The HTTP proxy answers every request with the list; the SOCKS5 one tunnels to it.
    // lists.test resolves nowhere, so only a request through either can find the backend.
    let (proxy, _proxy) = Document::serve(&format!("{}\n", a.line()));
    let (socks, tunnels) = socks5_to(proxy);
    let discovery = "kind = \"plaintext\"\nplaintext_endpoint = \"http://lists.test:8080/list\"";
    for url in [format!("http://127.0.0.1:{proxy}"), format!("socks5h://127.0.0.1:{socks}")] {
        let port = free_port();
        let dir = TempDir::new("proxied");
        let config = dir.write("betwixt.toml", &server("s", port, discovery));
        let args = [std::ffi::OsStr::new("-c"), config.as_os_str()];
        let env = [("HTTP_PROXY", url.clone()), ("NO_PROXY", "other.test".into())];
        let bx = Betwixt::start_args(&args, &env, dir);
        bx.wait_listening(port);
        assert!(answers(port, "a"), "{url}: {}", bx.log_text());
    }
    // SOCKS5 is given the name, for the proxy to resolve, as Go gives it.
    assert_eq!(tunnels.recv_timeout(LONG).unwrap(), "CONNECT lists.test:8080");
}

#[test]
fn plaintext_with_a_pattern_of_named_groups() {
    let a = Backend::start("a", Behaviour::Named);
    let (http, _document) = Document::serve(&format!("backend {} {}\n", a.ip, a.port));
    let port = free_port();
    let discovery = format!(
        "kind = \"plaintext\"\nplaintext_endpoint = \"http://127.0.0.1:{http}/\"\n\
         plaintext_regex_pattern = '^backend (?P<host>\\S+) (?P<port>\\d+)$'"
    );
    let bx = Betwixt::start(&server("s", port, &discovery), &[], &[port]);
    assert!(answers(port, "a"), "{}", bx.log_text());
}

#[test]
fn json_follows_the_document_with_gobetweens_paths() {
    let (a, b) = (Backend::start("a", Behaviour::Named), Backend::start("b", Behaviour::Named));
    let doc = |backend: &Backend| {
        format!(r#"[{{"addr": {{"ip": "{}"}}, "ports": [{}]}}]"#, backend.ip, backend.port)
    };
    let (http, document) = Document::serve(&doc(&a));
    let (port, api) = (free_port(), free_port());
    let discovery = format!(
        "kind = \"json\"\ninterval = \"200ms\"\nfailpolicy = \"setempty\"\n\
         json_endpoint = \"http://127.0.0.1:{http}/\"\njson_host_pattern = \"addr.ip\"\n\
         json_port_pattern = \"ports.[0]\""
    );
    let bx = Betwixt::start(&(api_section(api) + &server("s", port, &discovery)), &[], &[port, api]);
    assert!(answers(port, "a"), "{}", bx.log_text());
    document.set(Some(200), &doc(&b));
    assert!(answers(port, "b"), "{}", bx.log_text());

    // Not an array: a failed round; setempty leaves no backend.
    document.set(Some(200), "{\"not\": \"a list\"}");
    assert!(wait_until(LONG, || closed_without_data(port, Duration::from_secs(2))), "{}", bx.log_text());
    let stats = discovery_stats(api, "s");
    assert_eq!(stats.get("backends").and_then(|v| v.as_u64()), Some(0));
    let error = stats.get("last_error").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    assert!(error.contains("not a JSON array"), "{error}");
    document.set(Some(200), &doc(&a));
    assert!(answers(port, "a"), "{}", bx.log_text());
}

#[test]
fn a_connection_to_a_backend_that_leaves_discovery_goes_on() {
    let (a, b) = (Backend::start("a", Behaviour::Echo), Backend::start("b", Behaviour::Named));
    let (http, document) = Document::serve(&format!("{}\n", a.line()));
    let (port, api) = (free_port(), free_port());
    let discovery = format!(
        "kind = \"plaintext\"\ninterval = \"100ms\"\nplaintext_endpoint = \"http://127.0.0.1:{http}/\""
    );
    let bx = Betwixt::start(&(api_section(api) + &server("s", port, &discovery)), &[], &[port, api]);
    let mut open = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    open.set_read_timeout(Some(LONG)).unwrap();
    let echo = |stream: &mut std::net::TcpStream, text: &[u8]| {
        stream.write_all(text).unwrap();
        let mut got = vec![0; text.len()];
        std::io::Read::read_exact(stream, &mut got).unwrap();
        got
    };
    assert_eq!(echo(&mut open, b"before"), b"before");
    document.set(Some(200), &format!("{}\n", b.line()));
    assert!(answers(port, "b"), "{}", bx.log_text());
    assert_eq!(echo(&mut open, b"after"), b"after", "the drained backend's connection was cut");

    // As in gobetween, it stays in the stats, not discovered, while its connection is open.
    let listed = || -> Vec<(String, bool)> {
        let stats = Client::http(api).get_json("/servers/s/stats");
        let backends = stats.get("backends").and_then(|b| b.as_array().cloned()).unwrap_or_default();
        backends
            .iter()
            .map(|b| {
                let port = b.get("port").and_then(|p| p.as_str()).unwrap_or_default().to_string();
                (port, b.pointer(["stats", "discovered"]).and_then(|d| d.as_bool()) == Some(true))
            })
            .collect()
    };
    let mut expected = vec![(b.port.to_string(), true), (a.port.to_string(), false)];
    assert_eq!(listed(), expected);
    assert_eq!(discovery_stats(api, "s").get("backends").and_then(|v| v.as_u64()), Some(1));
    drop(open);
    expected.pop();
    assert!(wait_until(LONG, || listed() == expected), "{:?}", listed());
}

#[test]
fn invalid_sections_are_refused_when_read() {
    for (discovery, key) in [
        ("kind = \"exec\"", "discovery.exec_command"),
        ("kind = \"exec\"\nexec_command = []", "discovery.exec_command"),
        ("kind = \"plaintext\"", "discovery.plaintext_endpoint"),
        ("kind = \"plaintext\"\nplaintext_endpoint = \"unix:///run/x.sock\"", "discovery.plaintext_endpoint"),
        (
            "kind = \"plaintext\"\nplaintext_endpoint = \"http://a/\"\nplaintext_regex_pattern = \"(\"",
            "discovery.plaintext_regex_pattern",
        ),
        (
            "kind = \"json\"\njson_endpoint = \"http://a/\"\njson_port_pattern = \"[x]\"",
            "discovery.json_port_pattern",
        ),
    ] {
        let dir = TempDir::new("discovery-check");
        let path = dir.write("c.toml", &server("s", 1, discovery));
        let (status, _, stderr) = common::run_betwixt(&["check", path.to_str().unwrap()]);
        assert!(!status.success() && stderr.contains(&format!("servers.s.{key}")), "{discovery}: {stderr}");
    }
}

/// exec discovery runs commands as betwixt's user: a server created through the API may use it
/// only with `[api] allow_exec = true`, and then it runs.
#[test]
fn exec_discovery_through_the_api_only_when_allowed() {
    let a = Backend::start("a", Behaviour::Named);
    let script = Script::new();
    script.set("list", &format!("{}\n", a.line()));
    let port = free_port();
    let body = format!(
        "{{\"bind\": \"127.0.0.1:{port}\", \"discovery\": {{\"kind\": \"exec\", \"exec_command\": [\"/bin/sh\", \"{}\"]}}}}",
        script.path.display()
    );
    let api = free_port();
    let bx = Betwixt::start(&format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n"), &[], &[api]);
    let reply = Client::http(api).send("POST", "/servers/cmd", &body);
    assert_eq!(reply.status, 403, "{}", reply.body);
    drop(bx);

    let api = free_port();
    let bx = Betwixt::start(&api_section(api), &[], &[api]);
    let reply = Client::http(api).send("POST", "/servers/cmd", &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(answers(port, "a"), "{}", bx.log_text());
}

/// Backends come and go every 100 ms for 30 s while clients connect and talk: no connection is
/// cut (a backend that leaves drains), and once the churn and the clients stop, the stats add
/// up to no open connection.
#[test]
fn no_connection_is_dropped_under_discovery_churn() {
    let backends = [
        Backend::start("a", Behaviour::Echo),
        Backend::start("b", Behaviour::Echo),
        Backend::start("c", Behaviour::Echo),
    ];
    let lists = [
        format!("{}\n{}\n", backends[0].line(), backends[1].line()),
        format!("{}\n{}\n", backends[0].line(), backends[2].line()),
    ];
    let (http, document) = Document::serve(&lists[0]);
    let (port, api) = (free_port(), free_port());
    let discovery = format!(
        "kind = \"plaintext\"\ninterval = \"100ms\"\nplaintext_endpoint = \"http://127.0.0.1:{http}/\""
    );
    let bx = Betwixt::start(&(api_section(api) + &server("s", port, &discovery)), &[], &[port, api]);
    assert!(
        wait_until(LONG, || discovery_stats(api, "s").get("backends").and_then(|v| v.as_u64()) == Some(2))
    );

    let echo = |stream: &mut std::net::TcpStream, round: usize| -> bool {
        let text = format!("round {round}\n");
        let mut got = vec![0; text.len()];
        stream.write_all(text.as_bytes()).is_ok()
            && std::io::Read::read_exact(stream, &mut got).is_ok()
            && got == text.as_bytes()
    };
    let mut open: std::collections::VecDeque<std::net::TcpStream> = Default::default();
    let (mut made, mut cut) = (0, 0);
    let start = std::time::Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(30) {
        document.set(Some(200), &lists[round % 2]);
        round += 1;
        for _ in 0..3 {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            made += 1;
            if echo(&mut stream, round) {
                open.push_back(stream);
            } else {
                cut += 1;
            }
        }
        // Every open connection, whichever backend it reached, still carries data.
        open.retain_mut(|stream| {
            let ok = echo(stream, round);
            cut += usize::from(!ok);
            ok
        });
        while open.len() > 30 {
            open.pop_front();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cut, 0, "{cut} of {made} connections were cut; log:\n{}", bx.log_text());
    assert!(round > 100, "only {round} rounds of churn");
    // Both backends that came and went took connections: the churn reached the balancer.
    for backend in &backends[1..] {
        assert!(
            backend.accepted.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "{} got nothing",
            backend.name
        );
    }

    open.clear();
    let stats_settle = wait_until(LONG, || {
        let stats = Client::http(api).get_json("/servers/s/stats");
        let active = stats.get("active_connections").and_then(|v| v.as_u64());
        let backends_active: u64 = stats
            .get("backends")
            .and_then(|b| {
                b.as_array().map(|a| {
                    a.iter()
                        .filter_map(|b| b.pointer(["stats", "active_connections"]).and_then(|v| v.as_u64()))
                        .sum()
                })
            })
            .unwrap_or(1);
        active == Some(0) && backends_active == 0
    });
    assert!(stats_settle, "{:?}", Client::http(api).get_json("/servers/s/stats"));
}
