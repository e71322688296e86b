//! A UDP session that ends with a request unanswered (here at `max_responses`, after its
//! client sent the same query twice) leaves its backend socket lingering, so that the
//! backend's late second reply cannot reach another client. Were the socket closed at once,
//! its port would be the next one the kernel gives out, a new session's socket to the same
//! backend would have it, and the late reply, addressed to that port, would be relayed to the
//! new session's client.
//!
//! The test makes that port reuse certain rather than likely: in a network namespace of its
//! own (root needed) the ephemeral port range is two ports, and the test holds the second one
//! itself while the first session ends. The backend is the test's own socket, so it answers
//! exactly when the test says.

mod common;

use common::netns::Netns;
use common::{wait_until, Betwixt};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The namespace's whole ephemeral port range: betwixt's backend sockets take these.
const EPHEMERAL: [u16; 2] = [40000, 40001];
const SERVER: &str = "127.0.0.1:7100";
const BACKEND: &str = "127.0.0.1:7000";

fn socket_at(ns: &Netns, addr: &str) -> UdpSocket {
    let socket = ns.run(|| UdpSocket::bind(addr).unwrap());
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    socket
}

/// The next datagram on `socket` within its read timeout, as text, with its sender.
fn receive(socket: &UdpSocket) -> Option<(String, SocketAddr)> {
    let mut buf = [0u8; 512];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

#[test]
fn a_late_reply_to_an_ended_session_never_reaches_another_client() {
    let Some(ns) = Netns::create_if_root("late") else { return };
    // Written from a thread inside the namespace, the setting is the namespace's own.
    const RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    let host_range = std::fs::read_to_string(RANGE).unwrap();
    ns.run(|| std::fs::write(RANGE, format!("{} {}", EPHEMERAL[0], EPHEMERAL[1]))).unwrap();
    let range = ns.run(|| std::fs::read_to_string(RANGE)).unwrap();
    assert_eq!(range.split_whitespace().collect::<Vec<_>>(), ["40000", "40001"]);
    assert_eq!(std::fs::read_to_string(RANGE).unwrap(), host_range, "the host's range changed");
    let backend = socket_at(&ns, BACKEND);
    let config = format!(
        "[runtime]\nshards = 1\n[servers.u]\nbind = \"{SERVER}\"\nprotocol = \"udp\"\n\
         client_idle_timeout = \"5s\"\n[servers.u.udp]\nmax_responses = 1\n\
         [servers.u.discovery]\nkind = \"static\"\nstatic_list = [\"{BACKEND}\"]\n"
    );
    let bx = ns.run(|| Betwixt::start(&config, &[], &[7100]));
    let server: SocketAddr = SERVER.parse().unwrap();
    let (x, y) = (socket_at(&ns, "127.0.0.1:7201"), socket_at(&ns, "127.0.0.1:7202"));

    // Client x asks, and asks again before any answer: both reach the backend through x's
    // session, from one socket.
    x.send_to(b"x", server).unwrap();
    let (_, first) = receive(&backend).expect("x's query reaches the backend");
    x.send_to(b"x", server).unwrap();
    let (_, again) = receive(&backend).expect("x's second query reaches the backend");
    assert_eq!(first, again, "one session, one socket");
    assert!(EPHEMERAL.contains(&first.port()), "{first} is not from the namespace's range");
    let other = EPHEMERAL.into_iter().find(|&p| p != first.port()).unwrap();
    let holder = socket_at(&ns, &format!("127.0.0.1:{other}"));

    // One answer ends x's session (max_responses = 1); the second is still to come.
    backend.send_to(b"answer for x", first).unwrap();
    assert_eq!(receive(&x).map(|(text, _)| text).as_deref(), Some("answer for x"));

    // Client y's session needs a socket. The only port the kernel could give it is the
    // first session's, and betwixt still holds that one: y's query is dropped.
    y.send_to(b"y", server).unwrap();
    let early = receive(&backend);
    // The backend's late second answer to x goes where x's query came from.
    backend.send_to(b"late answer for x", first).unwrap();
    if let Some((_, from)) = early {
        // Had the port been given to y's session, the late answer would now reach y.
        let leaked = receive(&y).map(|(text, _)| text);
        panic!("y's session was given {from}, the ended session's port; y then got {leaked:?}");
    }
    assert_eq!(receive(&y), None, "y got a reply to a query that was dropped");

    // With the other port free, y's retry gets a session on it; y gets its own answer only.
    drop(holder);
    y.send_to(b"y", server).unwrap();
    let (text, from) = receive(&backend).expect("y's retry reaches the backend");
    assert_eq!((text.as_str(), from.port()), ("y", other), "y's session is on the free port");
    backend.send_to(b"answer for y", from).unwrap();
    assert_eq!(receive(&y), Some(("answer for y".to_string(), server)));
    assert_eq!(receive(&y), None, "nothing else reaches y");

    // The lingering socket closes in time (2 s): its port is free again.
    let first_free = wait_until(Duration::from_secs(5), || {
        ns.run(|| UdpSocket::bind(("127.0.0.1", first.port())).is_ok())
    });
    assert!(first_free, "the ended session's socket still holds {first}; log:\n{}", bx.log_text());
    drop(bx);
}
