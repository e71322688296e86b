//! SNI routing through the real binary: betwixt reads the server name of the client's TLS
//! ClientHello without terminating TLS, picks a backend by it, and forwards every byte
//! untouched. Clients are real rustls clients (and `openssl s_client` when installed); the TLS
//! backend is a rustls server with a self-signed certificate, so a completed handshake proves
//! the passthrough.

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, read_line, Betwixt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(5);
const TLS_NAME: &str = "tls.example";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls TLS server on loopback for `TLS_NAME`: answers each line `x` with `tls:x`.
struct TlsBackend {
    port: u16,
    cert: CertificateDer<'static>,
}

impl TlsBackend {
    fn start() -> TlsBackend {
        let certified = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
        let cert = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                let config = config.clone();
                thread::spawn(move || {
                    tcp.set_read_timeout(Some(LIMIT)).unwrap();
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut line = Vec::new();
                    let mut byte = [0u8];
                    while tls.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
                        line.push(byte[0]);
                    }
                    let _ = tls.write_all(&[b"tls:".as_slice(), &line, b"\n"].concat());
                    let _ = tls.flush();
                });
            }
        });
        TlsBackend { port, cert }
    }
}

/// A rustls client for `name` (an IP address sends no server name), trusting `root`.
fn tls_client(name: &str, root: Option<&CertificateDer<'static>>) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(root) = root {
        roots.add(root.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    rustls::ClientConnection::new(Arc::new(config), server_name).unwrap()
}

/// The client's first flight: its ClientHello, in TLS records.
fn first_flight(client: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut out).unwrap();
    }
    out
}

/// The same handshake bytes cut into records of at most `size` bytes each.
fn refragment(records: &[u8], size: usize) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let length = u16::from_be_bytes([records[at + 3], records[at + 4]]) as usize;
        assert_eq!(records[at], 22, "a handshake record");
        payload.extend_from_slice(&records[at + 5..at + 5 + length]);
        at += 5 + length;
    }
    let mut out = Vec::new();
    for chunk in payload.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// How the client's first bytes go out.
#[derive(Clone, Copy)]
enum Delivery {
    Whole,
    /// One byte per write, with TCP_NODELAY and a pause: one byte per segment.
    BytePerSegment,
    /// In writes of this many bytes, paused.
    Chunks(usize),
}

fn send(stream: &mut TcpStream, bytes: &[u8], delivery: Delivery) {
    stream.set_nodelay(true).unwrap();
    let size = match delivery {
        Delivery::Whole => bytes.len().max(1),
        Delivery::BytePerSegment => 1,
        Delivery::Chunks(n) => n,
    };
    for chunk in bytes.chunks(size) {
        stream.write_all(chunk).unwrap();
        if size < bytes.len() {
            thread::sleep(Duration::from_millis(if size == 1 { 1 } else { 20 }));
        }
    }
}

/// Sends `bytes` to the proxy and returns the name line a `Named` backend answers with;
/// `None` when the proxy closes instead.
fn routed(port: u16, bytes: &[u8], delivery: Delivery) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(LIMIT)).ok()?;
    send(&mut stream, bytes, delivery);
    read_line(&mut stream)
}

fn hello_for(name: &str) -> Vec<u8> {
    first_flight(&mut tls_client(name, None))
}

/// A whole TLS exchange through the proxy: the ClientHello cut into records of `record_size`
/// and sent as `delivery` says, then the rest of the handshake and a line each way.
fn tls_round_trip(
    port: u16,
    root: &CertificateDer<'static>,
    record_size: usize,
    delivery: Delivery,
) -> String {
    let mut client = tls_client(TLS_NAME, Some(root));
    let hello = refragment(&first_flight(&mut client), record_size);
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    send(&mut tcp, &hello, delivery);
    let mut tls = rustls::StreamOwned::new(client, tcp);
    tls.write_all(b"ping\n").unwrap();
    let mut reply = String::new();
    let mut byte = [0u8];
    while tls.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
        reply.push(byte[0] as char);
    }
    reply
}

