//! `udp.transparent = true`: the backend sees the client's own address and port, and the client
//! still gets its replies from the server's address. Needs root: the test builds three network
//! namespaces joined by veth pairs, and nothing of it touches the host's own network:
//!
//! ```text
//!  client ns            betwixt ns (lb)                      backend ns
//!  10.201.1.2 ── veth ── 10.201.1.1 (server)   10.201.2.1 ── veth ── 10.201.2.2:5353 (echo)
//!  default via .1.1                                          default via .2.1
//! ```
//!
//! The backend's route to the client points through betwixt's namespace, and there one policy
//! rule (as docs/udp.md describes) delivers the backend's replies locally, to the session's
//! transparent socket, instead of forwarding them.

mod common;

use common::backends::udp_echo_sender;
use common::netns::{ip, is_root, Netns};
use common::{Betwixt, TempDir};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVER: &str = "10.201.1.1:5300";
const CLIENT_IP: &str = "10.201.1.2";
const BACKEND: &str = "10.201.2.2:5353";

/// The three namespaces of the topology above.
struct Namespaces {
    client: Netns,
    lb: Netns,
    backend: Netns,
}

impl Namespaces {
    fn create() -> Namespaces {
        Namespaces { client: Netns::create("c"), lb: Netns::create("l"), backend: Netns::create("b") }
    }
}

/// Builds the topology above, with the replies' policy route in the lb namespace.
fn build(ns: &Namespaces) {
    let (c, l, b) = (ns.client.name.as_str(), ns.lb.name.as_str(), ns.backend.name.as_str());
    ip(&["link", "add", "name", "c0", "netns", c, "type", "veth", "peer", "name", "lc", "netns", l]);
    ip(&["link", "add", "name", "b0", "netns", b, "type", "veth", "peer", "name", "lb", "netns", l]);
    for (n, dev, addr) in [
        (c, "c0", "10.201.1.2/24"),
        (l, "lc", "10.201.1.1/24"),
        (l, "lb", "10.201.2.1/24"),
        (b, "b0", "10.201.2.2/24"),
    ] {
        ip(&["-n", n, "addr", "add", addr, "dev", dev]);
        ip(&["-n", n, "link", "set", dev, "up"]);
    }
    ip(&["-n", c, "route", "add", "default", "via", "10.201.1.1"]);
    ip(&["-n", b, "route", "add", "default", "via", "10.201.2.1"]);
    // The backend's replies are addressed to the client: deliver them to the local socket
    // bound to the client's address instead of forwarding them.
    ip(&["-n", l, "rule", "add", "from", "10.201.2.2", "ipproto", "udp", "sport", "5353", "lookup", "100"]);
    ip(&["-n", l, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"]);
}

#[test]
fn transparent_backend_sees_the_client_address_and_the_client_gets_its_reply() {
    if !is_root() {
        eprintln!("skipped: needs root, to create network namespaces and veth pairs");
        return;
    }
    let ns = Namespaces::create();
    build(&ns);
    let echo = ns.backend.run(|| UdpSocket::bind(BACKEND).unwrap());
    udp_echo_sender(echo);
    let config = format!(
        "[servers.t]\nbind = \"{SERVER}\"\nprotocol = \"udp\"\nclient_idle_timeout = \"2s\"\n\
         [servers.t.udp]\ntransparent = true\nmax_responses = 1\n\
         [servers.t.discovery]\nkind = \"static\"\nstatic_list = [\"{BACKEND}\"]\n"
    );
    let port: u16 = SERVER.rsplit(':').next().unwrap().parse().unwrap();
    let bx = ns.lb.run(|| Betwixt::start(&config, &[], &[port]));

    // Three clients, each from its own port: each reply names that client's own address, and
    // comes from the server's address.
    let server: SocketAddr = SERVER.parse().unwrap();
    for _ in 0..3 {
        let client = ns.client.run(|| UdpSocket::bind((CLIENT_IP, 0)).unwrap());
        client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let me = client.local_addr().unwrap();
        let mut buf = [0u8; 2048];
        let mut answer = None;
        for _ in 0..6 {
            client.send_to(b"who am i?", server).unwrap();
            if let Ok((n, from)) = client.recv_from(&mut buf) {
                answer = Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
                break;
            }
        }
        let (text, from) =
            answer.unwrap_or_else(|| panic!("no reply for {me}; betwixt log:\n{}", bx.log_text()));
        assert_eq!(text, format!("seen {me}"), "the backend saw another sender");
        assert_eq!(from, server, "the reply must come from the server's address");
    }
    drop(bx);
}

/// Without CAP_NET_ADMIN a transparent server is refused at start, naming the key and the
/// capability. As root the test runs betwixt as `nobody`, who lacks it.
#[test]
fn transparent_without_cap_net_admin_is_refused_at_start() {
    let dir = TempDir::new("transparent");
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = dir.write(
        "t.toml",
        &format!(
            "[servers.t]\nbind = \"127.0.0.1:{port}\"\nprotocol = \"udp\"\n\
             [servers.t.udp]\ntransparent = true\nmax_responses = 1\n\
             [servers.t.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:9\"]\n"
        ),
    );
    let mut command = if is_root() {
        use std::os::unix::fs::PermissionsExt;
        for p in [&dir.0, &path] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", common::binary()]);
        c
    } else {
        Command::new(common::binary())
    };
    let out = command
        .args(["-c", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) runs betwixt without privileges");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("servers.t.udp.transparent") && stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}
