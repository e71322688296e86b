//! Live management through the API: servers created and deleted at runtime, and `/dump`
//! reproducing the running state in a second process.

mod api_client;
mod common;

use api_client::{object_keys, Client};
use betwixt_control::config::{parse_config, render, Format};
use common::backends::{Backend, Behaviour};
use common::{free_port, wait_until, Betwixt};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

fn server_json(port: u16, backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.line())).collect();
    format!(
        "{{\"bind\": \"127.0.0.1:{port}\", \"balance\": \"roundrobin\", \"discovery\": {{\"kind\": \"static\", \"static_list\": [{}]}}}}",
        list.join(", ")
    )
}

fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// Writes `data` and reads exactly as many bytes back from an echo backend.
fn echo(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn server_created_by_api_proxies_then_drains_on_delete_with_drain() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port) = (free_port(), free_port());
    let _bx = Betwixt::start(&format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n"), &[], &[api]);
    let client = Client::http(api);
    assert!(refuses(port));

    let created = client.send("POST", "/servers/live", &server_json(port, &[&backend]));
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(common::wait_for_port(port, Duration::from_secs(5)), "created server does not listen");
    assert_eq!(object_keys(&client.get_json("/servers")), ["live"]);

    // Bytes flow through the new server, exactly.
    let data = pattern(200_000, 1);
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(echo(&mut first, &data), data);
    drop(first);

    // A connection open across the delete completes byte-exact; new ones are refused.
    let mut live = TcpStream::connect(("127.0.0.1", port)).unwrap();
    live.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let before = pattern(50_000, 2);
    assert_eq!(echo(&mut live, &before), before);

    // `?drain=0`: live connections may take as long as they need.
    let deleted = client.send("DELETE", "/servers/live?drain=0", "");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(client.get("/servers/live").body, "null");
    assert!(wait_until(Duration::from_secs(5), || refuses(port)), "deleted server still accepts");

    let after = pattern(300_000, 3);
    assert_eq!(echo(&mut live, &after), after);
    live.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    live.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "echo sent {} extra bytes", rest.len());

    // The name is free again: the server can be created anew.
    let again = client.send("POST", "/servers/live", &server_json(port, &[&backend]));
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(common::wait_for_port(port, Duration::from_secs(5)));
}

#[test]
fn dump_reproduces_the_running_servers_in_a_second_process() {
    let a = Backend::start("a", Behaviour::Named);
    let b = Backend::start("b", Behaviour::Named);
    let (api, first, added) = (free_port(), free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [defaults]\nmax_connections = 500\nclient_idle_timeout = \"1m\"\n\
         [servers.first]\nbind = \"127.0.0.1:{first}\"\nbalance = \"weight\"\nbackend_connection_timeout = \"2s\"\n\
         [servers.first.discovery]\nkind = \"static\"\nstatic_list = [\"{} weight=2 priority=1\", \"{} weight=5\"]\n\
         [servers.first.healthcheck]\nkind = \"ping\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nfails = 2\npasses = 1\n",
        a.line(),
        b.line()
    );
    let _one = Betwixt::start(&config, &[], &[api, first]);
    let client = Client::http(api);
    // Part of the running state exists only because of the API.
    let created = client.send("POST", "/servers/added", &server_json(added, &[&b]));
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(common::wait_for_port(added, Duration::from_secs(5)));

    let servers = client.get_json("/servers");
    assert_eq!(object_keys(&servers), ["added", "first"]);
    let dump = client.get("/dump");
    assert_eq!(dump.status, 200);
    let json_dump = client.get("/dump?format=json");

    // Free the ports, then start a second betwixt from the dump (its API on another port).
    for name in ["added", "first"] {
        assert_eq!(client.send("DELETE", &format!("/servers/{name}"), "").status, 200);
    }
    assert!(wait_until(Duration::from_secs(5), || refuses(first) && refuses(added)));
    let api2 = free_port();
    for (text, format, file) in
        [(&dump.body, Format::Toml, "dump.toml"), (&json_dump.body, Format::Json, "dump.json")]
    {
        let (mut config, _) = parse_config(text, format).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
        config.api.as_mut().unwrap().bind = Some(format!("127.0.0.1:{api2}"));
        let dir = common::TempDir::new("dump");
        let path = dir.write(file, &render(&config, format));
        let two = Betwixt::start_file(&path, &[], dir);
        if !common::wait_for_port(api2, Duration::from_secs(10)) {
            panic!("second betwixt did not start from {file}:\n{}", two.log_text());
        }
        assert_eq!(Client::http(api2).get_json("/servers"), servers, "from {file}");
        assert!(
            common::wait_for_port(first, Duration::from_secs(5))
                && common::wait_for_port(added, Duration::from_secs(5))
        );
        assert_eq!(common::ask_name(added).as_deref(), Some("b"));
        drop(two);
        assert!(wait_until(Duration::from_secs(5), || refuses(api2) && refuses(first)));
    }
}
