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

use common::{Betwixt, TempDir};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SERVER: &str = "10.201.1.1:5300";
const CLIENT_IP: &str = "10.201.1.2";
const BACKEND: &str = "10.201.2.2:5353";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `ip` with `args`; panics with its message on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().expect("the `ip` tool (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Three namespaces with names unique to this process and call; deleted on drop, also when the
/// test fails half-way (their veth pairs go with them).
struct Namespaces {
    client: String,
    lb: String,
    backend: String,
}

impl Namespaces {
    fn create() -> Namespaces {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tag = format!("bxt{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut made = Namespaces { client: String::new(), lb: String::new(), backend: String::new() };
        for (slot, role) in [(&mut made.client, "c"), (&mut made.lb, "l"), (&mut made.backend, "b")] {
            let name = format!("{tag}-{role}");
            ip(&["netns", "add", &name]);
            *slot = name;
        }
        made
    }

    fn all(&self) -> [&str; 3] {
        [&self.client, &self.lb, &self.backend]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.all() {
            if !name.is_empty() {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}

/// Builds the topology above, with the replies' policy route in the lb namespace.
fn build(ns: &Namespaces) {
    let (c, l, b) = (ns.client.as_str(), ns.lb.as_str(), ns.backend.as_str());
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
    for n in ns.all() {
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    ip(&["-n", c, "route", "add", "default", "via", "10.201.1.1"]);
    ip(&["-n", b, "route", "add", "default", "via", "10.201.2.1"]);
    // The backend's replies are addressed to the client: deliver them to the local socket
    // bound to the client's address instead of forwarding them.
    ip(&["-n", l, "rule", "add", "from", "10.201.2.2", "ipproto", "udp", "sport", "5353", "lookup", "100"]);
    ip(&["-n", l, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"]);
}

/// Runs `f` on a thread inside network namespace `name`: sockets it creates, and processes it
/// starts, live in that namespace.
fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
                // SAFETY: setns on this thread only, with a namespace file we hold open.
                let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {name}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
    })
}

/// A UDP backend answering every datagram with `seen <sender address>`, for at most 30 s (the
/// test is over long before; the thread is left to end by itself).
fn start_echo(socket: UdpSocket) {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..300 {
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(format!("seen {from}").as_bytes(), from);
            }
        }
    });
}

#[test]
fn transparent_backend_sees_the_client_address_and_the_client_gets_its_reply() {
    if !is_root() {
        eprintln!("skipped: needs root, to create network namespaces and veth pairs");
        return;
    }
    let ns = Namespaces::create();
    build(&ns);
    let echo = in_netns(&ns.backend, || UdpSocket::bind(BACKEND).unwrap());
    start_echo(echo);
    let config = format!(
        "[servers.t]\nbind = \"{SERVER}\"\nprotocol = \"udp\"\nclient_idle_timeout = \"2s\"\n\
         [servers.t.udp]\ntransparent = true\nmax_responses = 1\n\
         [servers.t.discovery]\nkind = \"static\"\nstatic_list = [\"{BACKEND}\"]\n"
    );
    let port: u16 = SERVER.rsplit(':').next().unwrap().parse().unwrap();
    let bx = in_netns(&ns.lb, || Betwixt::start(&config, &[], &[port]));

    // Three clients, each from its own port: each reply names that client's own address, and
    // comes from the server's address.
    let server: SocketAddr = SERVER.parse().unwrap();
    for _ in 0..3 {
        let client = in_netns(&ns.client, || UdpSocket::bind((CLIENT_IP, 0)).unwrap());
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
