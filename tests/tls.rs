//! TLS through the real binary: `protocol = "tls"` terminates clients' TLS (rustls clients and
//! `openssl s_client`), with versions, cipher suites, certificate files that reload under live
//! connections; `[backends_tls]` speaks TLS to real rustls backends signed by a test CA.

mod api_client;
mod common;

use api_client::{u64_at, Client};
use common::backends::{one_connection_backend, pattern_byte, Backend, Behaviour};
use common::{free_port, run_betwixt, wait_until, Betwixt, TempDir};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sonic_rs::JsonValueTrait;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(10);

/// A test CA that signs leaf certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, as PEM, and the certificate's DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Not rcgen's default name, which the leaves also get: OpenSSL would take a leaf whose
        // issuer equals its subject for self-signed.
        params.distinguished_name.push(DnType::CommonName, "betwixt test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).unwrap();
        roots
    }
}

impl Leaf {
    /// Writes `NAME.crt` and `NAME.key` into `dir`.
    fn write(&self, dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
        (dir.write(&format!("{name}.crt"), &self.cert_pem), dir.write(&format!("{name}.key"), &self.key_pem))
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

fn provider_with(suites: Option<Vec<rustls::SupportedCipherSuite>>) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    Arc::new(provider)
}

/// A rustls client for `localhost` trusting `ca`, limited to `versions` and `suites`.
fn client_config(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider_with(suites))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth(),
    )
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake; `Err` with rustls' reason when it fails.
fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> Result<TlsClient, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

/// Sends `data` in chunks and reads each chunk's echo back: the bytes must come back exactly.
fn echo_round(tls: &mut TlsClient, data: &[u8]) {
    echo_in_chunks(tls, data, 16 * 1024);
}

/// `echo_round` with chunks of `size` bytes, each written whole before its echo is read.
fn echo_in_chunks(tls: &mut TlsClient, data: &[u8], size: usize) {
    for chunk in data.chunks(size) {
        tls.write_all(chunk).unwrap();
        tls.flush().unwrap();
        let mut back = vec![0u8; chunk.len()];
        tls.read_exact(&mut back).unwrap();
        assert!(back == chunk, "echo differs");
    }
}

/// A tls server `s` on `port` in front of `backends`, with `tls_extra` in its `[tls]` section.
fn tls_config(port: u16, cert: &(PathBuf, PathBuf), tls_extra: &str, backends: &[String]) -> String {
    let list: Vec<String> = backends.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\nprotocol = \"tls\"\n\
         [servers.s.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n{tls_extra}\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        cert.0.display(),
        cert.1.display(),
        list.join(", ")
    )
}

/// A server `s` for `localhost` (a certificate from a fresh CA) in front of an echo backend,
/// with `tls_extra` in its `[tls]` section and `extra` after the configuration.
struct EchoServer {
    ca: Ca,
    dir: TempDir,
    leaf: Leaf,
    files: (PathBuf, PathBuf),
    echo: Backend,
    port: u16,
    bx: Betwixt,
}

impl EchoServer {
    fn start(tag: &str, tls_extra: &str, extra: &str) -> EchoServer {
        let ca = Ca::new();
        let dir = TempDir::new(tag);
        let leaf = ca.leaf("localhost");
        let files = leaf.write(&dir, "server");
        let echo = Backend::start("echo", Behaviour::Echo);
        let port = free_port();
        let bx = Betwixt::start(&(tls_config(port, &files, tls_extra, &[echo.line()]) + extra), &[], &[port]);
        EchoServer { ca, dir, leaf, files, echo, port, bx }
    }

    fn tls13(&self) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca, &[&rustls::version::TLS13], None)
    }
}

#[test]
fn tls_server_echoes_byte_exact_and_passes_close_notify() {
    let server = EchoServer::start("tls-echo", "", "");
    let (ca, port) = (&server.ca, server.port);

    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    for versions in [&all[..1], &all[1..]] {
        let mut tls = connect(port, client_config(ca, versions, None)).unwrap();
        let data: Vec<u8> = (0..300_007).map(pattern_byte).collect();
        echo_round(&mut tls, &data);
        // The client's close_notify reaches the echo backend as a FIN; its FIN comes back as
        // betwixt's close_notify: a clean end of stream, not an error.
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let mut rest = Vec::new();
        assert_eq!(tls.read_to_end(&mut rest).map_err(|e| e.to_string()), Ok(0));
    }
    // A client that ends with a FIN and no close_notify (many do) half-closes all the same:
    // its bytes come back, then betwixt's close_notify.
    let mut tls = connect(port, server.tls13()).unwrap();
    tls.write_all(b"no close_notify").unwrap();
    tls.flush().unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    assert_eq!(tls.read_to_end(&mut back).map_err(|e| e.to_string()), Ok(15));
    assert_eq!(back, b"no close_notify");
    openssl_echo(port, &server.dir.write("ca.crt", &ca.cert.pem()));
}

