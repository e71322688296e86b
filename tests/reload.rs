//! Reload as a diff: SIGHUP, `POST /reload`, `PUT /config` and watched sources (file, URL,
//! Consul key). Live connections are never dropped, new ones never refused, a bad
//! configuration is rejected with its reason while the running one keeps serving.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{pattern_byte, Backend, Behaviour};
use common::config_server::ConfigServer;
use common::{ask_name, free_port, wait_until, Betwixt, TempDir};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;

fn api(port: u16) -> String {
    format!("[api]\nenabled = true\nbind = \"127.0.0.1:{port}\"\n\n")
}

/// A `[servers.NAME]` section on 127.0.0.1:`port` with static `backends`; `extra` goes into
/// the server's own table.
fn server(name: &str, port: u16, backends: &[String], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n{extra}\n[servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{}]\n\n",
        list.join(", ")
    )
}

fn names(value: &sonic_rs::Value, key: &str) -> Vec<String> {
    value[key]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// One long-lived connection: echoes `chunk`-sized rounds of the pattern until `done`, then
/// half-closes and expects the rest back. Returns the bytes checked, or what went wrong.
fn stream(port: u16, done: &AtomicBool) -> Result<usize, String> {
    const CHUNK: usize = 2048;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut sent, mut rounds) = (0usize, 0);
    let mut back = vec![0u8; CHUNK];
    while !(done.load(Ordering::Relaxed) && rounds >= 3) {
        let chunk: Vec<u8> = (sent..sent + CHUNK).map(pattern_byte).collect();
        conn.write_all(&chunk).map_err(|e| format!("write after {sent} bytes: {e}"))?;
        conn.read_exact(&mut back).map_err(|e| format!("read after {sent} bytes: {e}"))?;
        if back != chunk {
            return Err(format!("bytes differ in the round at {sent}"));
        }
        sent += CHUNK;
        rounds += 1;
        thread::sleep(Duration::from_millis(40));
    }
    conn.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).map_err(|e| format!("end: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} unexpected bytes at the end", rest.len()));
    }
    Ok(sent)
}

/// Waits until the log holds `count` lines containing `text`.
fn wait_log(betwixt: &Betwixt, text: &str, count: usize) -> bool {
    wait_until(Duration::from_secs(10), || betwixt.log_text().matches(text).count() >= count)
}

