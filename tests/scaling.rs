//! Several instances: betwixt processes reading one Consul key serve the same configuration,
//! and a client-hashing strategy sends a client to the same backend whichever instance it
//! reaches, before and after a change of the key. No Consul server is packaged here: the key
//! is served by a replay of Consul's KV API with its blocking queries (`common::config_server`).
//! Each instance gets its own listening port from the environment (`-e`, `${SCALE_PORT}`), as
//! machines behind ECMP or DNS would each have their own address; the key's text is the same.

mod common;

use common::backends::{Backend, Behaviour};
use common::config_server::ConfigServer;
use common::{free_port, read_line, wait_until, Betwixt, TempDir};
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

const CLIENTS: u32 = 1000;

fn config(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.line())).collect();
    format!(
        "[runtime]\nwatch_config = true\n\n[servers.web]\nbind = \"127.0.0.1:${{SCALE_PORT}}\"\nbalance = \"iphash1\"\n\
         [servers.web.accept_proxy_protocol]\nversion = \"1\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

/// The `i`-th client address (10.0.0.0/8: any address can be claimed through PROXY protocol).
fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i * 2_654_435 % 0x00ff_ffff)
}

/// The backend each client reaches through the instance on `port`.
fn choices(port: u16) -> Vec<String> {
    (0..CLIENTS)
        .map(|i| {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(conn, "PROXY TCP4 {} 127.0.0.1 40000 {port}\r\n", client(i)).unwrap();
            read_line(&mut conn).unwrap_or_else(|| panic!("client {} got no backend", client(i)))
        })
        .collect()
}

fn start(key_port: u16, port: u16) -> Betwixt {
    let host = format!("127.0.0.1:{key_port}");
    let args = ["-e", "from-consul", &host, "--key", "lb/betwixt", "-f", "toml"];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let betwixt = Betwixt::start_args(&args, &[("SCALE_PORT", port.to_string())], TempDir::new("scale"));
    betwixt.wait_listening(port);
    betwixt
}

#[test]
fn instances_on_one_consul_key_send_each_client_to_the_same_backend() {
    let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("b{i}"), Behaviour::Named)).collect();
    let all: Vec<&Backend> = backends.iter().collect();
    let key = ConfigServer::start(&config(&all));
    let (port_a, port_b) = (free_port(), free_port());
    let (a, b) = (start(key.port, port_a), start(key.port, port_b));

    let before = choices(port_a);
    assert_eq!(before, choices(port_b), "the two instances chose differently");
    let used: std::collections::BTreeSet<&String> = before.iter().collect();
    assert_eq!(used.len(), 4, "every backend takes clients: {used:?}");

    // One backend leaves the key: both instances reload, and still agree.
    let changed = Instant::now();
    key.set(&config(&all[..3]));
    let reloaded = |betwixt: &Betwixt| betwixt.log_text().contains("reload (watch): changed web");
    assert!(wait_until(Duration::from_secs(10), || reloaded(&a) && reloaded(&b)), "{}", a.log_text());
    let propagation = changed.elapsed();
    // Its discovery round installs the new list just after the reload.
    assert!(wait_until(Duration::from_secs(5), || choices(port_a).iter().all(|c| c != "b3")));
    let after = choices(port_a);
    assert_eq!(after, choices(port_b), "the two instances chose differently after the reload");
    // iphash1: clients of surviving backends keep them.
    let kept = before.iter().zip(&after).filter(|(old, new)| old != &"b3" && old == new).count();
    let survivors = before.iter().filter(|c| *c != "b3").count();
    assert_eq!(kept, survivors, "clients of surviving backends moved");
    eprintln!(
        "{CLIENTS} clients: identical choices on both instances before and after; the change reached both in {propagation:?}; {survivors} clients kept their backend"
    );
}