/// `half_close = false` on a tls server: a backend's end of stream reaches the client as
/// `close_notify` and a FIN after its last bytes, then both connections are closed while the
/// client still holds its socket; the client's later bytes never reach the backend.
#[test]
fn half_close_off_ends_a_tls_connection_at_the_backends_end_of_stream() {
    let (backend_port, backend) = one_connection_backend(|mut socket| {
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        socket.write_all(b"banner and goodbye").unwrap();
        socket.shutdown(std::net::Shutdown::Write).unwrap();
        let mut after = Vec::new();
        let _ = socket.read_to_end(&mut after);
        after
    });
    let ca = Ca::new();
    let dir = TempDir::new("tls-half-close");
    let files = ca.leaf("localhost").write(&dir, "server");
    let (port, api) = (free_port(), free_port());
    let conf = tls_config(port, &files, "", &[format!("127.0.0.1:{backend_port}")])
        .replace("protocol = \"tls\"\n", "protocol = \"tls\"\nhalf_close = false\n")
        + &format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n");
    let _bx = Betwixt::start(&conf, &[], &[port, api]);
    let mut tls = connect(port, client_config(&ca, &[&rustls::version::TLS13], None)).unwrap();
    let mut got = Vec::new();
    // A clean end: close_notify came before the FIN.
    assert_eq!(tls.read_to_end(&mut got).map_err(|e| e.to_string()), Ok(18));
    assert_eq!(got, b"banner and goodbye");
    let api = Client::http(api);
    let closed = wait_until(LIMIT, || u64_at(&api.get_json("/servers/s/stats"), "active_connections") == 0);
    assert!(closed, "the connection is still open after the backend's end of stream");
    let _ = tls.write_all(b"after");
    let _ = tls.flush();
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    assert_eq!(backend.join().unwrap(), b"", "bytes reached the backend after its FIN");
}

/// Bulk both ways: the client writes 128 KiB at a time (eight records in one go) before it
/// reads the echo back, so betwixt reads ahead of rustls, reads several records per buffer,
/// grows its buffers and sends several records per gathered write. Every byte must come back
/// in order, and a clean close must still follow.
#[test]
fn bulk_transfer_through_a_tls_server_is_byte_exact() {
    let server = EchoServer::start("tls-bulk", "", "");
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    for versions in [&all[..1], &all[1..]] {
        let mut tls = connect(server.port, client_config(&server.ca, versions, None)).unwrap();
        let data: Vec<u8> = (0..8 * 1024 * 1024 + 13).map(pattern_byte).collect();
        echo_in_chunks(&mut tls, &data, 128 * 1024);
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let mut rest = Vec::new();
        assert_eq!(tls.read_to_end(&mut rest).map_err(|e| e.to_string()), Ok(0));
    }
}

