//! The REST API answering as gobetween's does (gin, `src/api/*.go`): reply shapes, status codes,
//! CORS and basic auth as gin configures them, `GET /` in Go's formats, stats counted with
//! gobetween's meaning, and `DELETE /servers/NAME` closing live connections; plus betwixt's
//! draining additions (`?drain=`, backend drain).

mod api_client;
mod common;

use api_client::{object_keys, u64_at, Client, Reply};
use common::backends::{Backend, Behaviour};
use common::{ask_name, free_port, serve_http, static_server, wait_for_port, wait_until, Betwixt, TempDir};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn api_section(api: u16) -> String {
    format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n")
}

/// betwixt with an API on `api` and the single static server `s` of `static_server`.
fn start(api: u16, port: u16, balance: &str, lines: &[String], extra: &str) -> Betwixt {
    let config = format!("{}{}", api_section(api), static_server(port, balance, lines, extra));
    Betwixt::start(&config, &["--shards", "1"], &[api, port])
}

/// betwixt started with `args` (a source subcommand) whose configuration has an API on `api`.
fn start_with_args(args: &[&str], api: u16) -> Betwixt {
    let dir = TempDir::new("source");
    let log = dir.0.join("betwixt.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(common::binary())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let bx = Betwixt { child, dir, log };
    assert!(wait_for_port(api, Duration::from_secs(10)), "no API; log:\n{}", bx.log_text());
    bx
}

fn assert_json_string(reply: &Reply, status: u16, contains: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json; charset=utf-8"));
    assert!(reply.message().contains(contains), "{contains:?} not in {}", reply.body);
}

/// Whether `text` is a Go `time.Duration.String()`: `0s`, `800ns`, `12.5µs`, `1.5ms`, or
/// `[Nh][Nm]N[.frac]s` with minutes and seconds below 60 after a larger unit.
fn is_go_duration(text: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let decimal = |s: &str| match s.split_once('.') {
        Some((whole, fraction)) => number(whole) && number(fraction) && !fraction.ends_with('0'),
        None => number(s),
    };
    for unit in ["ns", "µs", "ms"] {
        if let Some(value) = text.strip_suffix(unit) {
            return decimal(value) && (unit != "ns" || !value.contains('.'));
        }
    }
    let Some(mut rest) = text.strip_suffix('s') else { return false };
    let mut larger = false;
    for unit in ['h', 'm'] {
        if let Some((value, after)) = rest.split_once(unit) {
            if !number(value) || (larger && value.parse::<u64>().unwrap() >= 60) {
                return false;
            }
            (rest, larger) = (after, true);
        } else if larger {
            return false; // hours without minutes
        }
    }
    let seconds_ok = rest.split('.').next().unwrap().parse::<u64>().is_ok_and(|s| !larger || s < 60);
    decimal(rest) && seconds_ok
}

/// Whether `text` is Go's JSON form of a `time.Time`: RFC 3339, up to nine fraction digits
/// without trailing zeros, `Z` or `±hh:mm`.
fn is_go_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits =
        |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(0..4) && digits(5..7) && digits(8..10) && digits(11..13) && digits(14..16) && digits(17..19))
    {
        return false;
    }
    if text.len() < 20 || &text[4..5] != "-" || &text[10..11] != "T" || &text[13..14] != ":" {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(after) = rest.strip_prefix('.') {
        let end = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        if end == 0 || end > 9 || after[..end].ends_with('0') {
            return false;
        }
        rest = &after[end..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":"
            && rest[1..3].bytes().chain(rest[4..6].bytes()).all(|b| b.is_ascii_digit()))
}

#[test]
fn go_formats_are_recognised() {
    for good in
        ["0s", "800ns", "12.5µs", "123.456ms", "1s", "45.123456789s", "3m0.5s", "1h2m3.456789012s", "49h0m1s"]
    {
        assert!(is_go_duration(good), "{good}");
    }
    for bad in ["0", "1s234ms", "1.50s", "1h3s", "61s5", "1m61s", "5"] {
        assert!(!is_go_duration(bad), "{bad}");
    }
    for good in ["2025-04-27T20:33:25.123456789+03:00", "2025-04-27T20:33:25Z", "2025-04-27T20:33:25.5-09:30"]
    {
        assert!(is_go_time(good), "{good}");
    }
    for bad in ["2025-04-27T20:33:25.120Z", "2025-04-27 20:33:25Z", "2025-04-27T20:33:25+0300"] {
        assert!(!is_go_time(bad), "{bad}");
    }
}

#[test]
fn root_answers_in_gobetweens_keys_and_go_formats() {
    let api = free_port();
    let bx = Betwixt::start(&api_section(api), &[], &[api]);
    std::thread::sleep(Duration::from_millis(1100));
    let reply = Client::http(api).get("/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json; charset=utf-8"));
    // Go's MarshalIndent: four spaces, keys of a map sorted.
    assert!(
        reply.body.starts_with("{\n    \"configuration\": {\n        \"kind\": \"file\","),
        "{}",
        reply.body
    );
    let root = reply.json();
    assert_eq!(object_keys(&root), ["configuration", "pid", "startTime", "time", "uptime", "version"]);
    assert_eq!(u64_at(&root, "pid"), bx.child.id() as u64);
    assert_eq!(root["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    let uptime = root["uptime"].as_str().unwrap();
    assert!(is_go_duration(uptime) && uptime.ends_with('s') && !uptime.ends_with("ms"), "uptime {uptime}");
    for key in ["time", "startTime"] {
        assert!(is_go_time(root[key].as_str().unwrap()), "{key}: {root}");
    }
    assert_eq!(object_keys(&root["configuration"]), ["kind", "path"]);
    assert!(root["configuration"]["path"].as_str().unwrap().ends_with("betwixt.toml"));
}

#[test]
fn root_names_url_and_consul_sources_as_gobetween() {
    let api = free_port();
    let (http, _requests) = serve_http(api_section(api));
    let url = format!("http://127.0.0.1:{http}/lb.toml");
    let bx = start_with_args(&["from-url", &url], api);
    let source = Client::http(api).get_json("/")["configuration"].clone();
    assert_eq!(object_keys(&source), ["kind", "url"], "{source}");
    assert_eq!((source["kind"].as_str(), source["url"].as_str()), (Some("url"), Some(url.as_str())));
    drop(bx);
    assert!(wait_until(Duration::from_secs(5), || TcpStream::connect(("127.0.0.1", api)).is_err()));

    let (consul, _requests) = serve_http(api_section(api));
    let host = format!("127.0.0.1:{consul}");
    let _bx = start_with_args(&["from-consul", &host, "-k", "lb/config", "-f", "toml"], api);
    let source = Client::http(api).get_json("/")["configuration"].clone();
    assert_eq!(object_keys(&source), ["kind", "host", "key"], "{source}");
    assert_eq!(source["kind"].as_str(), Some("consul"));
    assert_eq!((source["host"].as_str(), source["key"].as_str()), (Some(host.as_str()), Some("lb/config")));
}

/// The sections `[defaults]` and `[servers.sample]` of gobetween's own sample configuration
/// (shared/gobetween/gobetween.toml), with the sample's bind moved to `bind`.
fn gobetween_sample_server(bind: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/gobetween/gobetween.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = |start: &str, end: &str| {
        let from = text.find(start).unwrap_or_else(|| panic!("no {start} in the sample"));
        let to = from + text[from..].find(end).unwrap_or_else(|| panic!("no {end} after {start}"));
        text[from..to].to_string()
    };
    let defaults = section("[defaults]", "\n\n");
    let sample = section("[servers.sample]", "# ---------- udp example");
    assert!(sample.contains("bind = \"0.0.0.0:3000\""), "{sample}");
    format!("{defaults}\n{}", sample.replace("0.0.0.0:3000", bind))
}

/// What gobetween 0.8.2 answers for `GET /servers/sample` on its sample configuration (Go's
/// `json.MarshalIndent` of the prepared `config.Server`), with the sample's bind moved to `bind`.
fn gobetween_sample_reply(bind: &str) -> String {
    r#"{
    "max_connections": 0,
    "client_idle_timeout": "0",
    "backend_idle_timeout": "0",
    "backend_connection_timeout": "0",
    "bind": "BIND",
    "protocol": "tcp",
    "balance": "weight",
    "sni": null,
    "tls": null,
    "backends_tls": null,
    "udp": null,
    "access": null,
    "proxy_protocol": null,
    "discovery": {
        "kind": "static",
        "failpolicy": "keeplast",
        "interval": "0",
        "timeout": "0",
        "static_list": [
            "localhost:8000 weight=40 priority=1",
            "localhost:8001 weight=60 priority=1",
            "localhost:8002 weight=100 priority=0 max_connections=10"
        ]
    },
    "healthcheck": {
        "kind": "none",
        "interval": "0",
        "passes": 1,
        "fails": 1,
        "timeout": "0",
        "initial_status": null
    }
}"#
    .replace("BIND", bind)
}

#[test]
fn servers_are_shown_as_gobetween_prepares_them() {
    let (api, port) = (free_port(), free_port());
    let bind = format!("127.0.0.1:{port}");
    let config = format!("{}{}", api_section(api), gobetween_sample_server(&bind));
    let _bx = Betwixt::start(&config, &[], &[api, port]);
    let client = Client::http(api);
    let expected = gobetween_sample_reply(&bind);

    // Byte for byte: every field with its default, gobetween's order, `null` for absent
    // sections, backend lines as written, four-space indentation.
    let one = client.get("/servers/sample");
    assert_eq!(one.status, 200);
    assert_eq!(one.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(one.body, expected);
    let all = client.get("/servers");
    let indented = expected.replace('\n', "\n    ");
    assert_eq!(all.body, format!("{{\n    \"sample\": {indented}\n}}"));

    // A server created through the API shows the same way: durations as written, `[defaults]`
    // folded in, the healthcheck's defaults filled in.
    let free = free_port();
    let body = format!(
        "{{\"bind\": \"127.0.0.1:{free}\", \"balance\": \"roundrobin\", \"client_idle_timeout\": \"90s\", \
         \"access\": {{\"rules\": [\"deny 10.0.0.0/8\"]}}, \
         \"discovery\": {{\"kind\": \"static\", \"interval\": \"1m30s\", \"static_list\": [\"127.0.0.1:1  weight=2\"]}}, \
         \"healthcheck\": {{\"kind\": \"ping\", \"interval\": \"1.5s\", \"fails\": 0}}}}"
    );
    assert_eq!(client.send("POST", "/servers/api", &body).status, 200);
    let api_server = client.get_json("/servers/api");
    assert_eq!(api_server["client_idle_timeout"].as_str(), Some("90s"));
    assert_eq!(api_server["backend_idle_timeout"].as_str(), Some("0"));
    assert_eq!(api_server["balance"].as_str(), Some("roundrobin"));
    assert_eq!(api_server["access"]["default"].as_str(), Some("allow"));
    assert_eq!(api_server["discovery"]["interval"].as_str(), Some("1m30s"));
    assert_eq!(api_server["discovery"]["static_list"][0].as_str(), Some("127.0.0.1:1  weight=2"));
    let check = &api_server["healthcheck"];
    assert_eq!(object_keys(check), ["kind", "interval", "passes", "fails", "timeout", "initial_status"]);
    assert_eq!((check["interval"].as_str(), check["timeout"].as_str()), (Some("1.5s"), Some("0")));
    assert_eq!((u64_at(check, "passes"), u64_at(check, "fails")), (1, 1));
    assert!(check["initial_status"].is_null());
}

#[test]
fn unknown_names_answer_null_and_errors_are_json_strings_with_gobetweens_codes() {
    let backend = Backend::start("one", Behaviour::Named);
    let (api, port, free) = (free_port(), free_port(), free_port());
    let _bx = start(api, port, "weight", &[backend.line()], "");
    let client = Client::http(api);

    for (method, path) in
        [("GET", "/servers/nope"), ("GET", "/servers/nope/stats"), ("DELETE", "/servers/nope")]
    {
        let reply = client.send(method, path, "");
        assert_eq!((reply.status, reply.body.as_str()), (200, "null"), "{method} {path}");
    }
    // A body that is not JSON: 400. Any server gobetween's manager refuses: 409.
    assert_json_string(&client.send("POST", "/servers/new", "{\"bind\": "), 400, "invalid server config");
    assert_json_string(&client.send("POST", "/servers/new", ""), 400, "invalid server config");
    let server = |bind: &str| api_client::static_server(bind, &backend.line());
    assert_json_string(
        &client.send("POST", "/servers/s", &server(&format!("127.0.0.1:{free}"))),
        409,
        "exists",
    );
    assert_json_string(
        &client.send("POST", "/servers/twin", &server(&format!("127.0.0.1:{port}"))),
        409,
        "\"s\"",
    );
    let no_bind =
        format!("{{\"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{}\"]}}}}", backend.line());
    assert_json_string(&client.send("POST", "/servers/new", &no_bind), 409, "bind");
    let bad_balance = format!(
        "{{\"bind\": \"127.0.0.1:{free}\", \"balance\": \"fastest\", \"discovery\": {{\"kind\": \"static\", \"static_list\": []}}}}"
    );
    assert_json_string(&client.send("POST", "/servers/new", &bad_balance), 409, "fastest");
    assert_json_string(
        &client.send("POST", "/servers/%0A", &server(&format!("127.0.0.1:{free}"))),
        409,
        "name",
    );
    // A name that is not UTF-8 once decoded cannot exist; the refusal is a JSON string too.
    assert_json_string(&client.get("/servers/%FF"), 400, "UTF-8");
    assert_json_string(&client.send("DELETE", "/servers/s?drain=%FF", ""), 400, "");
    assert_eq!(object_keys(&client.get_json("/servers")), ["s"]);
    let created = client.send("POST", "/servers/new", &server(&format!("127.0.0.1:{free}")));
    assert_eq!((created.status, created.body.as_str()), (200, "null"));
}

/// gin's `BindJSON` is a `json.Decoder`: it decodes the body's first JSON value with Go's rules
/// (a repeated key read in turn, the last value winning) and leaves whatever follows unread.
#[test]
fn post_bodies_are_decoded_as_gin_decodes_them() {
    let backend = Backend::start("one", Behaviour::Named);
    let (api, port) = (free_port(), free_port());
    let bx = start(api, port, "weight", &[backend.line()], "");
    let client = Client::http(api);
    let server = |port: u16| api_client::static_server(&format!("127.0.0.1:{port}"), &backend.line());

    for (name, trailing) in [("trailing", "trailing"), ("second", "{\"x\": 1}")] {
        let port = free_port();
        let reply = client.send("POST", &format!("/servers/{name}"), &format!("{}{trailing}", server(port)));
        assert_eq!((reply.status, reply.body.as_str()), (200, "null"), "{name}");
        assert!(wait_until(Duration::from_secs(5), || ask_name(port).as_deref() == Some("one")), "{name}");
    }
    // `null` is gobetween's empty server, which its manager refuses; an array is no server at all.
    assert_json_string(&client.send("POST", "/servers/null", "null"), 409, "`bind`");
    assert_json_string(&client.send("POST", "/servers/array", "[]"), 400, "invalid type");
    assert_json_string(&client.send("POST", "/servers/array", "[\"127.0.0.1:1\"]"), 400, "invalid type");

    // The later `bind` is the one used, and the repeat is logged as a warning.
    let (first, last) = (free_port(), free_port());
    let body = server(last).replacen("{", &format!("{{\"bind\": \"127.0.0.1:{first}\", "), 1);
    let reply = client.send("POST", "/servers/repeated", &body);
    assert_eq!((reply.status, reply.body.as_str()), (200, "null"));
    assert!(wait_until(Duration::from_secs(5), || ask_name(last).as_deref() == Some("one")));
    assert_eq!(ask_name(first), None);
    assert!(
        wait_until(Duration::from_secs(5), || bx
            .log_text()
            .lines()
            .any(|l| l.contains("server repeated: config warning") && l.contains("`bind` repeated"))),
        "{}",
        bx.log_text()
    );
    assert_eq!(object_keys(&client.get_json("/servers")), ["repeated", "s", "second", "trailing"]);
}

const PREFLIGHT_HEADERS: [(&str, &str); 5] = [
    ("access-control-allow-credentials", "true"),
    ("access-control-allow-methods", "PUT,POST,DELETE,GET,OPTIONS"),
    ("access-control-allow-headers", "Origin,Authorization"),
    ("access-control-max-age", "43200"),
    ("access-control-allow-origin", "*"),
];

#[test]
fn cors_as_gobetween_configures_it() {
    let api = free_port();
    let config =
        format!("{}cors = true\n[api.basic_auth]\nlogin = \"admin\"\npassword = \"pw\"\n", api_section(api));
    let _bx = Betwixt::start(&config, &[], &[api]);
    let anonymous = Client::http(api);
    let origin = ("Origin", "http://dashboard.example");

    // Any OPTIONS with an Origin is a preflight: 204, on any path, without credentials.
    for path in ["/servers/web", "/no/such/path", "/"] {
        let reply = anonymous.try_send("OPTIONS", path, &[origin], "").unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (204, ""), "{path}");
        for (name, value) in PREFLIGHT_HEADERS {
            assert_eq!(reply.header(name), Some(value), "{name} on {path}");
        }
        assert!(reply.header("vary").is_none());
    }
    // Other requests run as usual, with the origin and credentials headers (a 401 too).
    let admin = Client::http(api).login("admin", "pw");
    for (client, status) in [(&admin, 200), (&anonymous, 401)] {
        let reply = client.try_send("GET", "/servers", &[origin], "").unwrap();
        assert_eq!(reply.status, status);
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(reply.header("access-control-allow-credentials"), Some("true"));
        assert!(reply.header("access-control-allow-methods").is_none());
    }
    // The API's own origin is not a cross-origin request; an OPTIONS without Origin has no route.
    let own = format!("http://127.0.0.1:{api}");
    let reply = admin.try_send("GET", "/servers", &[("Origin", &own)], "").unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.header("access-control-allow-origin").is_none());
    let reply = anonymous.try_send("OPTIONS", "/servers", &[], "").unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (404, "404 page not found"));
}