#[test]
fn streams_stay_byte_exact_and_no_client_is_refused_across_fifty_reloads() {
    let (e1, e2) = (Backend::start("e1", Behaviour::Echo), Backend::start("e2", Behaviour::Echo));
    let other_backend = Backend::start("n", Behaviour::Named);
    let (api_port, stay, other) = (free_port(), free_port(), free_port());
    let extras: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let config = |i: usize| {
        // `stay` alternates its backends and an option; `other` its strategy; one extra server
        // is added by each reload and removed by the next.
        let backends = if i % 2 == 0 { vec![e1.line()] } else { vec![e1.line(), e2.line()] };
        let idle = if i % 2 == 0 { "client_idle_timeout = \"1m\"" } else { "client_idle_timeout = \"2m\"" };
        let balance = if i % 2 == 0 { "balance = \"roundrobin\"" } else { "balance = \"leastconn\"" };
        let mut text = api(api_port) + &server("stay", stay, &backends, idle);
        text += &server("other", other, &[other_backend.line()], balance);
        if i > 0 {
            text += &server(&format!("x{}", i % 4), extras[i % 4], &[other_backend.line()], "");
        }
        text
    };
    let betwixt = Betwixt::start(&config(0), &[], &[stay, other, api_port]);
    let path = betwixt.dir.0.join("betwixt.toml");
    let client = Client::http(api_port);

    let done = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..200)
        .map(|_| {
            let done = done.clone();
            thread::spawn(move || stream(stay, &done))
        })
        .collect();
    // A client opening connections all along: each one must be accepted and echo.
    let (opened, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    let opener = {
        let (done, opened, failures) = (done.clone(), opened.clone(), failures.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let attempt = (|| -> std::io::Result<()> {
                    let mut conn = TcpStream::connect(("127.0.0.1", stay))?;
                    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
                    conn.write_all(b"ping")?;
                    let mut back = [0u8; 4];
                    conn.read_exact(&mut back)?;
                    if &back != b"ping" {
                        return Err(std::io::Error::other("wrong echo"));
                    }
                    Ok(())
                })();
                match attempt {
                    Ok(()) => opened.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.lock().unwrap().push(e.to_string());
                        0
                    }
                };
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Let the streams get going before the reloads start.
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    for i in 1..=50 {
        // Spread over a few seconds, so every stream crosses many reloads.
        thread::sleep(Duration::from_millis(50));
        std::fs::write(&path, config(i)).unwrap();
        if i % 5 == 0 {
            betwixt.signal(SIGHUP);
            assert!(
                wait_log(&betwixt, "reload (SIGHUP):", i / 5),
                "SIGHUP reload {i}:\n{}",
                betwixt.log_text()
            );
        } else {
            let reply = client.send("POST", "/reload", "");
            assert_eq!(reply.status, 200, "reload {i}: {}", reply.body);
            let summary = reply.json();
            assert_eq!(names(&summary, "added"), [format!("x{}", i % 4)], "reload {i}: {summary}");
            assert_eq!(names(&summary, "changed"), ["other", "stay"], "reload {i}: {summary}");
            if i > 1 {
                assert_eq!(
                    names(&summary, "removed"),
                    [format!("x{}", (i - 1) % 4)],
                    "reload {i}: {summary}"
                );
            }
        }
    }
    let reloading = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let results: Vec<Result<usize, String>> = streams.into_iter().map(|t| t.join().unwrap()).collect();
    opener.join().unwrap();
    let broken: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(broken.is_empty(), "{} of 200 streams broke: {:?}", broken.len(), &broken[..broken.len().min(5)]);
    assert!(results.iter().all(|r| *r.as_ref().unwrap() >= 3 * 2048));
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} connections refused or reset: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        opened.load(Ordering::Relaxed) > 50,
        "only {} connections opened",
        opened.load(Ordering::Relaxed)
    );
    // `stay` kept its listeners all along: bound once.
    let log = betwixt.log_text();
    assert_eq!(log.matches(&format!("server stay: listening on 127.0.0.1:{stay}")).count(), 1, "{log}");
    assert!(e2.accepted.load(Ordering::Relaxed) > 0, "the second backend never took part");
    eprintln!("50 reloads in {reloading:?}; {} connections opened meanwhile", opened.load(Ordering::Relaxed));
}