fn sni_server(name: &str, port: u16, sni: &str, lines: &[String]) -> String {
    let list: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.sni]\n{sni}\n\
         [servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn exact_matching_routes_by_name_and_passes_tls_through() {
    let a = Backend::start("a", Behaviour::Named);
    let b = Backend::start("b", Behaviour::Named);
    let plain = Backend::start("plain", Behaviour::Named);
    let tls = TlsBackend::start();
    let port = free_port();
    let lines = [
        format!("{} sni=a.example", a.line()),
        format!("{} sni=B.Example", b.line()),
        plain.line(),
        format!("127.0.0.1:{} sni={TLS_NAME}", tls.port),
    ];
    // A long read_timeout: the byte-per-segment client below takes a while under load.
    let config = sni_server("s", port, "read_timeout = \"20s\"", &lines);
    let _bx = Betwixt::start(&config, &[], &[port]);

    assert_eq!(routed(port, &hello_for("a.example"), Delivery::Whole).as_deref(), Some("a"));
    assert_eq!(routed(port, &hello_for("b.example"), Delivery::Whole).as_deref(), Some("b"));
    assert_eq!(routed(port, &hello_for("A.EXAMPLE"), Delivery::Whole).as_deref(), Some("a"));
    // No backend for the name: `default` takes the backends without sni=.
    assert_eq!(routed(port, &hello_for("other.example"), Delivery::Whole).as_deref(), Some("plain"));
    // A client without a name matches the backends without sni= (gobetween compares "" to "").
    assert_eq!(routed(port, &hello_for("127.0.0.1"), Delivery::Whole).as_deref(), Some("plain"));

    // The TLS backend terminates: the handshake completing proves the bytes passed untouched,
    // whether the ClientHello came whole, one byte per segment, or cut across records.
    assert_eq!(tls_round_trip(port, &tls.cert, 16 * 1024, Delivery::Whole), "tls:ping");
    assert_eq!(tls_round_trip(port, &tls.cert, 16 * 1024, Delivery::BytePerSegment), "tls:ping");
    assert_eq!(tls_round_trip(port, &tls.cert, 40, Delivery::Chunks(30)), "tls:ping");
    assert_eq!(
        routed(port, &refragment(&hello_for("b.example"), 7), Delivery::Chunks(11)).as_deref(),
        Some("b")
    );
    openssl_completes(port);
}

/// `openssl s_client -servername` reaches the TLS backend through the proxy, when installed.
fn openssl_completes(port: u16) {
    let Ok(child) = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-brief",
            "-ign_eof",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            TLS_NAME,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("openssl not installed: skipped");
        return;
    };
    let mut child = child;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("CONNECTION ESTABLISHED") && text.contains("tls:hello"), "{text}");
}

#[test]
fn regexp_matching_and_unexpected_hostname_strategies() {
    let api = Backend::start("api", Behaviour::Named);
    let www = Backend::start("www", Behaviour::Named);
    let plain = Backend::start("plain", Behaviour::Named);
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let named = [format!("{} sni=^api\\\\.", api.line()), format!("{} sni=www", www.line())];
    let with_plain = [named[0].clone(), named[1].clone(), plain.line()];
    let mut config = sni_server("re", ports[0], "hostname_matching_strategy = \"regexp\"", &with_plain);
    config.push_str(&sni_server("reject", ports[1], "unexpected_hostname_strategy = \"reject\"", &named));
    config.push_str(&sni_server("any", ports[2], "unexpected_hostname_strategy = \"any\"", &named));
    config.push_str(&sni_server("default", ports[3], "unexpected_hostname_strategy = \"default\"", &named));
    let _bx = Betwixt::start(&config, &[], &ports);

    let re = ports[0];
    assert_eq!(routed(re, &hello_for("API.example.org"), Delivery::Whole).as_deref(), Some("api"));
    // Unanchored, as Go's MatchString: "www" anywhere in the name.
    assert_eq!(routed(re, &hello_for("static.www.example"), Delivery::Whole).as_deref(), Some("www"));
    assert_eq!(routed(re, &hello_for("myapi.example"), Delivery::Whole).as_deref(), Some("plain"));
    assert_eq!(routed(re, &hello_for("127.0.0.1"), Delivery::Whole).as_deref(), Some("plain"));

    // Names no backend has: reject closes, any takes every backend, default takes the
    // backends without sni= (none here), and a client without a name is closed by default.
    assert_eq!(routed(ports[1], &hello_for("nobody.example"), Delivery::Whole), None);
    assert_eq!(routed(ports[1], &hello_for("www"), Delivery::Whole).as_deref(), Some("www"));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(routed(ports[2], &hello_for("nobody.example"), Delivery::Whole).unwrap());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["api", "www"]);
    assert_eq!(routed(ports[3], &hello_for("nobody.example"), Delivery::Whole), None);
    assert_eq!(routed(ports[3], &hello_for("127.0.0.1"), Delivery::Whole), None);
}

