//! Input a hostile caller controls — API requests and configuration files — against the real
//! binary: each must get a clear refusal, and betwixt must keep serving.

mod api_client;
mod common;

use api_client::{object_keys, static_server, Client};
use betwixt_control::config::{parse_config, Format};
use common::{addr, free_port, percent_encoded, run_betwixt, wait_until, Betwixt, TempDir};
use sonic_rs::JsonContainerTrait;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn api_config(api: u16, extra: &str) -> String {
    format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n{extra}")
}

/// 80,000 levels inside a value the JSON parser skips (a unit enum variant's content).
fn deep_json(prefix: &str, suffix: &str) -> String {
    let levels = 80_000;
    format!("{prefix}{}{}{suffix}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn deeply_nested_body_is_refused_and_betwixt_keeps_serving() {
    let api = free_port();
    let mut bx = Betwixt::start(&api_config(api, ""), &[], &[api]);
    let client = Client::http(api);
    let body = deep_json("{\"bind\": \"127.0.0.1:1\", \"discovery\": {\"kind\": {\"static\": ", "}}}");
    assert!(body.len() > 150_000 && body.len() < 2 << 20, "under the body limit: {}", body.len());
    let reply = client.send("POST", "/servers/deep", &body);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.message().contains("nest deeper than 64"), "{}", reply.body);
    assert!(bx.child.try_wait().unwrap().is_none(), "betwixt exited:\n{}", bx.log_text());
    assert_eq!(client.get("/ping").body, "OK");
    assert!(object_keys(&client.get_json("/servers")).is_empty());
}

/// `betwixt check` of a file named `name` holding `text`: its exit status and stderr.
fn check(name: &str, text: &str) -> (std::process::ExitStatus, String) {
    let dir = TempDir::new("check");
    let path = dir.write(name, text);
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    (status, stderr)
}

#[test]
fn check_of_a_deeply_nested_file_is_an_error_not_a_signal() {
    let (status, stderr) = check("deep.json", &deep_json("{\"logging\": {\"level\": {\"info\": ", "}}}"));
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("deep.json at line 1") && stderr.contains("nest deeper than"), "{stderr}");
}