/// `openssl s_client` completes a handshake trusting the CA in `ca_path` and gets its line echoed.
fn openssl_echo(port: u16, ca_path: &std::path::Path) {
    let Ok(mut child) = std::process::Command::new("openssl")
        .args(["s_client", "-brief", "-ign_eof", "-verify_return_error", "-CAfile"])
        .arg(ca_path)
        .args(["-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("openssl not installed: skipped");
        return;
    };
    child.stdin.as_mut().unwrap().write_all(b"hello through tls\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("hello through tls") {
                break;
            }
        }
        seen
    });
    let deadline = Instant::now() + LIMIT;
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().unwrap();
    assert!(
        String::from_utf8_lossy(&seen).contains("hello through tls"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

/// Runs `openssl` with `args` in `dir`: whether it ran and succeeded.
fn openssl(dir: &TempDir, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Pairs Go's `tls.LoadX509KeyPair` loads and so gobetween serves: an X.509 v1 certificate
/// (what `openssl x509 -req` makes without an extensions file) is served; keys betwixt cannot
/// sign with are refused with the key's kind named, not as an unreadable key.
#[test]
fn the_pairs_go_serves_are_served_or_refused_by_name() {
    let dir = TempDir::new("tls-go-pairs");
    if !openssl(&dir, &["version"]) {
        eprintln!("openssl not installed: skipped");
        return;
    }
    let request = ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"];
    assert!(openssl(&dir, &[&request[..], &["-keyout", "v1.key", "-out", "v1.csr"]].concat()));
    assert!(openssl(
        &dir,
        &["x509", "-req", "-in", "v1.csr", "-signkey", "v1.key", "-days", "2", "-out", "v1.crt"]
    ));
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.0.join("v1.crt"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"));
    let echo = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let files = (dir.0.join("v1.crt"), dir.0.join("v1.key"));
    let _bx = Betwixt::start(&tls_config(port, &files, "", &[echo.line()]), &[], &[port]);
    openssl_echo(port, &files.0);

    assert!(openssl(&dir, &["ecparam", "-name", "secp521r1", "-out", "p521.params"]));
    for (key, kind) in [("ec:p521.params", "a P-521 key"), ("rsa:1024", "a 1024-bit RSA key")] {
        let args = ["req", "-x509", "-newkey", key, "-nodes", "-subj", "/CN=localhost", "-days", "2"];
        assert!(openssl(&dir, &[&args[..], &["-keyout", "k.key", "-out", "k.crt"]].concat()), "{key}");
        let files = (dir.0.join("k.crt"), dir.0.join("k.key"));
        let path = dir.write("k.toml", &tls_config(free_port(), &files, "", &["127.0.0.1:1".into()]));
        let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
        assert!(!status.success(), "{key}");
        assert!(
            stderr.contains("servers.s.tls.key_path")
                && stderr.contains(&format!("not supported yet: {kind}")),
            "{key}: {stderr}"
        );
    }
}

/// gobetween's `session_tickets = false` is Go's `SessionTicketsDisabled`: no resumption, by
/// ticket or (Go's server keeps no session cache) by session ID. With `true`, clients resume.
#[test]
fn sessions_resume_only_with_session_tickets() {
    for (tickets, resumes) in [("", false), ("session_tickets = true", true)] {
        let server = EchoServer::start("tls-resume", tickets, "");
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            // One configuration: its session cache carries what the first handshake left.
            let config = client_config(&server.ca, &[version], None);
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let mut tls = connect(server.port, config.clone()).unwrap();
                // TLS 1.3 tickets arrive after the handshake: the echo waits for them.
                echo_round(&mut tls, b"resume?");
                kinds.push(tls.conn.handshake_kind());
            }
            let again = if resumes { rustls::HandshakeKind::Resumed } else { rustls::HandshakeKind::Full };
            assert_eq!(kinds, [Some(rustls::HandshakeKind::Full), Some(again)], "{tickets:?} {version:?}");
        }
    }
}

#[test]
fn versions_and_ciphers_are_enforced() {
    let ca = Ca::new();
    let dir = TempDir::new("tls-versions");
    let files = ca.leaf("localhost").write(&dir, "server");
    let echo = Backend::start("echo", Behaviour::Echo);
    let (only13, only12) = (free_port(), free_port());
    // The second server is a tcp server with `[tls]`: it terminates TLS as well (gobetween's rule).
    let config = tls_config(only13, &files, "min_version = \"tls1.3\"", &[echo.line()])
        + &tls_config(
            only12,
            &files,
            "max_version = \"tls1.2\"\nciphers = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]",
            &[echo.line()],
        )
        .replace("servers.s", "servers.t")
        .replace("protocol = \"tls\"", "protocol = \"tcp\"");
    let _bx = Betwixt::start(&config, &[], &[only13, only12]);

    let tls12 = client_config(&ca, &[&rustls::version::TLS12], None);
    let tls13 = client_config(&ca, &[&rustls::version::TLS13], None);
    let e = connect(only13, tls12.clone())
        .map(drop)
        .expect_err("a TLS 1.2 client must fail against min_version tls1.3");
    assert!(e.contains("ProtocolVersion") || e.contains("protocol version"), "{e}");
    let mut ok = connect(only13, tls13.clone()).unwrap();
    assert_eq!(ok.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    echo_round(&mut ok, b"thirteen");

    assert!(connect(only12, tls13).is_err(), "a TLS 1.3 client must fail against max_version tls1.2");
    let mut ok = connect(only12, tls12).unwrap();
    assert_eq!(ok.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        ok.conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
    );
    echo_round(&mut ok, b"twelve");
    let other = vec![rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
    let e = connect(only12, client_config(&ca, &[&rustls::version::TLS12], Some(other))).err();
    assert!(e.is_some(), "a client without the allowed suite must fail");
}

#[test]
fn bad_tls_settings_are_clear_start_up_errors() {
    let dir = TempDir::new("tls-bad");
    let missing = (dir.0.join("missing.crt"), dir.0.join("missing.key"));
    let config = tls_config(free_port(), &missing, "", &["127.0.0.1:1".into()]);
    let path = dir.write("bad.toml", &config);
    let (status, _, stderr) = run_betwixt(&["-c", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("servers.s.tls.cert_path") && stderr.contains("missing.crt"), "{stderr}");

    let ca = Ca::new();
    let files = ca.leaf("localhost").write(&dir, "server");
    for (extra, key, words) in [
        ("max_version = \"tls1.1\"", "servers.s.tls.max_version", "only tls1.2 and tls1.3"),
        (
            "min_version = \"tls1.3\"\nmax_version = \"tls1.2\"",
            "servers.s.tls.min_version",
            "above max_version",
        ),
        (
            "ciphers = [\"TLS_RSA_WITH_3DES_EDE_CBC_SHA\"]",
            "servers.s.tls.ciphers",
            "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        ),
        ("ciphers = [\"TLS_BOGUS\"]", "servers.s.tls.ciphers", "unknown cipher suite"),
    ] {
        let path = dir.write("bad.toml", &tls_config(free_port(), &files, extra, &["127.0.0.1:1".into()]));
        let (status, _, stderr) = run_betwixt(&["-c", path.to_str().unwrap()]);
        assert!(!status.success(), "{extra}");
        assert!(stderr.contains(key) && stderr.contains(words), "{extra}: {stderr}");
    }
    // gobetween's reference configuration has `min_version = "tls1"`: read as tls1.2, with a
    // warning.
    let path = dir.write(
        "old.toml",
        &tls_config(free_port(), &files, "min_version = \"tls1\"", &["127.0.0.1:1".into()]),
    );
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("servers.s.tls.min_version") && stderr.contains("read as \"tls1.2\""),
        "{stderr}"
    );
}

/// `betwixt check` reads the files a start reads: a missing certificate, key, backends' CA or
/// API certificate fails it with the start's own message, and it prints no configuration.
#[test]
fn check_fails_where_the_start_would_on_the_files_it_reads() {
    let dir = TempDir::new("tls-check");
    let good = Ca::new().leaf("localhost").write(&dir, "server");
    let missing = dir.0.join("missing.pem");
    let server = |files: &(PathBuf, PathBuf)| tls_config(free_port(), files, "", &["127.0.0.1:1".into()]);
    let cases = [
        ("servers.s.tls.cert_path", server(&(missing.clone(), good.1.clone()))),
        ("servers.s.tls.key_path", server(&(good.0.clone(), missing.clone()))),
        (
            "servers.s.backends_tls.root_ca_cert_path",
            server(&good)
                + &format!("[servers.s.backends_tls]\nroot_ca_cert_path = \"{}\"\n", missing.display()),
        ),
        (
            "api.tls",
            format!(
                "[api]\nenabled = true\nbind = \"127.0.0.1:{}\"\n[api.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
                free_port(),
                missing.display(),
                good.1.display()
            ) + &server(&good),
        ),
    ];
    for (key, config) in cases {
        let path = dir.write("c.toml", &config);
        let (status, _, stderr) = run_betwixt(&["-c", path.to_str().unwrap()]);
        assert!(!status.success(), "{key}: started:\n{stderr}");
        let said = stderr.lines().find(|l| l.starts_with("betwixt: ")).unwrap_or_else(|| panic!("{stderr}"));
        assert!(said.contains(key) && said.contains("missing.pem"), "{key}: {said}");
        let (status, stdout, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
        assert!(!status.success(), "{key}: check passed:\n{stdout}");
        assert!(stderr.lines().any(|l| l == said), "{key}: check said\n{stderr}\nstart said\n{said}");
        assert!(stdout.is_empty(), "{key}: {stdout}");
    }
    let path = dir.write("c.toml", &server(&good));
    let (status, stdout, stderr) = run_betwixt(&["check", "--strict", path.to_str().unwrap()]);
    assert!(status.success() && stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("[servers.s.tls]"), "{stdout}");
}

#[test]
fn bad_cert_path_over_the_api_is_409() {
    let api = free_port();
    let _bx = Betwixt::start(&format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n"), &[], &[api]);
    let body = format!(
        "{{\"bind\": \"127.0.0.1:{}\", \"protocol\": \"tls\", \"tls\": {{\"cert_path\": \"/nonexistent/a.crt\", \
         \"key_path\": \"/nonexistent/a.key\"}}, \"discovery\": {{\"kind\": \"static\", \"static_list\": [\"127.0.0.1:1\"]}}}}",
        free_port()
    );
    let reply = Client::http(api).send("POST", "/servers/x", &body);
    assert_eq!(reply.status, 409, "{}", reply.message());
    assert!(reply.message().contains("/nonexistent/a.crt"), "{}", reply.message());
}

#[test]
fn certificate_reload_keeps_live_connections() {
    let server = EchoServer::start("tls-reload", "", "");
    let (ca, port, files, first, bx) = (&server.ca, server.port, &server.files, &server.leaf, &server.bx);
    let config = server.tls13();
    let served = |tls: &TlsClient| tls.conn.peer_certificates().unwrap()[0].clone();

    let mut live = connect(port, config.clone()).unwrap();
    assert_eq!(served(&live), first.der);
    echo_round(&mut live, b"before");

    let second = ca.leaf("localhost");
    // The key first, then the certificate: either order must end with the new pair served.
    std::fs::write(&files.1, &second.key_pem).unwrap();
    std::fs::write(&files.0, &second.cert_pem).unwrap();
    let renewed =
        wait_until(LIMIT, || connect(port, config.clone()).is_ok_and(|tls| served(&tls) == second.der));
    assert!(renewed, "new handshakes never saw the new certificate; log:\n{}", bx.log_text());
    // The connection made before the reload goes on.
    echo_round(&mut live, b"after the reload");
    assert!(bx.log_text().contains("certificate reloaded"), "{}", bx.log_text());
}

/// A rustls TLS echo server for `leaf`; when `client_ca` is given it requires a client
/// certificate signed by it. Counts completed handshakes.
struct TlsBackend {
    port: u16,
    handshakes: Arc<AtomicUsize>,
}

impl TlsBackend {
    fn start(leaf: &Leaf, client_ca: Option<&Ca>) -> TlsBackend {
        let builder = rustls::ServerConfig::builder_with_provider(provider_with(None))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.roots()),
                    provider_with(None),
                )
                .build()
                .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(builder.with_single_cert(vec![leaf.der.clone()], leaf.key()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(mut tcp) = tcp else { return };
                let (config, counted) = (config.clone(), counted.clone());
                thread::spawn(move || {
                    tcp.set_read_timeout(Some(LIMIT)).unwrap();
                    let mut conn = rustls::ServerConnection::new(config).unwrap();
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut tcp).is_err() {
                            return;
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tls.read(&mut buf) {
                        if n == 0 || tls.write_all(&buf[..n]).and_then(|_| tls.flush()).is_err() {
                            break;
                        }
                    }
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsBackend { port, handshakes }
    }
}

/// Sends a line over plain TCP and returns what comes back before the connection ends.
fn plain_exchange(port: u16, line: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = tcp.write_all(line);
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let mut back = Vec::new();
    let _ = tcp.read_to_end(&mut back);
    back
}

#[test]
fn backends_tls_verifies_presents_client_certificates_and_counts_failures() {
    let ca = Ca::new();
    let dir = TempDir::new("tls-backends");
    let ca_path = dir.write("ca.crt", &ca.cert.pem());
    let client = ca.leaf("betwixt.client").write(&dir, "client");
    // Requires a client certificate from the CA; its own is for backend.example.
    let good = TlsBackend::start(&ca.leaf("backend.example"), Some(&ca));
    // Its certificate is for another name than the backend line gives.
    let wrong_name = TlsBackend::start(&ca.leaf("other.example"), None);
    let (api, metrics) = (free_port(), free_port());
    let (verified, insecure, failing) = (free_port(), free_port(), free_port());
    let section = |name: &str, port: u16, line: String, extra: &str| {
        format!(
            "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n\
             [servers.{name}.backends_tls]\n{extra}\n\
             [servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [\"{line}\"]\n"
        )
    };
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n"
    )
        + &section(
            "verified",
            verified,
            format!("127.0.0.1:{} sni=backend.example", good.port),
            &format!(
                "root_ca_cert_path = \"{}\"\ncert_path = \"{}\"\nkey_path = \"{}\"",
                ca_path.display(),
                client.0.display(),
                client.1.display()
            ),
        )
        + &section("insecure", insecure, format!("localhost:{}", wrong_name.port), "ignore_verify = true")
        + &section(
            "failing",
            failing,
            format!("localhost:{}", wrong_name.port),
            &format!("root_ca_cert_path = \"{}\"", ca_path.display()),
        );
    let bx = Betwixt::start(&config, &[], &[api, verified, insecure, failing]);
    let client = Client::http(api);
    // Host names resolve on the control thread after the server listens.
    for name in ["verified", "insecure", "failing"] {
        let path = format!("/servers/{name}/stats");
        assert!(wait_until(LIMIT, || !client.get_json(&path)["backends"][0]["stats"].is_null()), "{name}");
    }

    // Verified for the backend's sni=, with betwixt's client certificate accepted.
    assert_eq!(plain_exchange(verified, b"over verified tls"), b"over verified tls", "{}", bx.log_text());
    assert_eq!(good.handshakes.load(Ordering::SeqCst), 1);
    // ignore_verify takes the certificate for another name.
    assert_eq!(plain_exchange(insecure, b"unverified"), b"unverified");

    // Verification for "localhost" fails: refused like a dead backend, counted, logged.
    let before = wrong_name.handshakes.load(Ordering::SeqCst);
    assert_eq!(plain_exchange(failing, b"never delivered"), b"");
    assert_eq!(wrong_name.handshakes.load(Ordering::SeqCst), before);
    let counted = wait_until(LIMIT, || {
        u64_at(&client.get_json("/servers/failing/stats")["backends"][0]["stats"], "refused_connections") == 1
    });
    assert!(counted, "{}", client.get_json("/servers/failing/stats"));
    let text = Client::http(metrics).get("/metrics").body;
    let tls_errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("betwixt_backend_connect_errors_total{") && l.contains("kind=\"tls\""))
        .filter(|l| l.contains("server=\"failing\""))
        .collect();
    assert!(tls_errors.len() == 1 && tls_errors[0].ends_with(" 1"), "{text}");
    assert!(bx.log_text().contains("TLS handshake"), "{}", bx.log_text());
}

/// A self-signed certificate that says it is a CA (as `openssl req -x509` makes it), for
/// `name`, valid until `not_after` (year).
fn self_signed_ca_leaf(name: &str, not_after: i32) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
}

/// What Go's TLS client takes, betwixt's takes: a backend's own certificate listed in
/// `root_ca_cert_path` is trusted although it is a CA certificate (Go's `x509.Verify` takes a leaf
/// found among the roots), still only for its name and while valid; and with `ignore_verify`, a
/// backend with an X.509 v1 certificate and a 1024-bit RSA key (served by `openssl s_server`).
#[test]
fn backends_tls_takes_the_certificates_go_takes() {
    let dir = TempDir::new("tls-backends-go");
    let own = self_signed_ca_leaf("backend.example", 2999);
    let expired = self_signed_ca_leaf("backend.example", 2021);
    let (own_backend, expired_backend) = (TlsBackend::start(&own, None), TlsBackend::start(&expired, None));
    let roots = dir.write("roots.crt", &format!("{}{}", own.cert_pem, expired.cert_pem));
    let (api, listed, wrong_name, stale) = (free_port(), free_port(), free_port(), free_port());
    let section = |name: &str, port: u16, line: String| {
        format!(
            "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.backends_tls]\nroot_ca_cert_path = \"{}\"\n\
             [servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [\"{line}\"]\n",
            roots.display()
        )
    };
    let config = format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n")
        + &section("listed", listed, format!("127.0.0.1:{} sni=backend.example", own_backend.port))
        + &section("wrong_name", wrong_name, format!("127.0.0.1:{} sni=other.example", own_backend.port))
        + &section("stale", stale, format!("127.0.0.1:{} sni=backend.example", expired_backend.port));
    let bx = Betwixt::start(&config, &[], &[api, listed, wrong_name, stale]);
    assert_eq!(plain_exchange(listed, b"to its own root"), b"to its own root", "{}", bx.log_text());
    assert_eq!(own_backend.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(plain_exchange(wrong_name, b"never"), b"");
    assert_eq!(plain_exchange(stale, b"never"), b"");
    assert_eq!(
        (own_backend.handshakes.load(Ordering::SeqCst), expired_backend.handshakes.load(Ordering::SeqCst)),
        (1, 0)
    );
    let log = bx.log_text();
    assert!(log.contains("NotValidForName") && log.contains("Expired"), "{log}");

    // ignore_verify: an X.509 v1 certificate with a 1024-bit RSA key.
    let [key, csr, cert] = ["old.key", "old.csr", "old.crt"].map(|name| dir.write(name, ""));
    let openssl = |args: &[&str], paths: &[(&str, &PathBuf)]| {
        let mut command = std::process::Command::new("openssl");
        command.args(args).stderr(std::process::Stdio::null());
        for (flag, path) in paths {
            command.arg(flag).arg(path);
        }
        command.status()
    };
    let made = openssl(
        &["req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=old.example"],
        &[("-keyout", &key), ("-out", &csr)],
    );
    let Ok(made) = made else {
        eprintln!("openssl not installed: the v1 certificate case skipped");
        return;
    };
    assert!(made.success());
    let signed =
        openssl(&["x509", "-req", "-days", "2"], &[("-in", &csr), ("-signkey", &key), ("-out", &cert)]);
    assert!(signed.unwrap().success());
    let old_port = free_port();
    let mut old = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-www",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-accept",
            &format!("127.0.0.1:{old_port}"),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(LIMIT, || TcpStream::connect(("127.0.0.1", old_port)).is_ok()));
    let (api, insecure) = (free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[servers.insecure]\nbind = \"127.0.0.1:{insecure}\"\n\
         [servers.insecure.backends_tls]\nignore_verify = true\n\
         [servers.insecure.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{old_port}\"]\n"
    );
    let bx = Betwixt::start(&config, &[], &[api, insecure]);
    let answer = plain_exchange(insecure, b"GET / HTTP/1.0\r\n\r\n");
    let _ = old.kill();
    let _ = old.wait();
    assert!(
        answer.starts_with(b"HTTP/1.0 200 ok"),
        "{:?}\n{}",
        String::from_utf8_lossy(&answer),
        bx.log_text()
    );
}

/// Without `root_ca_cert_path` the backend's certificate must chain to the system's CAs, found
/// as Go finds them: `SSL_CERT_FILE` replaces the bundle files, `SSL_CERT_DIR` (a `:` list) the
/// certificate directories, as they do for gobetween.
#[test]
fn backends_tls_trusts_the_system_cas_ssl_cert_file_and_dir_name() {
    let ca = Ca::new();
    let backend = TlsBackend::start(&ca.leaf("backend.example"), None);
    let dir = TempDir::new("system-cas");
    let ca_file = dir.write("private-ca.pem", &ca.cert.pem());
    let ca_dir = dir.0.join("certs");
    std::fs::create_dir(&ca_dir).unwrap();
    std::fs::copy(&ca_file, ca_dir.join("private-ca.pem")).unwrap();
    let empty_dir = dir.0.join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let port = free_port();
    let config = dir.write(
        "betwixt.toml",
        &format!(
            "[servers.s]\nbind = \"127.0.0.1:{port}\"\n[servers.s.backends_tls]\nignore_verify = false\n\
             [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{} sni=backend.example\"]\n",
            backend.port
        ),
    );
    let start = |env: &[(&str, String)]| {
        let bx = Betwixt::start_args(&["-c".as_ref(), config.as_os_str()], env, TempDir::new("bx"));
        bx.wait_listening(port);
        bx
    };
    let passes = || wait_until(LIMIT, || plain_exchange(port, b"verified") == b"verified");
    let (missing, dirs) = ("/nonexistent/ca.pem".to_string(), format!("/nonexistent:{}", ca_dir.display()));

    // The machine's own CAs do not know the private one.
    let bx = start(&[]);
    assert_eq!(plain_exchange(port, b"unverified"), b"");
    assert!(wait_until(LIMIT, || bx.log_text().contains("TLS handshake")), "{}", bx.log_text());
    drop(bx);
    // The file alone, the machine's directories still read beside it.
    let bx = start(&[("SSL_CERT_FILE", ca_file.display().to_string())]);
    assert!(passes(), "SSL_CERT_FILE: {}", bx.log_text());
    drop(bx);
    // A file that is not there, and the CA in the second directory of two.
    let bx = start(&[("SSL_CERT_FILE", missing.clone()), ("SSL_CERT_DIR", dirs)]);
    assert!(passes(), "SSL_CERT_DIR: {}", bx.log_text());
    drop(bx);
    // Read again at a reload: the CA added to the file is trusted by the `[backends_tls]` the
    // reload builds anew (one that did not change keeps the CAs it has, as for its own files).
    let other = rcgen::generate_simple_self_signed(vec!["other.example".into()]).unwrap().cert;
    let other_ca = dir.write("other-ca.pem", &other.pem());
    let empty = empty_dir.display().to_string();
    let bx = start(&[("SSL_CERT_FILE", other_ca.display().to_string()), ("SSL_CERT_DIR", empty)]);
    assert_eq!(plain_exchange(port, b"unverified"), b"");
    std::fs::write(&other_ca, format!("{}{}", std::fs::read_to_string(&other_ca).unwrap(), ca.cert.pem()))
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("ignore_verify = false", "ignore_verify = false\nmin_version = \"tls1.2\""),
    )
    .unwrap();
    bx.signal(libc::SIGHUP);
    assert!(wait_until(LIMIT, || bx.log_text().contains("reload (SIGHUP)")), "{}", bx.log_text());
    assert!(passes(), "after the reload: {}", bx.log_text());
    drop(bx);
    std::fs::write(&config, text).unwrap();
    // No CA anywhere: the section cannot verify anything and the start is refused.
    let out = std::process::Command::new(common::binary())
        .args(["check".as_ref(), config.as_os_str()])
        .env("SSL_CERT_FILE", missing)
        .env("SSL_CERT_DIR", empty_dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no system CA"),
        "{out:?}"
    );
}

/// Bulk both ways through TLS to the backend: the client writes 128 KiB at a time over plain
/// TCP and the backend echoes it in 4 KiB records, so betwixt reads the backend's socket ahead
/// of rustls and sends the client several records' worth per write. Every byte must come back
/// in order, and the client's end of stream must reach the backend and come back as the end.
#[test]
fn bulk_through_tls_to_the_backend_is_byte_exact() {
    let ca = Ca::new();
    let backend = TlsBackend::start(&ca.leaf("backend.example"), None);
    let port = free_port();
    let config = format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.s.backends_tls]\nignore_verify = true\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{}\"]\n",
        backend.port
    );
    let bx = Betwixt::start(&config, &[], &[port]);
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let data: Vec<u8> = (0..8 * 1024 * 1024 + 13).map(pattern_byte).collect();
    for chunk in data.chunks(128 * 1024) {
        tcp.write_all(chunk).unwrap();
        let mut back = vec![0u8; chunk.len()];
        tcp.read_exact(&mut back).unwrap_or_else(|e| panic!("{e}: {}", bx.log_text()));
        assert!(back == chunk, "echo differs");
    }
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!(tcp.read_to_end(&mut rest).map_err(|e| e.to_string()), Ok(0));
    assert_eq!(backend.handshakes.load(Ordering::SeqCst), 1);
}

/// A rustls client for `name` trusting `ca` (any version).
fn connect_as(port: u16, ca: &Ca, name: &str) -> Result<TlsClient, String> {
    let config = client_config(ca, &[&rustls::version::TLS12, &rustls::version::TLS13], None);
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

#[test]
fn sni_on_a_tls_server_routes_on_the_terminated_name() {
    let ca = Ca::new();
    let dir = TempDir::new("tls-sni");
    let key = KeyPair::generate().unwrap();
    let names = vec!["a.example".to_string(), "b.example".to_string()];
    let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca.cert, &ca.key).unwrap();
    let files = (dir.write("s.crt", &cert.pem()), dir.write("s.key", &key.serialize_pem()));
    let (a, b) = (Backend::start("a", Behaviour::Named), Backend::start("b", Behaviour::Named));
    let port = free_port();
    let lines = [format!("{} sni=a.example", a.line()), format!("{} sni=B.example", b.line())];
    let config =
        tls_config(port, &files, "", &lines) + "[servers.s.sni]\nunexpected_hostname_strategy = \"reject\"\n";
    let _bx = Betwixt::start(&config, &[], &[port]);
    for (name, expected) in [("a.example", "a"), ("b.example", "b")] {
        let mut tls = connect_as(port, &ca, name).unwrap();
        let mut line = [0u8; 2];
        tls.read_exact(&mut line).unwrap();
        assert_eq!(&line, format!("{expected}\n").as_bytes(), "{name}");
    }
}

#[test]
fn garbage_instead_of_tls_closes_only_that_connection() {
    let server = EchoServer::start("tls-garbage", "", "");
    let (port, echo) = (server.port, &server.echo);
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage.set_read_timeout(Some(LIMIT)).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    let _ = garbage.read_to_end(&mut reply);
    assert!(started.elapsed() < LIMIT, "the connection was not closed");
    // Whatever came back (a TLS alert at most) carries none of the backend's bytes.
    assert!(!reply.windows(3).any(|w| w == b"GET"), "{reply:?}");
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 0);
    let mut tls = connect(port, server.tls13()).unwrap();
    echo_round(&mut tls, b"still serving");
}

#[test]
fn proxy_protocol_is_read_before_the_handshake_and_sent_inside_it() {
    // The echo backend returns the PROXY header betwixt sends, then the client's bytes.
    let extra =
        "[servers.s.proxy_protocol]\nversion = \"1\"\n[servers.s.accept_proxy_protocol]\nversion = \"1\"\n";
    let server = EchoServer::start("tls-proxy", "", extra);
    let port = server.port;
    let header = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n";
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.write_all(header).unwrap();
    let conn =
        rustls::ClientConnection::new(server.tls13(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"payload").unwrap();
    let mut back = vec![0u8; header.len() + b"payload".len()];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(back, [header.as_slice(), b"payload"].concat(), "{}", String::from_utf8_lossy(&back));
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_closed_after_10s() {
    let server = EchoServer::start("tls-slow", "", "");
    let (port, echo) = (server.port, &server.echo);
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A record header announcing a ClientHello that never comes.
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let started = Instant::now();
    // Others are served meanwhile.
    let mut tls = connect(port, server.tls13()).unwrap();
    echo_round(&mut tls, b"not blocked");
    let _ = stalled.read_to_end(&mut Vec::new());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(25), "{waited:?}");
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn idle_timeouts_close_an_idle_tls_connection() {
    let server = EchoServer::start("tls-idle", "", "[defaults]\nclient_idle_timeout = \"1s\"\n");
    let mut tls = connect(server.port, server.tls13()).unwrap();
    echo_round(&mut tls, b"then silence");
    let started = Instant::now();
    let mut rest = Vec::new();
    // Closed by betwixt (without close_notify: the timeout is an abort, not an end of stream).
    assert!(tls.read_to_end(&mut rest).is_err() || rest.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
}