/// A ClientHello of `size` bytes or more (a padding extension), asking for `name`: larger than
/// one TCP segment, like the post-quantum hellos of current browsers.
fn large_hello(name: &str, padding: usize) -> Vec<u8> {
    let mut extensions = Vec::new();
    let n = name.len() as u16;
    extensions.extend_from_slice(&[0, 0]);
    extensions.extend_from_slice(&(n + 5).to_be_bytes());
    extensions.extend_from_slice(&(n + 3).to_be_bytes());
    extensions.push(0);
    extensions.extend_from_slice(&n.to_be_bytes());
    extensions.extend_from_slice(name.as_bytes());
    extensions.extend_from_slice(&[0, 21]);
    extensions.extend_from_slice(&(padding as u16).to_be_bytes());
    extensions.resize(extensions.len() + padding, 0);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[1; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(message.len() as u16).to_be_bytes());
    record.extend_from_slice(&message);
    record
}

#[test]
fn large_hellos_slow_hellos_and_garbage() {
    let a = Backend::start("a", Behaviour::Named);
    let plain = Backend::start("plain", Behaviour::Named);
    let (port, strict) = (free_port(), free_port());
    let lines = [format!("{} sni=a.example", a.line()), plain.line()];
    let mut config = sni_server("s", port, "read_timeout = \"500ms\"", &lines);
    config.push_str(&sni_server("strict", strict, "read_timeout = \"500ms\"", &lines[..1]));
    let _bx = Betwixt::start(&config, &[], &[port, strict]);

    // 12 KiB: several segments, in one record, then cut into 1 KiB records (gobetween reads
    // one segment's worth and misses the name: its issue #342).
    let large = large_hello("a.example", 12 * 1024);
    assert_eq!(routed(port, &large, Delivery::Chunks(1400)).as_deref(), Some("a"));
    assert_eq!(routed(port, &refragment(&large, 1024), Delivery::Chunks(1400)).as_deref(), Some("a"));

    // A client that never finishes its ClientHello is closed after read_timeout.
    let hello = hello_for("a.example");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(&hello[..hello.len() / 2]).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let started = Instant::now();
    assert!(matches!(stream.read(&mut [0u8; 8]), Ok(0) | Err(_)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(4), "{waited:?}");
    // Nor may a client stretch the wait by sending a byte now and then.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let started = Instant::now();
    for &byte in &hello {
        if stream.write_all(&[byte]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    assert!(matches!(stream.read(&mut [0u8; 8]), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(4));

    // Garbage is a client without a name (as in gobetween): it goes to a backend without sni=
    // when there is one, and is closed when there is none.
    assert_eq!(routed(port, b"GET / HTTP/1.1\r\n\r\n", Delivery::Whole).as_deref(), Some("plain"));
    assert_eq!(routed(strict, b"GET / HTTP/1.1\r\n\r\n", Delivery::Whole), None);
    assert_eq!(routed(strict, &[22, 3, 1, 0, 0], Delivery::Whole), None);
    // The server is still fine.
    assert_eq!(routed(port, &hello_for("a.example"), Delivery::Whole).as_deref(), Some("a"));
}