#[test]
fn basic_auth_challenges_as_gin_does() {
    let api = free_port();
    let config = format!("{}[api.basic_auth]\nlogin = \"admin\"\npassword = \"pw\"\n", api_section(api));
    let _bx = Betwixt::start(&config, &[], &[api]);
    for client in [Client::http(api), Client::http(api).login("admin", "nope")] {
        let reply = client.get("/servers");
        assert_eq!(reply.status, 401);
        assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"Authorization Required\""));
        assert_eq!(reply.body, "");
        assert!(reply.header("content-type").is_none(), "{:?}", reply.headers);
    }
    assert_eq!(Client::http(api).get("/ping").body, "OK");
}

#[test]
fn dump_is_plain_text_and_an_unknown_format_is_a_400() {
    let api = free_port();
    let _bx = Betwixt::start(&api_section(api), &[], &[api]);
    let client = Client::http(api);
    for path in ["/dump", "/dump?format=toml", "/dump?format=json"] {
        let reply = client.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"), "{path}");
    }
    // gobetween answers 500 here; betwixt 400 with the same message (docs/migration.md).
    assert_json_string(&client.get("/dump?format=yaml"), 400, "Unknown format yaml");
    assert_json_string(&client.get("/dump?format=AAA"), 400, "Unknown format AAA");
}

