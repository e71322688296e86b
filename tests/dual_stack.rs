//! `bind = "0.0.0.0:PORT"` takes IPv6 clients too, as gobetween's does: Go's `net.Listen` and
//! `net.ListenUDP` serve an IPv4 wildcard on a dual-stack IPv6 socket wherever the host
//! supports IPv4-mapped addresses. A wildcard bind cannot be tried on the host's loopback
//! alone, so the test runs betwixt, its backends and its clients in a network namespace of its
//! own (root only; it says "skipped" otherwise), with fixed ports: the namespace is empty.

mod common;

use common::backends::{udp_echo_sender, Backend, Behaviour};
use common::netns::Netns;
use common::{http_get, read_line, Betwixt, TempDir};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

const API: u16 = 3000;
const WEB: u16 = 3001;
const DNS: u16 = 3002;

/// The line the named TCP backend answers, asked at `addr`.
fn name_at(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    read_line(&mut stream)
}

/// The UDP backend's answer (`seen ADDRESS`) to a datagram sent to `addr` from `from`.
fn udp_answer(from: &str, addr: SocketAddr) -> Option<String> {
    let socket = UdpSocket::bind(from).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = [0u8; 256];
    for _ in 0..5 {
        socket.send_to(b"hello", addr).ok()?;
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

/// The status line of `GET /ping` at `addr`.
fn ping(addr: SocketAddr) -> Option<String> {
    http_get(addr, "/ping").ok()?.lines().next().map(str::to_string)
}

#[test]
fn an_ipv4_wildcard_bind_serves_ipv6_clients_too() {
    let Some(ns) = Netns::create_if_root("ds") else { return };
    let dir = TempDir::new("dual");
    let log = dir.0.join("access.log");
    let (backend, bx) = ns.run(|| {
        let backend = Backend::start("one", Behaviour::Named);
        udp_echo_sender(UdpSocket::bind("127.0.0.1:5353").unwrap());
        let config = format!(
            "[api]\nenabled = true\nbind = \"0.0.0.0:{API}\"\n\
             [access_log]\nenabled = true\noutput = \"{}\"\n\
             [servers.web]\nbind = \"0.0.0.0:{WEB}\"\n\
             [servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n\
             [servers.dns]\nbind = \"0.0.0.0:{DNS}\"\nprotocol = \"udp\"\n\
             [servers.dns.udp]\nmax_responses = 1\n\
             [servers.dns.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:5353\"]\n",
            log.display(),
            backend.line()
        );
        (backend, Betwixt::start(&config, &[], &[API, WEB]))
    });

    ns.run(|| {
        for host in ["127.0.0.1", "[::1]"] {
            let at = |port: u16| format!("{host}:{port}").parse::<SocketAddr>().unwrap();
            assert_eq!(name_at(at(WEB)).as_deref(), Some("one"), "TCP server from {host}");
            assert_eq!(ping(at(API)).as_deref(), Some("HTTP/1.1 200 OK"), "API from {host}");
            let from = if host == "[::1]" { "[::1]:0" } else { "127.0.0.1:0" };
            let answer = udp_answer(from, at(DNS));
            assert!(
                answer.as_deref().is_some_and(|a| a.starts_with("seen 127.0.0.1:")),
                "UDP from {host}: {answer:?}"
            );
        }
    });

    // An IPv4 client of the dual-stack listener is logged by its IPv4 address, as gobetween
    // prints it, not as `::ffff:127.0.0.1`.
    let found = common::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("server=web client=[::1]:"))
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(found && text.contains("server=web client=127.0.0.1:"), "{text}");
    assert!(!text.contains("::ffff:"), "{text}");
    drop((bx, backend));
}
