//! The REST API against the running binary: every endpoint, its errors, basic auth, CORS, HTTPS.

mod api_client;
mod common;

use api_client::{object_keys, u64_at, Client};
use betwixt_control::config::{parse_config, Format};
use common::backends::{Backend, Behaviour};
use common::{free_port, Betwixt};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

fn server_section(name: &str, port: u16, backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{} weight=3\"", b.line())).collect();
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn every_endpoint_answers_with_gobetween_fields() {
    let backend = Backend::start("one", Behaviour::Named);
    let (api, web) = (free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[defaults]\nmax_connections = 77\n{}",
        server_section("web", web, &[&backend])
    );
    let bx = Betwixt::start(&config, &[], &[api]);
    let client = Client::http(api);

    let ping = client.get("/ping");
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));

    let root = client.get_json("/");
    assert_eq!(u64_at(&root, "pid"), bx.child.id() as u64);
    assert_eq!(root["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    for key in ["time", "startTime", "uptime"] {
        assert!(root[key].as_str().is_some_and(|s| !s.is_empty()), "{key} in {root}");
    }
    assert!(root["time"].as_str().unwrap() >= root["startTime"].as_str().unwrap());
    assert_eq!(root["configuration"]["kind"].as_str(), Some("file"));
    assert!(root["configuration"]["path"].as_str().unwrap().ends_with("betwixt.toml"));

    // Servers are listed with [defaults] folded in, as gobetween does.
    let servers = client.get_json("/servers");
    assert_eq!(object_keys(&servers), ["web"]);
    let web_config = &servers["web"];
    assert_eq!(web_config["bind"].as_str(), Some(format!("127.0.0.1:{web}").as_str()));
    assert_eq!(u64_at(web_config, "max_connections"), 77);
    assert_eq!(web_config["discovery"]["kind"].as_str(), Some("static"));
    assert_eq!(client.get_json("/servers/web"), *web_config);

    let stats = client.get_json("/servers/web/stats");
    for key in ["active_connections", "rx_total", "tx_total", "rx_second", "tx_second"] {
        assert_eq!(u64_at(&stats, key), 0, "{key}");
    }
    let backends = stats["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1);
    let b = &backends[0];
    assert_eq!(b["host"].as_str(), Some("127.0.0.1"));
    assert_eq!(b["port"].as_str(), Some(backend.port.to_string().as_str()));
    assert_eq!((u64_at(b, "priority"), u64_at(b, "weight")), (1, 3));
    assert!(b.get("max_connections").is_none() && b.get("sni").is_none());
    assert_eq!(b["stats"]["live"].as_bool(), Some(true));
    assert_eq!(b["stats"]["discovered"].as_bool(), Some(true));
    for key in [
        "total_connections",
        "active_connections",
        "refused_connections",
        "rx",
        "tx",
        "rx_second",
        "tx_second",
    ] {
        assert_eq!(u64_at(&b["stats"], key), 0, "{key}");
    }

    // /dump in both formats is a configuration betwixt reads back.
    let toml = client.get("/dump");
    assert_eq!(toml.status, 200);
    let (from_toml, warnings) = parse_config(&toml.body, Format::Toml).expect("TOML dump parses");
    assert!(warnings.is_empty(), "{warnings:?}");
    let json = client.get("/dump?format=json");
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("text/plain; charset=utf-8"));
    let (from_json, warnings) = parse_config(&json.body, Format::Json).expect("JSON dump parses");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(from_toml, from_json);
    assert_eq!(from_toml.servers.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(from_toml.defaults.unwrap().max_connections, Some(77));
    // gobetween answers 500; betwixt 400, the caller's mistake (docs/migration.md).
    let bad = client.get("/dump?format=xml");
    assert_eq!(bad.status, 400);
    assert!(bad.message().contains("xml"), "{}", bad.body);
}

#[test]
fn errors_are_json_strings_with_gobetween_status_codes() {
    let backend = Backend::start("one", Behaviour::Named);
    let (api, web, free) = (free_port(), free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n{}",
        server_section("web", web, &[&backend])
    );
    let _bx = Betwixt::start(&config, &[], &[api, web]);
    let client = Client::http(api);

    // An unknown name is no error to gobetween: 200 and `null`.
    for (method, path) in
        [("GET", "/servers/nope"), ("GET", "/servers/nope/stats"), ("DELETE", "/servers/nope")]
    {
        let reply = client.send(method, path, "");
        assert_eq!((reply.status, reply.body.as_str()), (200, "null"), "{method} {path}");
    }
    // No route, or no such method on a route: gin's plain 404.
    for (method, path) in [("GET", "/no/such/path"), ("PUT", "/servers/web"), ("POST", "/servers")] {
        let reply = client.send(method, path, "{}");
        assert_eq!((reply.status, reply.body.as_str()), (404, "404 page not found"), "{method} {path}");
    }

    let not_json = client.send("POST", "/servers/new", "{\"bind\": ");
    assert_eq!(not_json.status, 400);
    assert!(not_json.message().contains("invalid server config"), "{}", not_json.body);

    let typo = format!(
        "{{\"bind\": \"127.0.0.1:{free}\", \"discovry\": {{\"kind\": \"static\", \"static_list\": [\"{}\"]}}}}",
        backend.line()
    );
    let typo = client.send("POST", "/servers/new", &typo);
    assert_eq!(typo.status, 409);
    assert!(typo.message().contains("discovry") && typo.message().contains("did you mean `discovery`"));

    // A bad backend line is skipped with a warning, as gobetween does (tests/parity_config.rs).

    let exists = format!(
        "{{\"bind\": \"127.0.0.1:{free}\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{}\"]}}}}",
        backend.line()
    );
    let exists = client.send("POST", "/servers/web", &exists);
    assert_eq!(exists.status, 409);
    assert!(exists.message().contains("already exists"));

    // Another server's address is taken, even though SO_REUSEPORT would let it bind.
    let same_bind = format!(
        "{{\"bind\": \"127.0.0.1:{web}\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"{}\"]}}}}",
        backend.line()
    );
    let same_bind = client.send("POST", "/servers/twin", &same_bind);
    assert_eq!(same_bind.status, 409, "{}", same_bind.body);
    assert!(same_bind.message().contains("\"web\""), "{}", same_bind.body);

    // Nothing was created by the failed requests.
    assert_eq!(object_keys(&client.get_json("/servers")), ["web"]);
}

#[test]
fn basic_auth_guards_everything_but_ping() {
    let api = free_port();
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[api.basic_auth]\nlogin = \"admin\"\npassword = \"s3cret\"\n"
    );
    let _bx = Betwixt::start(&config, &[], &[api]);
    let anonymous = Client::http(api);
    for path in ["/", "/servers", "/dump", "/servers/x/stats"] {
        let reply = anonymous.get(path);
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Basic realm=\"Authorization Required\""),
            "{path}"
        );
        assert_eq!(reply.body, "", "{path}");
    }
    assert_eq!(anonymous.send("POST", "/servers/x", "{}").status, 401);
    assert_eq!(anonymous.get("/ping").status, 200);
    assert_eq!(Client::http(api).login("admin", "wrong").get("/").status, 401);
    assert_eq!(Client::http(api).login("root", "s3cret").get("/").status, 401);
    let admin = Client::http(api).login("admin", "s3cret");
    assert_eq!(admin.get("/").status, 200);
    assert_eq!(admin.get_json("/servers").as_object().map(|o| o.len()), Some(0));
}