/// A connection through the proxy to an echo backend that has carried one exchange.
fn echoing(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(exchange(&mut stream), "echo before the delete");
    stream
}

/// Sends a few bytes and reads them back; false if the connection is closed.
fn exchange(stream: &mut TcpStream) -> bool {
    let mut back = [0u8; 5];
    stream.write_all(b"hello").is_ok() && stream.read_exact(&mut back).is_ok() && &back == b"hello"
}

/// How long until the proxy closes `stream` (EOF or reset), if it does within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    match stream.read(&mut [0u8; 16]) {
        Ok(0) => Some(started.elapsed()),
        Err(e) if e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut => {
            Some(started.elapsed())
        }
        _ => None,
    }
}

/// betwixt proxying the server `s` to an echo backend: (backend, betwixt, API client, port).
fn echo_server() -> (Backend, Betwixt, Client, u16) {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port) = (free_port(), free_port());
    let bx = start(api, port, "weight", &[backend.line()], "");
    (backend, bx, Client::http(api), port)
}

#[test]
fn delete_closes_the_servers_live_connections() {
    let (_backend, bx, client, port) = echo_server();
    let mut live = [echoing(port), echoing(port)];

    let deleted = client.send("DELETE", "/servers/s", "");
    assert_eq!((deleted.status, deleted.body.as_str()), (200, "null"));
    for stream in &mut live {
        assert!(
            closed_within(stream, Duration::from_secs(1)).is_some(),
            "still open; log:\n{}",
            bx.log_text()
        );
    }
    assert!(wait_until(Duration::from_secs(2), || TcpStream::connect(("127.0.0.1", port)).is_err()));
}

