//! PROXY protocol, end to end through the real binary: the header betwixt sends to backends
//! (`[proxy_protocol] version = "1"` / `"2"`), checked byte for byte by a backend with its own
//! reading of the header; and the header betwixt accepts from an upstream balancer
//! (`[accept_proxy_protocol]`), whose client address drives access rules and iphash.

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, read_line, run_betwixt, Betwixt, TempDir};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(5);

/// A backend that reads one PROXY header per connection (v1: up to CRLF; v2: the 16-byte
/// fixed part and the length it gives), reports its raw bytes, then echoes the rest.
struct HeaderBackend {
    port: u16,
    headers: mpsc::Receiver<Vec<u8>>,
}

impl HeaderBackend {
    fn start() -> HeaderBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, headers) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let tx = tx.clone();
                thread::spawn(move || {
                    stream.set_read_timeout(Some(LIMIT)).unwrap();
                    let Some(header) = read_header(&mut stream) else { return };
                    if tx.send(header).is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HeaderBackend { port, headers }
    }

    fn next(&self) -> Vec<u8> {
        self.headers.recv_timeout(LIMIT).expect("a PROXY header")
    }
}

fn read_header(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = vec![0u8; 1];
    stream.read_exact(&mut header).ok()?;
    if header[0] == b'P' {
        while !header.ends_with(b"\r\n") && header.len() < 120 {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).ok()?;
            header.push(byte[0]);
        }
    } else {
        header.resize(16, 0);
        stream.read_exact(&mut header[1..]).ok()?;
        let length = u16::from_be_bytes([header[14], header[15]]) as usize;
        let mut rest = vec![0u8; length];
        stream.read_exact(&mut rest).ok()?;
        header.extend_from_slice(&rest);
    }
    Some(header)
}

/// Sends `payload` and expects it echoed back.
fn echoes(stream: &mut TcpStream, payload: &[u8]) -> bool {
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    if stream.write_all(payload).is_err() {
        return false;
    }
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).is_ok() && back == payload
}

fn server(name: &str, bind: &str, extra: &str, lines: &[String]) -> String {
    let list: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[servers.{name}]\nbind = \"{bind}\"\n{extra}\n[servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

/// The v2 header for a TCP connection, written out field by field from the spec.
fn v2_expected(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    bytes.push(0x21); // version 2, PROXY
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes.extend_from_slice(&[0x11, 0, 12]);
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            bytes.extend_from_slice(&[0x21, 0, 36]);
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
        }
        _ => panic!("one family"),
    }
    bytes.extend_from_slice(&source.port().to_be_bytes());
    bytes.extend_from_slice(&destination.port().to_be_bytes());
    bytes
}

fn ipv6_loopback_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn sends_v1_and_v2_headers_byte_exact_for_ipv4_and_ipv6_clients() {
    let backend = HeaderBackend::start();
    let line = format!("127.0.0.1:{}", backend.port);
    let ipv6 = ipv6_loopback_available();
    let mut config = String::new();
    let mut servers = Vec::new();
    for version in ["1", "2"] {
        let mut binds = vec![format!("127.0.0.1:{}", free_port())];
        if ipv6 {
            binds.push(format!("[::1]:{}", free_port()));
        }
        for bind in binds {
            let name = format!("v{version}_{}", servers.len());
            let extra =
                format!("protocol = \"tcp\"\n[servers.{name}.proxy_protocol]\nversion = \"{version}\"");
            config.push_str(&server(&name, &bind, &extra, std::slice::from_ref(&line)));
            servers.push((version, bind.parse::<SocketAddr>().unwrap()));
        }
    }
    let ports: Vec<u16> = servers.iter().map(|(_, a)| a.port()).collect();
    let _bx = Betwixt::start(&config, &[], &ports);
    for (version, listen) in servers {
        let mut client = TcpStream::connect(listen).unwrap();
        let me = client.local_addr().unwrap();
        // The header comes before any client byte; the client's bytes follow untouched.
        assert!(echoes(&mut client, b"after the header"), "v{version} {listen}");
        let header = backend.next();
        let expected = match version {
            "1" => {
                let family = if listen.is_ipv4() { "TCP4" } else { "TCP6" };
                format!("PROXY {family} {} {} {} {}\r\n", me.ip(), listen.ip(), me.port(), listen.port())
                    .into_bytes()
            }
            _ => v2_expected(me, listen),
        };
        assert_eq!(header, expected, "v{version} {listen}: {:?}", String::from_utf8_lossy(&header));
    }
}