#[test]
fn a_rejected_configuration_leaves_the_running_one_serving() {
    let (n1, n2) = (Backend::start("n1", Behaviour::Named), Backend::start("n2", Behaviour::Named));
    let (api_port, metrics, stay, fresh) = (free_port(), free_port(), free_port(), free_port());
    let head = api(api_port) + &format!("[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\n");
    let good = head.clone() + &server("stay", stay, &[n1.line()], "");
    let betwixt = Betwixt::start(&good, &[], &[stay, api_port]);
    let path = betwixt.dir.0.join("betwixt.toml");
    let client = Client::http(api_port);
    let rejected = |reason: &str| {
        let reply = client.send("POST", "/reload", "");
        assert_eq!(reply.status, 422, "{}", reply.body);
        let message = reply.message();
        assert!(message.contains(reason), "{message}");
        let last = client.get_json("/")["lastReload"].clone();
        assert_eq!(last["result"].as_str(), Some("rejected"), "{last}");
        assert!(last["error"].as_str().unwrap().contains(reason), "{last}");
        assert_eq!(ask_name(stay).as_deref(), Some("n1"), "the running configuration stopped serving");
    };

    // Syntax, by SIGHUP: the reason is in the log.
    std::fs::write(&path, head.clone() + "[servers.stay\nbind = 1\n").unwrap();
    betwixt.signal(SIGHUP);
    assert!(wait_log(&betwixt, "reload (SIGHUP) rejected", 1), "{}", betwixt.log_text());
    assert!(betwixt.log_text().contains("the running configuration stays"));
    assert_eq!(ask_name(stay).as_deref(), Some("n1"));

    // A busy port: nothing of the configuration is applied, not even its good parts.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().port();
    let text = head.clone()
        + &server("stay", stay, &[n2.line()], "")
        + &server("fresh", fresh, &[n2.line()], "")
        + &server("busy", busy, &[n2.line()], "");
    std::fs::write(&path, text).unwrap();
    rejected(&format!("cannot listen on 127.0.0.1:{busy}"));
    assert_eq!(TcpStream::connect(("127.0.0.1", fresh)).unwrap_err().kind(), ErrorKind::ConnectionRefused);

    // A certificate that cannot be read.
    let tls = "protocol = \"tls\"\n[servers.secure.tls]\ncert_path = \"/nonexistent/cert.pem\"\nkey_path = \"/nonexistent/key.pem\"\n";
    std::fs::write(&path, good.clone() + &server("secure", fresh, &[n2.line()], tls)).unwrap();
    rejected("servers.secure.tls");

    let body = Client::http(metrics).get("/metrics").body;
    assert!(body.contains("betwixt_config_reloads_total{result=\"rejected\"} 3"), "{body}");
    assert!(body.contains("betwixt_config_last_reload_successful 0"), "{body}");

    // A good one goes in: `stay` changes backend without a new listener.
    std::fs::write(&path, head + &server("stay", stay, &[n2.line()], "")).unwrap();
    let reply = client.send("POST", "/reload", "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(names(&reply.json(), "changed"), ["stay"]);
    // The new list is installed by its discovery round, just after.
    assert!(wait_until(Duration::from_secs(3), || ask_name(stay).as_deref() == Some("n2")));
    let root = client.get_json("/");
    assert_eq!(root["lastReload"]["result"].as_str(), Some("ok"), "{root}");
    assert_eq!(root["configuration"]["kind"].as_str(), Some("file"), "{root}");
    let body = Client::http(metrics).get("/metrics").body;
    assert!(body.contains("betwixt_config_reloads_total{result=\"ok\"} 1"), "{body}");
    assert!(body.contains("betwixt_config_last_reload_successful 1"), "{body}");
}

#[test]
fn put_config_replaces_the_servers_and_api_added_ones_give_way() {
    let n1 = Backend::start("n1", Behaviour::Named);
    let (api_port, stay, added, via_put) = (free_port(), free_port(), free_port(), free_port());
    let betwixt =
        Betwixt::start(&(api(api_port) + &server("stay", stay, &[n1.line()], "")), &[], &[stay, api_port]);
    let client = Client::http(api_port);
    let body = api_client::static_server(&format!("127.0.0.1:{added}"), &n1.line());
    assert_eq!(client.send("POST", "/servers/added", &body).status, 200);
    assert!(wait_until(Duration::from_secs(3), || ask_name(added).as_deref() == Some("n1")));

    let json = format!(
        r#"{{"api": {{"enabled": true, "bind": "127.0.0.1:{api_port}"}},
            "servers": {{
              "stay": {{"bind": "127.0.0.1:{stay}", "discovery": {{"kind": "static", "static_list": ["{n}"]}}}},
              "put": {{"bind": "127.0.0.1:{via_put}", "discovery": {{"kind": "static", "static_list": ["{n}"]}}}}
            }}}}"#,
        n = n1.line()
    );
    let reply = client.try_send("PUT", "/config", &[("Content-Type", "application/json")], &json).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let summary = reply.json();
    assert_eq!(names(&summary, "added"), ["put"], "{summary}");
    assert_eq!(names(&summary, "removed"), ["added"], "the configuration is the truth: {summary}");
    assert_eq!(names(&summary, "unchanged"), ["stay"], "{summary}");
    assert!(wait_until(Duration::from_secs(3), || ask_name(via_put).as_deref() == Some("n1")));
    assert!(wait_until(Duration::from_secs(3), || TcpStream::connect(("127.0.0.1", added)).is_err()));
    assert_eq!(client.get_json("/")["lastReload"]["trigger"].as_str(), Some("api"));

    // A server that would run commands needs `allow_exec`, as through `POST /servers`.
    let exec = format!(
        "{}{}[servers.run.healthcheck]\nkind = \"exec\"\ninterval = \"1s\"\nexec_command = \"/bin/true\"\nexec_expected_positive_output = \"1\"\nexec_expected_negative_output = \"0\"\n",
        api(api_port),
        server("run", free_port(), &[n1.line()], "")
    );
    let reply = client.send("PUT", "/config?format=toml", &exec);
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(client.get_json("/servers").get("put").is_some(), "a refused configuration changed nothing");
    let reply = client.send("PUT", "/config?format=yaml", "");
    assert_eq!(reply.status, 400, "{}", reply.body);
    drop(betwixt);
}