#[test]
fn names_and_hosts_that_would_forge_output_are_refused() {
    let api = free_port();
    let bx = Betwixt::start(&api_config(api, ""), &[], &[api]);
    let client = Client::http(api);
    let create = |name: &str| {
        client.send(
            "POST",
            &format!("/servers/{}", percent_encoded(name)),
            &static_server(&addr(free_port()).to_string(), "127.0.0.1:1"),
        )
    };
    let reply = create("web\"} 1\ngobetween_server_count 99\n[INFO ] (betwixt): forged");
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(
        reply.message().contains("invalid server name") && reply.message().contains("U+000A"),
        "{}",
        reply.body
    );

    // A backend line with a control character is skipped, like any line that does not read as a
    // backend (as gobetween skips those); its warning shows the character escaped.
    let reply = client.send(
        "POST",
        "/servers/web",
        &static_server(&addr(free_port()).to_string(), "evil\\u001b[2J:80"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(wait_until(Duration::from_secs(5), || bx.log_text().contains("control character")));
    assert!(!bx.log_text().contains('\u{1b}'), "{}", bx.log_text());
    assert_eq!(client.send("DELETE", "/servers/web", "").status, 200);

    // A name with quotes, spaces and a slash is fine: it is escaped where it is shown.
    let odd = "a \"b\"/c";
    let reply = create(odd);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(object_keys(&client.get_json("/servers")), [odd]);
    assert_eq!(client.get(&format!("/servers/{}/stats", percent_encoded(odd))).status, 200);
    assert!(!bx.log_text().contains("forged"), "{}", bx.log_text());
}

#[test]
fn a_file_with_such_a_name_is_a_config_error() {
    let (status, stderr) = check(
        "names.toml",
        "[servers.\"a\\nb\"]\nbind = \"127.0.0.1:1\"\n[servers.\"a\\nb\".discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n",
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("server name \"a\\nb\" must not contain control characters"), "{stderr}");
}

/// 100,000 backends in one request (2 distinct weights, 1.7 MB of JSON).
fn huge_server(bind_port: u16) -> String {
    let backends: Vec<String> = (0..100_000)
        .map(|n| {
            let weight = if n % 10 == 0 { " weight=2" } else { "" };
            format!("\"10.0.{}.{}:{}{weight}\"", n / 50_000, 1 + n % 250, 1 + n % 50_000)
        })
        .collect();
    format!(
        "{{\"bind\": \"127.0.0.1:{bind_port}\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [{}]}}}}",
        backends.join(",")
    )
}

/// Building the weight table for 100,000 backends froze the control thread — API, healthchecks,
/// metrics — for seconds in a release build (O(backends²)); far longer in this debug build. Now
/// parsing and building are linear: well under a second here, but a machine busy with other
/// work stretches that (a ping waited 5.3 s with one CPU of two taken by a busy loop while the
/// suite ran), hence the 10 s margin, still far short of the quadratic stall. Pings go on for a
/// second after the POST answered, while discovery installs the backends and builds the
/// snapshot.
#[test]
fn a_hundred_thousand_backends_do_not_stall_the_api() {
    let api = free_port();
    let _bx = Betwixt::start(&api_config(api, ""), &[], &[api]);
    let body = huge_server(free_port());
    assert!(body.len() < 2 << 20, "{}", body.len());
    let posting = std::thread::spawn(move || Client::http(api).send("POST", "/servers/huge", &body));
    let client = Client::http(api);
    let mut slowest = Duration::ZERO;
    let mut posted: Option<Instant> = None;
    while posted.is_none_or(|at| at.elapsed() < Duration::from_secs(1)) {
        if posted.is_none() && posting.is_finished() {
            posted = Some(Instant::now());
        }
        let started = Instant::now();
        assert_eq!(client.get("/ping").body, "OK");
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = posting.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(slowest < Duration::from_secs(10), "a ping waited {slowest:?}");
    let config = client.get_json("/servers/huge");
    assert_eq!(config["discovery"]["static_list"].as_array().map(|b| b.len()), Some(100_000));
}

/// Sends `head` (and `body`), then waits for betwixt's answer; returns it and how long it took
/// to come, or `None` when the connection was closed without an answer within 10 s.
fn answer_after(port: u16, head: &str, body: &str) -> (Option<String>, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    ((!answer.is_empty()).then_some(answer), started.elapsed())
}

/// A request whose body never completes held its connection (and a place on the control
/// thread) for ever when no auth was set. Now it has `request_timeout` for the head, and again
/// for the body.
#[test]
fn slow_requests_are_cut_off() {
    let api = free_port();
    let _bx = Betwixt::start(&api_config(api, "request_timeout = \"1s\"\n"), &[], &[api]);
    let head = "POST /servers/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let (answer, waited) = answer_after(api, head, "{\"bind\": ");
    let answer = answer.expect("an answer before the connection closes");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body not received within 1s"), "{answer}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");

    // A head that never ends is dropped too (by hyper, without an answer).
    let (answer, waited) = answer_after(api, "GET /servers HTTP/1.1\r\nHost: x\r\n", "");
    assert_eq!(answer, None);
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // An unhurried but complete request is still served.
    let (answer, _) = answer_after(api, "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "");
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
}

/// True when betwixt closes `stream` (EOF or reset) within `limit` without a byte.
fn closed_by_peer(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn connections_per_client_are_limited() {
    let api = free_port();
    let _bx = Betwixt::start(&api_config(api, "max_connections_per_client = 3\n"), &[], &[api]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(("127.0.0.1", api)).unwrap()).collect();
    let mut fourth = TcpStream::connect(("127.0.0.1", api)).unwrap();
    assert!(closed_by_peer(&mut fourth, Duration::from_secs(5)), "a fourth connection was kept");
    assert!(!closed_by_peer(&mut held[0], Duration::from_millis(300)), "a held connection was closed");
    // A place comes free when a connection ends.
    drop(held.pop());
    assert!(common::wait_until(Duration::from_secs(5), || Client::http(api)
        .try_send("GET", "/ping", &[("Connection", "close")], "")
        .is_ok_and(|r| r.status == 200)));
}

#[test]
fn connections_in_all_are_limited() {
    let api = free_port();
    let _bx = Betwixt::start(&api_config(api, "max_connections = 2\n"), &[], &[api]);
    let _held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", api)).unwrap()).collect();
    let mut third = TcpStream::connect(("127.0.0.1", api)).unwrap();
    assert!(closed_by_peer(&mut third, Duration::from_secs(5)), "a third connection was kept");
}

fn exec_server(port: u16) -> String {
    format!(
        "{{\"bind\": \"127.0.0.1:{port}\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"127.0.0.1:1\"]}}, \
         \"healthcheck\": {{\"kind\": \"exec\", \"exec_command\": \"/bin/true\", \"exec_expected_positive_output\": \"1\"}}}}"
    )
}

/// `exec` healthchecks run commands as betwixt's user: through the API only when allowed.
#[test]
fn exec_healthchecks_through_the_api_only_when_allowed() {
    let api = free_port();
    let _bx = Betwixt::start(&api_config(api, ""), &[], &[api]);
    let reply = Client::http(api).send("POST", "/servers/cmd", &exec_server(free_port()));
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.message().contains("allow_exec = true"), "{}", reply.body);
    assert!(object_keys(&Client::http(api).get_json("/servers")).is_empty());

    let api = free_port();
    let _bx = Betwixt::start(&api_config(api, "allow_exec = true\n"), &[], &[api]);
    let reply = Client::http(api).send("POST", "/servers/cmd", &exec_server(free_port()));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn dump_masks_the_password_and_still_parses() {
    let api = free_port();
    let auth = "[api.basic_auth]\nlogin = \"admin\"\npassword = \"s3cret-pw\"\n";
    let bx = Betwixt::start(&api_config(api, auth), &[], &[api]);
    let admin = Client::http(api).login("admin", "s3cret-pw");
    for (query, format) in [("", Format::Toml), ("?format=json", Format::Json)] {
        let dump = admin.get(&format!("/dump{query}"));
        assert_eq!(dump.status, 200);
        assert!(!dump.body.contains("s3cret"), "{}", dump.body);
        let (config, _) = parse_config(&dump.body, format).unwrap_or_else(|e| panic!("{e}\n{}", dump.body));
        let auth = config.api.unwrap().basic_auth.unwrap();
        assert_eq!((auth.login.as_str(), auth.password.as_str()), ("admin", "********"));
    }
    // Loopback only: no warning about an open API.
    assert!(!bx.log_text().contains("without [api.basic_auth]"), "{}", bx.log_text());
}
