//! lxd discovery with the real binary against a replay of LXD's REST API on a unix socket:
//! `/1.0/containers?recursion=2` answered with the shapes LXD documents (a sync answer whose
//! metadata holds each container with its config and state.network addresses). A real LXD
//! was not run: its containers need LXC with cgroup and namespace rights this machine's
//! container does not give (podman needed runc and no cgroup limits to run at all), and an
//! image to boot. The "containers" are real backends on loopback, their addresses in the
//! replayed state, their ports in a `user.port` setting, so traffic flows through betwixt.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::unix_http::UnixDocument;
use common::{ask_name, free_port, wait_until, Betwixt, TempDir};
use sonic_rs::JsonValueTrait;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(10);

/// A container as `/1.0/containers?recursion=2` lists it.
fn container(name: &str, status: &str, label: &str, backend: &Backend) -> String {
    format!(
        r#"{{"architecture":"x86_64","config":{{"image.os":"Debian","user.label":"{label}","user.port":"{port}"}},
        "created_at":"2024-01-01T00:00:00Z","ephemeral":false,"name":"{name}","profiles":["default"],
        "stateful":false,"status":"{status}","status_code":103,"type":"container",
        "state":{{"status":"{status}","status_code":103,"pid":4242,"processes":12,
          "network":{{"eth0":{{"addresses":[{{"family":"inet","address":"{ip}","netmask":"24","scope":"global"}},
              {{"family":"inet6","address":"fe80::216:3eff:fe00:1","netmask":"64","scope":"link"}}],
            "counters":{{"bytes_received":1,"bytes_sent":1}},"hwaddr":"00:16:3e:00:00:01","host_name":"veth1",
            "mtu":1500,"state":"up","type":"broadcast"}},
            "lo":{{"addresses":[{{"family":"inet","address":"127.0.0.1","netmask":"8","scope":"local"}}]}}}}}}}}"#,
        port = backend.port,
        ip = backend.ip,
    )
}

fn answer(containers: &[String]) -> String {
    format!(
        r#"{{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":[{}]}}"#,
        containers.join(",")
    )
}

fn config(api: u16, port: u16, discovery: &str) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [servers.s]\nbind = \"127.0.0.1:{port}\"\n[servers.s.discovery]\nkind = \"lxd\"\n{discovery}\n"
    )
}

#[test]
fn running_labelled_containers_are_backends() {
    let (a, b, c) = (
        Backend::start("a", Behaviour::Named),
        Backend::start_at("b", Behaviour::Named, [127, 0, 0, 2].into()),
        Backend::start("c", Behaviour::Named),
    );
    let dir = TempDir::new("lxd");
    let lxd = UnixDocument::serve(
        dir.0.join("unix.socket"),
        &answer(&[container("a", "Running", "web", &a), container("c", "Running", "db", &c)]),
        "/1.0/events",
    );
    let (port, api) = (free_port(), free_port());
    let discovery = format!(
        "interval = \"200ms\"\nlxd_server_address = \"unix://{}\"\nlxd_container_label_key = \"user.label\"\n\
         lxd_container_label_value = \"web\"\nlxd_container_port_key = \"user.port\"\nlxd_container_port = 1",
        lxd.socket.display()
    );
    let bx = Betwixt::start(&config(api, port, &discovery), &[], &[port, api]);
    assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")), "c has another label");

    // b starts (on 127.0.0.2), a stops: only b is left.
    lxd.set(
        answer(&[
            container("a", "Stopped", "web", &a),
            container("b", "Running", "web", &b),
            container("c", "Running", "db", &c),
        ])
        .into_bytes(),
    );
    assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("b")), "{}", bx.log_text());
    let stats = Client::http(api).get_json("/servers/s/stats");
    assert_eq!(stats.pointer(["discovery", "backends"]).and_then(|v| v.as_u64()), Some(1), "{stats:?}");

    // Not JSON: a failed round, the last list kept (keeplast).
    lxd.set(b"<html>502</html>".to_vec());
    let failing = || {
        let stats = Client::http(api).get_json("/servers/s/stats");
        stats.pointer(["discovery", "state"]).and_then(|v| v.as_str()) == Some("failing")
    };
    assert!(wait_until(LONG, failing));
    assert_eq!(ask_name(port).as_deref(), Some("b"));
}

#[test]
fn sections_are_checked() {
    for (discovery, key) in [
        ("kind = \"lxd\"\nlxd_container_port = 80", "discovery.lxd_server_address"),
        ("kind = \"lxd\"\nlxd_server_address = \"http://h:8443\"\nlxd_container_port = 80", "discovery.lxd_server_address"),
        ("kind = \"lxd\"\nlxd_server_address = \"unix:///var/lib/lxd/unix.socket\"", "discovery.lxd_container_port"),
        (
            "kind = \"lxd\"\nlxd_server_address = \"unix:///s\"\nlxd_container_port = 80\nlxd_container_address_type = \"v4\"",
            "discovery.lxd_container_address_type",
        ),
        (
            "kind = \"lxd\"\nlxd_server_address = \"https://h:8443\"\nlxd_container_port = 80\n\
             lxd_server_remote_password = \"secret\"",
            "discovery.lxd_server_remote_password",
        ),
    ] {
        let dir = TempDir::new("lxd-check");
        let path = dir.write("c.toml", &format!("[servers.s]\nbind = \"127.0.0.1:1\"\n[servers.s.discovery]\n{discovery}\n"));
        let (status, _, stderr) = common::run_betwixt(&["check", path.to_str().unwrap()]);
        assert!(!status.success() && stderr.contains(&format!("servers.s.{key}")), "{discovery}: {stderr}");
    }
}
