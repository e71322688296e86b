//! Input a hostile caller controls — API requests and configuration files — against the real
//! binary: each must get a clear refusal, and betwixt must keep serving.

mod api_client;
mod common;

use api_client::{object_keys, Client};
use common::{free_port, run_betwixt, Betwixt, TempDir};
use sonic_rs::JsonContainerTrait;
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

#[test]
fn check_of_a_deeply_nested_file_is_an_error_not_a_signal() {
    let dir = TempDir::new("deep");
    let path = dir.write("deep.json", &deep_json("{\"logging\": {\"level\": {\"info\": ", "}}}"));
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("deep.json at line 1") && stderr.contains("nest deeper than"), "{stderr}");
}

/// Every byte but ASCII letters and digits as `%XX`, for a name in a URL path.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A server section in JSON; `backend` is written into a JSON string as it is.
fn static_server(bind_port: u16, backend: &str) -> String {
    format!("{{\"bind\": \"127.0.0.1:{bind_port}\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{backend}\"]}}}}")
}

#[test]
fn names_and_hosts_that_would_forge_output_are_refused() {
    let api = free_port();
    let bx = Betwixt::start(&api_config(api, ""), &[], &[api]);
    let client = Client::http(api);
    let forged = "web\"} 1\ngobetween_server_count 99\n[INFO ] (betwixt): forged";
    let reply = client.send(
        "POST",
        &format!("/servers/{}", percent_encoded(forged)),
        &static_server(free_port(), "127.0.0.1:1"),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.message().contains("invalid server name") && reply.message().contains("U+000A"),
        "{}",
        reply.body
    );

    let reply = client.send("POST", "/servers/web", &static_server(free_port(), "evil\\u001b[2J:80"));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.message().contains("control character"), "{}", reply.body);

    // A name with quotes, spaces and a slash is fine: it is escaped where it is shown.
    let odd = "a \"b\"/c";
    let reply = client.send(
        "POST",
        &format!("/servers/{}", percent_encoded(odd)),
        &static_server(free_port(), "127.0.0.1:1"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(object_keys(&client.get_json("/servers")), [odd]);
    assert_eq!(client.get(&format!("/servers/{}/stats", percent_encoded(odd))).status, 200);
    assert!(!bx.log_text().contains("forged"), "{}", bx.log_text());
}

#[test]
fn a_file_with_such_a_name_is_a_config_error() {
    let dir = TempDir::new("names");
    let path = dir.write(
        "names.toml",
        "[servers.\"a\\nb\"]\nbind = \"127.0.0.1:1\"\n[servers.\"a\\nb\".discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n",
    );
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
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
/// parsing and building are linear: well under a second here, though a machine busy with other
/// work may stretch that, hence the margin. Pings go on for a second after the POST answered,
/// while discovery installs the backends and builds the snapshot.
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
    assert!(slowest < Duration::from_secs(3), "a ping waited {slowest:?}");
    let config = client.get_json("/servers/huge");
    assert_eq!(config["discovery"]["static_list"].as_array().map(|b| b.len()), Some(100_000));
}