/// `-e` substitutes `${NAME}` in the configuration source only: a body sent to `PUT /config`
/// is taken as written, or an API caller could read betwixt's environment back through
/// `GET /dump`.
#[test]
fn put_config_takes_no_environment_variables() {
    let n1 = Backend::start("n1", Behaviour::Named);
    let (api_port, stay, via_put) = (free_port(), free_port(), free_port());
    let source = api(api_port)
        + &server("stay", stay, &[n1.line()], "")
            .replace(&format!(":{stay}\""), ":${BETWIXT_TEST_SOURCE_PORT}\"");
    let dir = TempDir::new("bx");
    let path = dir.write("betwixt.toml", &source);
    let env =
        [("BETWIXT_TEST_SOURCE_PORT", stay.to_string()), ("BETWIXT_TEST_PUT_PORT", via_put.to_string())];
    let args = [std::ffi::OsStr::new("-c"), path.as_os_str(), std::ffi::OsStr::new("-e")];
    let betwixt = Betwixt::start_args(&args, &env, dir);
    betwixt.wait_listening(stay);
    betwixt.wait_listening(api_port);

    let body = api(api_port)
        + &server("stay", stay, &[n1.line()], "")
        + &server("put", via_put, &[n1.line()], "")
            .replace(&format!(":{via_put}\""), ":${BETWIXT_TEST_PUT_PORT}\"");
    let client = Client::http(api_port);
    let reply = client.send("PUT", "/config?format=toml", &body);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("${BETWIXT_TEST_PUT_PORT}"), "{}", reply.body);
    assert!(client.get_json("/servers").get("put").is_none(), "{}", reply.body);
    drop(betwixt);
}

#[test]
fn a_watched_file_is_reloaded_when_its_content_changes() {
    let n1 = Backend::start("n1", Behaviour::Named);
    let (stay, added) = (free_port(), free_port());
    let runtime = "[runtime]\nwatch_config = true\nwatch_interval = \"200ms\"\n\n";
    let betwixt =
        Betwixt::start(&(runtime.to_string() + &server("stay", stay, &[n1.line()], "")), &[], &[stay]);
    let path = betwixt.dir.0.join("betwixt.toml");
    // The same text written again is no change.
    std::fs::write(&path, runtime.to_string() + &server("stay", stay, &[n1.line()], "")).unwrap();
    thread::sleep(Duration::from_millis(700));
    assert!(!betwixt.log_text().contains("reload (watch)"), "{}", betwixt.log_text());
    let text = runtime.to_string()
        + &server("stay", stay, &[n1.line()], "")
        + &server("added", added, &[n1.line()], "");
    std::fs::write(&path, text).unwrap();
    betwixt.wait_listening(added);
    assert!(betwixt.log_text().contains("reload (watch): added added"), "{}", betwixt.log_text());
    assert!(wait_until(Duration::from_secs(3), || ask_name(added).as_deref() == Some("n1")));
}

/// A source over HTTP with `watch_config`: started with `args`, the change applied unrestarted.
fn watch_source(
    kind: &str,
    args: impl Fn(u16) -> Vec<String>,
    interval: &str,
) -> (Arc<common::config_server::Counts>, String) {
    let (n1, n2) = (Backend::start("n1", Behaviour::Named), Backend::start("n2", Behaviour::Named));
    let (stay, added) = (free_port(), free_port());
    let head = format!("[runtime]\nwatch_config = true\nwatch_interval = \"{interval}\"\n\n");
    let source = ConfigServer::start(&(head.clone() + &server("stay", stay, &[n1.line()], "")));
    let args: Vec<String> = args(source.port);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let betwixt = Betwixt::start_args(&args, &[], TempDir::new(kind));
    betwixt.wait_listening(stay);
    assert_eq!(ask_name(stay).as_deref(), Some("n1"));
    thread::sleep(Duration::from_millis(1500));
    let changed = Instant::now();
    source.set(&(head + &server("stay", stay, &[n2.line()], "") + &server("added", added, &[n1.line()], "")));
    betwixt.wait_listening(added);
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(5), "{kind}: the change took {took:?}");
    assert!(wait_until(Duration::from_secs(2), || ask_name(stay).as_deref() == Some("n2")));
    (source.counts.clone(), betwixt.log_text())
}

#[test]
fn a_watched_url_is_reloaded_when_it_changes_and_its_etag_is_honoured() {
    let (counts, log) = watch_source(
        "url",
        |port| vec!["from-url".into(), format!("http://127.0.0.1:{port}/betwixt.toml")],
        "1s",
    );
    assert!(log.contains("reload (watch): added added; changed stay"), "{log}");
    assert!(counts.not_modified.load(Ordering::Relaxed) >= 1, "no conditional request was made");
}