#[test]
fn delete_with_drain_lets_connections_finish_then_closes_the_rest() {
    let (_backend, _bx, client, port) = echo_server();
    let (mut finishing, mut lingering) = (echoing(port), echoing(port));

    assert_eq!(client.send("DELETE", "/servers/s?drain=x", "").status, 400);
    let deleted = client.send("DELETE", "/servers/s?drain=2s", "");
    assert_eq!((deleted.status, deleted.body.as_str()), (200, "null"));
    let removed = Instant::now();
    assert!(wait_until(Duration::from_secs(2), || TcpStream::connect(("127.0.0.1", port)).is_err()));
    // Within the drain time, open connections carry on.
    assert!(exchange(&mut finishing) && exchange(&mut lingering));
    finishing.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(closed_within(&mut finishing, Duration::from_secs(1)).map(|_| ()), Some(()), "echo ends");
    // After it, the rest are closed.
    let closed = closed_within(&mut lingering, Duration::from_secs(4)).map(|_| removed.elapsed());
    let closed = closed.expect("the lingering connection is closed when the drain time is over");
    assert!(closed >= Duration::from_millis(1900), "closed after {closed:?}, before the drain time");
}

/// The backend named in `stats` by its port.
fn backend_stats(stats: &Value, backend: &Backend) -> Value {
    let port = backend.port.to_string();
    let entries = stats["backends"].as_array().unwrap();
    let entry = entries.iter().find(|b| b["port"].as_str() == Some(port.as_str()));
    entry.unwrap_or_else(|| panic!("no backend {port} in {stats}"))["stats"].clone()
}