fn check(config: &str) -> (bool, String) {
    let dir = TempDir::new("pp-check");
    let path = dir.write("c.toml", config);
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    (status.success(), stderr)
}

#[test]
fn configuration_checks() {
    let line = ["127.0.0.1:9".to_string()];
    // gobetween refuses proxy_protocol unless protocol = "tcp" is written: betwixt warns.
    let (ok, stderr) =
        check(&server("s", "127.0.0.1:1", "[servers.s.proxy_protocol]\nversion = \"1\"", &line));
    assert!(ok && stderr.contains("servers.s.proxy_protocol") && stderr.contains("protocol"), "{stderr}");
    let (ok, stderr) = check(&server(
        "s",
        "127.0.0.1:1",
        "protocol = \"tcp\"\n[servers.s.proxy_protocol]\nversion = \"2\"",
        &line,
    ));
    assert!(ok && !stderr.contains("warning"), "{stderr}");
    for (extra, key) in [
        (
            "protocol = \"tcp\"\n[servers.s.proxy_protocol]\nversion = \"3\"",
            "servers.s.proxy_protocol.version",
        ),
        (
            "protocol = \"tcp\"\n[servers.s.proxy_protocol]\nversion = \"\"",
            "servers.s.proxy_protocol.version",
        ),
        (
            "protocol = \"udp\"\nclient_idle_timeout = \"5s\"\n[servers.s.proxy_protocol]\nversion = \"1\"",
            "servers.s.proxy_protocol",
        ),
        ("[servers.s.accept_proxy_protocol]\nversion = \"v1\"", "servers.s.accept_proxy_protocol.version"),
        (
            "[servers.s.accept_proxy_protocol]\nread_timeout = \"0\"",
            "servers.s.accept_proxy_protocol.read_timeout",
        ),
    ] {
        let (ok, stderr) = check(&server("s", "127.0.0.1:1", extra, &line));
        assert!(!ok && stderr.contains(key), "{extra}: {stderr}");
    }
    let (ok, stderr) = check(&server("s", "127.0.0.1:1", "[servers.s.accept_proxy_protocol]", &line));
    assert!(ok, "{stderr}");
}

/// gobetween's iphash over a static list bound to a specific IPv4 address: FNV-1a 32 of the
/// client's 4 address bytes, modulo the backends sorted by `host:port`.
fn iphash_choice(client: [u8; 4], backends: &[&Backend]) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in client {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let mut sorted: Vec<&&Backend> = backends.iter().collect();
    sorted.sort_by_key(|b| b.line());
    sorted[hash as usize % sorted.len()].name.clone()
}