/// No Consul server is packaged here: `ConfigServer` replays its KV API, blocking queries
/// included. The watch interval is an hour, so only a blocking query can bring the change.
#[test]
fn a_watched_consul_key_is_reloaded_by_blocking_query() {
    let (counts, log) = watch_source(
        "consul",
        |port| {
            ["from-consul", &format!("127.0.0.1:{port}"), "--key", "lb/betwixt", "-f", "toml"]
                .map(String::from)
                .to_vec()
        },
        "1h",
    );
    assert!(log.contains("reload (watch): added added; changed stay"), "{log}");
    assert!(counts.held.load(Ordering::Relaxed) >= 1, "no query was held");
}

/// Total connections of each backend of `server`, by `host:port`.
fn backend_totals(client: &Client, server: &str) -> Vec<(String, u64)> {
    let stats = client.get_json(&format!("/servers/{server}/stats"));
    let backends = stats["backends"].as_array().unwrap();
    backends
        .iter()
        .map(|b| {
            let name = format!("{}:{}", b["host"].as_str().unwrap(), b["port"].as_str().unwrap_or_default());
            (name, api_client::u64_at(&b["stats"], "total_connections"))
        })
        .collect()
}

#[test]
fn a_changed_server_keeps_its_counters_and_the_backends_that_stay() {
    let (n1, n2) = (Backend::start("n1", Behaviour::Named), Backend::start("n2", Behaviour::Named));
    let (api_port, stay) = (free_port(), free_port());
    let both = [n1.line(), n2.line()];
    let betwixt = Betwixt::start(&(api(api_port) + &server("stay", stay, &both, "")), &[], &[stay, api_port]);
    let path = betwixt.dir.0.join("betwixt.toml");
    let client = Client::http(api_port);
    assert!(wait_until(Duration::from_secs(3), || ask_name(stay).is_some()));
    for _ in 0..9 {
        assert!(ask_name(stay).is_some());
    }
    let before = backend_totals(&client, "stay");
    assert_eq!(before.iter().map(|(_, n)| n).sum::<u64>(), 10, "{before:?}");

    // Another strategy and n2 gone: n1 keeps its count, the server its listeners.
    std::fs::write(&path, api(api_port) + &server("stay", stay, &[n1.line()], "balance = \"leastconn\""))
        .unwrap();
    let reply = client.send("POST", "/reload", "");
    assert_eq!(names(&reply.json(), "changed"), ["stay"]);
    assert!(wait_until(Duration::from_secs(3), || backend_totals(&client, "stay").len() == 1));
    let after = backend_totals(&client, "stay");
    assert_eq!(
        after[0],
        before.iter().find(|(name, _)| name.ends_with(&n1.port.to_string())).unwrap().clone()
    );
    assert_eq!(client.get_json("/servers/stay")["balance"].as_str(), Some("leastconn"));
    assert_eq!(betwixt.log_text().matches("server stay: listening on").count(), 1);
}

#[test]
fn a_changed_bind_rebinds_and_the_old_connections_finish() {
    let e1 = Backend::start("e1", Behaviour::Echo);
    let (api_port, old, new) = (free_port(), free_port(), free_port());
    let betwixt =
        Betwixt::start(&(api(api_port) + &server("moved", old, &[e1.line()], "")), &[], &[old, api_port]);
    let path = betwixt.dir.0.join("betwixt.toml");
    let mut live = TcpStream::connect(("127.0.0.1", old)).unwrap();
    live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let echo = |conn: &mut TcpStream| {
        conn.write_all(b"abc").unwrap();
        let mut back = [0u8; 3];
        conn.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"abc");
    };
    echo(&mut live);

    std::fs::write(&path, api(api_port) + &server("moved", new, &[e1.line()], "")).unwrap();
    let reply = Client::http(api_port).send("POST", "/reload", "");
    assert_eq!(names(&reply.json(), "rebound"), ["moved"], "{}", reply.body);
    betwixt.wait_listening(new);
    assert!(wait_until(Duration::from_secs(3), || TcpStream::connect(("127.0.0.1", old)).is_err()));
    // The connection made through the old listener goes on.
    echo(&mut live);
    assert!(wait_until(Duration::from_secs(3), || {
        TcpStream::connect(("127.0.0.1", new)).is_ok_and(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            c.write_all(b"x").is_ok() && c.read(&mut [0u8; 1]).is_ok_and(|n| n == 1)
        })
    }));
}