#[test]
fn a_drained_backend_takes_no_new_connections_until_undrained() {
    let (a, b) = (Backend::start("a", Behaviour::Named), Backend::start("b", Behaviour::Named));
    let (api, port) = (free_port(), free_port());
    let _bx = start(api, port, "roundrobin", &[a.line(), b.line()], "");
    let client = Client::http(api);
    // Hold a connection to `a` across its drain.
    let mut held = loop {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if common::read_line(&mut stream).as_deref() == Some("a") {
            break stream;
        }
    };

    let path = format!("/servers/s/backends/{}/drain", a.line());
    let drained = client.send("POST", &path, "");
    assert_eq!((drained.status, drained.body.as_str()), (200, "null"));
    let tally = common::tally(port, 6);
    assert_eq!(tally.get("b"), Some(&6), "{tally:?}");
    assert_eq!(backend_stats(&client.get_json("/servers/s/stats"), &a)["draining"].as_bool(), Some(true));
    assert!(backend_stats(&client.get_json("/servers/s/stats"), &b).get("draining").is_none());
    assert!(closed_within(&mut held, Duration::from_millis(300)).is_none(), "the held connection goes on");

    let undrained = client.send("DELETE", &path, "");
    assert_eq!((undrained.status, undrained.body.as_str()), (200, "null"));
    let tally = common::tally(port, 6);
    assert_eq!((tally.get("a"), tally.get("b")), (Some(&3), Some(&3)), "{tally:?}");

    assert_json_string(&client.send("POST", "/servers/s/backends/127.0.0.1:1/drain", ""), 404, "127.0.0.1:1");
    assert_json_string(&client.send("POST", "/servers/x/backends/127.0.0.1:1/drain", ""), 404, "\"x\"");
    assert_json_string(&client.send("POST", "/servers/s/backends/nohost/drain", ""), 400, "nohost");
}