#[test]
fn accepted_header_is_the_client_for_access_rules_iphash_and_onward_headers() {
    let named: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("b{i}"), Behaviour::Named)).collect();
    let lines: Vec<String> = named.iter().map(Backend::line).collect();
    let (hash_port, access_port, relay_port) = (free_port(), free_port(), free_port());
    let relay_backend = HeaderBackend::start();
    let mut config = server(
        "hash",
        &format!("127.0.0.1:{hash_port}"),
        "balance = \"iphash\"\n[servers.hash.accept_proxy_protocol]\nversion = \"any\"",
        &lines,
    );
    config.push_str(&server(
        "access",
        &format!("127.0.0.1:{access_port}"),
        "[servers.access.accept_proxy_protocol]\n[servers.access.access]\ndefault = \"deny\"\nrules = [\"allow 203.0.113.0/24\"]",
        &lines[..1],
    ));
    config.push_str(&server(
        "relay",
        &format!("127.0.0.1:{relay_port}"),
        "protocol = \"tcp\"\n[servers.relay.accept_proxy_protocol]\nversion = \"2\"\n[servers.relay.proxy_protocol]\nversion = \"1\"",
        &[format!("127.0.0.1:{}", relay_backend.port)],
    ));
    let _bx = Betwixt::start(&config, &[], &[hash_port, access_port, relay_port]);

    let ask = |port: u16, header: &[u8]| -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(LIMIT)).ok()?;
        stream.write_all(header).ok()?;
        read_line(&mut stream)
    };
    let backends: Vec<&Backend> = named.iter().collect();
    let mut differs_from_peer = false;
    for last in 1..=40u8 {
        let ip = [198, 51, 100, last];
        let header = format!("PROXY TCP4 198.51.100.{last} 127.0.0.1 4000 {hash_port}\r\n");
        let expected = iphash_choice(ip, &backends);
        differs_from_peer |= expected != iphash_choice([127, 0, 0, 1], &backends);
        assert_eq!(ask(hash_port, header.as_bytes()), Some(expected), "client 198.51.100.{last}");
    }
    assert!(differs_from_peer, "the test must tell the header's address from the peer's");

    // Access rules: the header's address is allowed, the real peer (127.0.0.1) would not be.
    let allowed = format!("PROXY TCP4 203.0.113.9 127.0.0.1 4000 {access_port}\r\n");
    assert_eq!(ask(access_port, allowed.as_bytes()).as_deref(), Some("b0"));
    let denied = format!("PROXY TCP4 198.51.100.9 127.0.0.1 4000 {access_port}\r\n");
    assert_eq!(ask(access_port, denied.as_bytes()), None);
    // LOCAL (a health check of the upstream balancer): the real address, denied here.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    assert_eq!(ask(access_port, &local), None);

    // Accepted v2, sent on as v1: the backend sees the original client, and the client's
    // bytes that came in the same segment as the header follow it.
    let source: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    let destination: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let mut first = v2_expected(source, destination);
    first.extend_from_slice(b"early bytes");
    let mut client = TcpStream::connect(("127.0.0.1", relay_port)).unwrap();
    client.write_all(&first).unwrap();
    let mut echoed = [0u8; 11];
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"early bytes");
    assert_eq!(relay_backend.next(), b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n");
    // A v1 header where only v2 is accepted is refused.
    let v1 = format!("PROXY TCP4 203.0.113.9 127.0.0.1 4000 {relay_port}\r\nhello");
    let mut client = TcpStream::connect(("127.0.0.1", relay_port)).unwrap();
    client.write_all(v1.as_bytes()).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    assert!(matches!(client.read(&mut [0u8; 8]), Ok(0) | Err(_)));
}

