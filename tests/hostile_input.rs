//! Input a hostile caller controls — API requests and configuration files — against the real
//! binary: each must get a clear refusal, and betwixt must keep serving.

mod api_client;
mod common;

use api_client::{object_keys, Client};
use common::{free_port, run_betwixt, Betwixt, TempDir};

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