#[test]
fn stats_count_connections_with_gobetweens_meaning() {
    let alive = Backend::start("alive", Behaviour::Named);
    let dead = common::RefusingPort::new();
    let (api, port) = (free_port(), free_port());
    let lines = [alive.line(), format!("127.0.0.1:{}", dead.port)];
    let _bx = start(api, port, "roundrobin", &lines, "max_connections = 2");
    let client = Client::http(api);

    // Each connection that meets the dead backend is retried on the live one.
    const N: usize = 6;
    for _ in 0..N {
        assert_eq!(common::ask_name(port).as_deref(), Some("alive"));
    }
    // Rejected by max_connections: in no backend counter.
    let active = || u64_at(&client.get_json("/servers/s/stats"), "active_connections");
    assert!(wait_until(Duration::from_secs(2), || active() == 0));
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    assert!(wait_until(Duration::from_secs(2), || active() == 2), "{}", client.get("/servers/s/stats").body);
    assert!(common::closed_without_data(port, Duration::from_secs(2)));
    drop(held);

    let settled = wait_until(Duration::from_secs(5), || {
        let stats = client.get_json("/servers/s/stats");
        u64_at(&stats, "active_connections") == 0
            && u64_at(&backend_stats(&stats, &alive), "total_connections") == N as u64 + 2
    });
    let stats = client.get_json("/servers/s/stats");
    assert!(settled, "{stats}");
    let (good, bad) = (backend_stats(&stats, &alive), &stats["backends"]);
    let bad = bad
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["port"].as_str() == Some(dead.port.to_string().as_str()))
        .unwrap();
    let bad = &bad["stats"];
    // total: connections the backend took; refused: connects it failed. Never both.
    assert_eq!((u64_at(&good, "total_connections"), u64_at(&good, "refused_connections")), (N as u64 + 2, 0));
    assert_eq!(u64_at(bad, "total_connections"), 0, "{stats}");
    assert!(u64_at(bad, "refused_connections") >= 1, "{stats}");
    assert_eq!(u64_at(bad, "active_connections"), 0);
}

/// The status line and headers of a raw HTTP/1.1 request to the API (no redirects followed).
fn raw_head(api: u16, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", api)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

#[test]
fn a_trailing_slash_is_redirected_as_gin_does() {
    let api = free_port();
    let _bx = Betwixt::start(&api_section(api), &[], &[api]);
    for (method, path, status, location) in [
        ("GET", "/servers/", "301", "/servers"),
        ("GET", "/servers/web/stats/?x=1", "301", "/servers/web/stats?x=1"),
        ("DELETE", "/servers/web/", "307", "/servers/web"),
    ] {
        let head = raw_head(api, method, path);
        assert!(head.starts_with(&format!("http/1.1 {status} ")), "{method} {path}: {head}");
        assert!(head.contains(&format!("\r\nlocation: {location}\r\n")), "{method} {path}: {head}");
    }
    for (method, path) in [("PUT", "/servers/"), ("GET", "/nothing/"), ("POST", "/servers/web/stats/")] {
        assert!(raw_head(api, method, path).starts_with("http/1.1 404 "), "{method} {path}");
    }
}