#[test]
fn malformed_header_closes_only_that_connection_and_slow_headers_time_out() {
    let echo = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let config = server(
        "s",
        &format!("127.0.0.1:{port}"),
        "[servers.s.accept_proxy_protocol]\nread_timeout = \"500ms\"",
        &[echo.line()],
    );
    let bx = Betwixt::start(&config, &[], &[port]);
    let mut good = TcpStream::connect(("127.0.0.1", port)).unwrap();
    good.write_all(format!("PROXY TCP4 10.1.2.3 127.0.0.1 1 {port}\r\n").as_bytes()).unwrap();
    assert!(echoes(&mut good, b"before"));

    let sent = |bytes: &[u8]| -> bool {
        let mut bad = TcpStream::connect(("127.0.0.1", port)).unwrap();
        bad.set_read_timeout(Some(LIMIT)).unwrap();
        let _ = bad.write_all(bytes);
        // Closed (end of stream or reset), never proxied.
        matches!(bad.read(&mut [0u8; 16]), Ok(0) | Err(_))
    };
    assert!(sent(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(sent(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"));
    assert!(sent(&[b"\r\n\r\n\0\r\nQUIT\n".as_slice(), &[0x2f, 0x11, 0, 12], &[0; 12]].concat()));
    assert!(sent(&[b'P'; 300]));
    // The good connection is untouched.
    assert!(echoes(&mut good, b"after"));

    // A header that never ends, and one that trickles in slower than read_timeout.
    let started = Instant::now();
    assert!(closed_without_data_after(port, b"PROXY TCP4 ", Duration::from_secs(5)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(4), "{waited:?}");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_nodelay(true).unwrap();
    let started = Instant::now();
    let header = format!("PROXY TCP4 10.1.2.3 127.0.0.1 1 {port}\r\n");
    let mut cut = false;
    for byte in header.bytes() {
        if slow.write_all(&[byte]).is_err() {
            cut = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    slow.set_read_timeout(Some(LIMIT)).unwrap();
    cut |= matches!(slow.read(&mut [0u8; 8]), Ok(0) | Err(_));
    assert!(cut && started.elapsed() < Duration::from_secs(4), "a trickled header outlived read_timeout");
    assert!(echoes(&mut good, b"still"));
    assert!(bx.log_text().contains("ReadProxy"), "{}", bx.log_text());
}

/// `trusted`: only the listed peers' headers name the client. Every peer sends a header
/// claiming an allowed address; a peer outside the list is judged by its own address (loopback
/// lets a client pick any 127.0.0.0/8 source), and the onward header names it too.
#[test]
fn only_trusted_peers_name_the_client() {
    let named = Backend::start("b0", Behaviour::Named);
    let relay_backend = HeaderBackend::start();
    let (access_port, relay_port) = (free_port(), free_port());
    let mut config = server(
        "access",
        &format!("127.0.0.1:{access_port}"),
        "[servers.access.accept_proxy_protocol]\ntrusted = [\"127.0.0.2\", \"10.0.0.0/8\"]\n\
         [servers.access.access]\ndefault = \"deny\"\nrules = [\"allow 203.0.113.0/24\", \"allow 127.0.0.3\"]",
        &[named.line()],
    );
    config.push_str(&server(
        "relay",
        &format!("127.0.0.1:{relay_port}"),
        "[servers.relay.accept_proxy_protocol]\ntrusted = [\"127.0.0.2/32\"]\n[servers.relay.proxy_protocol]\nversion = \"1\"",
        &[format!("127.0.0.1:{}", relay_backend.port)],
    ));
    let bx = Betwixt::start(&config, &[], &[access_port, relay_port]);

    let from = |source: [u8; 4], port: u16, header: &str| -> Option<String> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        socket.bind(&SocketAddr::from((source, 0)).into()).ok()?;
        socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).ok()?;
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(LIMIT)).ok()?;
        stream.write_all(header.as_bytes()).ok()?;
        read_line(&mut stream)
    };
    let claim = format!("PROXY TCP4 203.0.113.9 127.0.0.1 4000 {access_port}\r\n");
    // The trusted balancer's header decides: 203.0.113.9 is allowed.
    assert_eq!(from([127, 0, 0, 2], access_port, &claim).as_deref(), Some("b0"));
    // The same claim from an untrusted peer: 127.0.0.1 itself is judged, and denied.
    assert_eq!(from([127, 0, 0, 1], access_port, &claim), None);
    // An untrusted peer that is allowed on its own address gets in whatever its header says.
    let denied_claim = format!("PROXY TCP4 198.51.100.9 127.0.0.1 4000 {access_port}\r\n");
    assert_eq!(from([127, 0, 0, 3], access_port, &denied_claim).as_deref(), Some("b0"));
    // A peer without a header is still closed: every client must send one.
    assert_eq!(from([127, 0, 0, 3], access_port, "GET / HTTP/1.0\r\n\r\n"), None);

    // The onward header names the header's client from the balancer, the peer otherwise.
    let relayed = |source: [u8; 4]| {
        let header = format!("PROXY TCP4 203.0.113.9 127.0.0.1 4000 {relay_port}\r\nping\n");
        assert_eq!(from(source, relay_port, &header).as_deref(), Some("ping"));
        String::from_utf8(relay_backend.next()).unwrap()
    };
    assert!(relayed([127, 0, 0, 2]).starts_with("PROXY TCP4 203.0.113.9 127.0.0.1 4000 "));
    assert!(relayed([127, 0, 0, 4]).starts_with("PROXY TCP4 127.0.0.4 127.0.0.1 "));
    assert!(bx.log_text().contains("which is not trusted"), "{}", bx.log_text());
}

/// Sends `bytes`, then waits for the proxy to close without sending anything.
fn closed_without_data_after(port: u16, bytes: &[u8], limit: Duration) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(bytes).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    match stream.read(&mut [0u8; 8]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}