#[test]
fn cors_preflight_and_headers_only_when_enabled() {
    let (with, without) = (free_port(), free_port());
    let auth = "[api.basic_auth]\nlogin = \"admin\"\npassword = \"pw\"\n";
    let _a = Betwixt::start(
        &format!("[api]\nenabled = true\nbind = \"127.0.0.1:{with}\"\ncors = true\n{auth}"),
        &[],
        &[with],
    );
    let _b = Betwixt::start(
        &format!("[api]\nenabled = true\nbind = \"127.0.0.1:{without}\"\n{auth}"),
        &[],
        &[without],
    );
    let preflight = [
        ("Origin", "http://dashboard.example"),
        ("Access-Control-Request-Method", "DELETE"),
        ("Access-Control-Request-Headers", "authorization"),
    ];

    // A browser's preflight carries no credentials; it must still be answered.
    let reply = Client::http(with).try_send("OPTIONS", "/servers/web", &preflight, "").unwrap();
    assert!((200..300).contains(&reply.status), "preflight answered {}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let methods = reply.header("access-control-allow-methods").unwrap().to_ascii_uppercase();
    assert!(methods.contains("DELETE") && methods.contains("POST"), "{methods}");
    let headers = reply.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");

    let client = Client::http(with).login("admin", "pw");
    let reply = client.try_send("GET", "/servers", &[("Origin", "http://dashboard.example")], "").unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));

    let reply = Client::http(without).try_send("OPTIONS", "/servers/web", &preflight, "").unwrap();
    assert!(reply.header("access-control-allow-origin").is_none());
    assert!(!(200..300).contains(&reply.status), "preflight without cors answered {}", reply.status);
    let reply = Client::http(without)
        .login("admin", "pw")
        .try_send("GET", "/servers", &[("Origin", "http://dashboard.example")], "")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.header("access-control-allow-origin").is_none());
}

#[test]
fn https_with_configured_certificate() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let api = free_port();
    let dir = common::TempDir::new("tls");
    let cert = dir.write("cert.pem", &certified.cert.pem());
    let key = dir.write("key.pem", &certified.key_pair.serialize_pem());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[api.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let _bx = Betwixt::start(&config, &[], &[api]);

    let client = Client::https(api, certified.cert.der());
    let ping = client.get("/ping");
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));
    assert_eq!(client.get_json("/servers").as_object().map(|o| o.len()), Some(0));
    // Plain HTTP on the HTTPS port gets no answer.
    assert!(Client::http(api).try_send("GET", "/ping", &[], "").is_err());
    // Neither does a client that does not trust the certificate.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    assert!(Client::https(api, other.cert.der()).try_send("GET", "/ping", &[], "").is_err());
}

#[test]
fn unreadable_certificate_fails_startup() {
    let api = free_port();
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[api.tls]\ncert_path = \"/nonexistent/cert.pem\"\nkey_path = \"/nonexistent/key.pem\"\n"
    );
    let mut bx = Betwixt::start(&config, &[], &[]);
    let status = bx.wait_exit(std::time::Duration::from_secs(10)).expect("betwixt exits");
    assert!(!status.success());
    assert!(bx.log_text().contains("/nonexistent/cert.pem"), "{}", bx.log_text());
}
