//! ACME against a real CA: pebble (Let's Encrypt's test server) on loopback, validating for
//! real (HTTP-01 to betwixt's `http_bind`, TLS-ALPN-01 to the tls server's own port), with a
//! dnsmasq that resolves the test host name to 127.0.0.1. Clients are rustls clients that
//! trust only pebble's root, for the host name.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::connect_proxy::{socks5_to, tunnel_to};
use common::{dnsmasq_command, free_port, run_betwixt, wait_for_port, wait_until, Betwixt, TempDir};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const HOST: &str = "acme.betwixt.test";
/// A name for pebble's directory that resolves nowhere: only a proxy reaches it.
const PROXIED_CA: &str = "ca.betwixt.test";
const LIMIT: Duration = Duration::from_secs(30);

/// A port free for both TCP and UDP on 127.0.0.1 (dnsmasq takes both).
fn free_dns_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq answering 127.0.0.1 for `HOST` (and nothing for anything else).
fn dnsmasq(port: u16) -> Process {
    let child = dnsmasq_command(port)
        .arg(format!("--address=/{HOST}/127.0.0.1"))
        .spawn()
        .expect("dnsmasq (scripts/test installs it)");
    assert!(wait_for_port(port, LIMIT), "dnsmasq did not start on {port}");
    Process(child)
}

/// pebble with its DNS server, validating on `http_port` (HTTP-01) and `tls_port`
/// (TLS-ALPN-01) of 127.0.0.1, issuing certificates valid for `validity` seconds.
struct Pebble {
    process: Option<(Process, Process)>,
    dir: TempDir,
    port: u16,
    management: u16,
}

impl Pebble {
    fn start(http_port: u16, tls_port: u16, validity: u64) -> Pebble {
        let dir = TempDir::new("pebble");
        // pebble's own HTTPS certificate, from a CA betwixt is told to trust.
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "pebble HTTPS test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), PROXIED_CA.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        dir.write("https-ca.pem", &ca.pem());
        let cert = dir.write("https.pem", &leaf.pem());
        let key = dir.write("https.key", &key.serialize_pem());
        let (port, management, dns) = (free_port(), free_port(), free_dns_port());
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{port}", "managementListenAddress": "127.0.0.1:{management}",
            "certificate": "{}", "privateKey": "{}", "httpPort": {http_port}, "tlsPort": {tls_port},
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "certificateValidityPeriod": {validity}}}}}"#,
            cert.display(),
            key.display()
        );
        let config = dir.write("pebble.json", &config);
        let dns_process = dnsmasq(dns);
        let log = std::fs::File::create(dir.0.join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns}"))
            // No random waits before validating, no rejected nonces, no reused authorizations:
            // every order is validated for real.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble (scripts/test installs it)");
        let process = Process(child);
        assert!(wait_for_port(port, LIMIT) && wait_for_port(management, LIMIT), "pebble did not start");
        Pebble { process: Some((process, dns_process)), dir, port, management }
    }

    /// Stops the CA (its files stay).
    fn stop(&mut self) {
        self.process = None;
    }

    /// The `[acme]` keys pointing at this pebble.
    fn acme_keys(&self) -> String {
        format!(
            "directory_url = \"https://127.0.0.1:{}/dir\"\nroot_ca_cert_path = \"{}\"\nemail = \"ops@betwixt.test\"\n",
            self.port,
            self.dir.0.join("https-ca.pem").display()
        )
    }

    /// The root pebble issues under (it makes a new one at every start).
    fn root(&self) -> CertificateDer<'static> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(self.dir.0.join("https-ca.pem")).unwrap()).unwrap();
        let config = client_config(roots, Vec::new());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = handshake(self.management, config, name).unwrap();
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply);
        CertificateDer::from_pem_slice(&reply[reply.windows(5).position(|w| w == b"-----").unwrap()..])
            .unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("pebble.log")).unwrap_or_default()
    }
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client_config(roots: rustls::RootCertStore, alpn: Vec<Vec<u8>>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Arc::new(config)
}

fn handshake(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> Result<TlsClient, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

/// A client for `HOST` that trusts only `root`.
fn host_client(
    root: &CertificateDer<'static>,
    alpn: Vec<Vec<u8>>,
) -> impl Fn(u16) -> Result<TlsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = client_config(roots, alpn);
    move |port| handshake(port, config.clone(), ServerName::try_from(HOST).unwrap())
}

fn leaf(tls: &TlsClient) -> CertificateDer<'static> {
    tls.conn.peer_certificates().unwrap()[0].clone().into_owned()
}

fn echo(tls: &mut TlsClient, data: &[u8]) {
    tls.write_all(data).unwrap();
    tls.flush().unwrap();
    let mut back = vec![0u8; data.len()];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// betwixt with `[acme]` (`acme_extra` added) and a tls server for `HOST` on `port`.
fn config(pebble: &Pebble, cache: &TempDir, acme_extra: &str, port: u16, backend: &Backend) -> String {
    format!(
        "[acme]\ncache_dir = \"{}\"\n{}{acme_extra}\n[servers.site]\nbind = \"127.0.0.1:{port}\"\nprotocol = \"tls\"\n\
         [servers.site.tls]\nacme_hosts = [\"{HOST}\"]\n[servers.site.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n",
        cache.0.display(),
        pebble.acme_keys(),
        backend.line()
    )
}

/// Waits until the server at `port` completes a handshake for `HOST`.
fn first_certificate(
    port: u16,
    connect: &impl Fn(u16) -> Result<TlsClient, String>,
    bx: &Betwixt,
    pebble: &Pebble,
) -> TlsClient {
    let mut last = String::new();
    let mut tls = None;
    let served = wait_until(LIMIT, || match connect(port) {
        Ok(client) => {
            tls = Some(client);
            true
        }
        Err(e) => {
            last = e;
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(
        served,
        "no certificate served ({last}); betwixt:\n{}\npebble:\n{}",
        bx.log_text(),
        pebble.log_text()
    );
    tls.unwrap()
}

#[test]
fn http01_issues_serves_and_a_restart_reuses_the_cache() {
    let (http, port) = (free_port(), free_port());
    let mut pebble = Pebble::start(http, port, 3600);
    let backend = Backend::start("b", Behaviour::Echo);
    let cache = TempDir::new("acme-cache");
    let metrics = free_port();
    let acme = format!("challenge = \"http\"\nhttp_bind = \"127.0.0.1:{http}\"\n");
    let text = config(&pebble, &cache, &acme, port, &backend)
        + &format!("[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n");
    let bx = Betwixt::start(&text, &[], &[port, metrics]);
    let connect = host_client(&pebble.root(), Vec::new());
    let mut tls = first_certificate(port, &connect, &bx, &pebble);
    let issued = leaf(&tls);
    echo(&mut tls, b"through an ACME certificate");
    assert!(bx.log_text().contains(&format!("new certificate for {HOST}")), "{}", bx.log_text());
    let scraped = Client::http(metrics).get("/metrics").body;
    for line in
        ["betwixt_acme_orders_total 1", "betwixt_acme_certificates_total 1", "betwixt_acme_failures_total 0"]
    {
        assert!(scraped.lines().any(|l| l == line), "no {line:?} in:\n{scraped}");
    }
    let expiry = format!("betwixt_acme_certificate_expiry_seconds{{server=\"site\",host=\"{HOST}\"}} ");
    assert!(scraped.lines().any(|l| l.starts_with(&expiry) && !l.ends_with(" 0")), "{scraped}");

    // The cache: the host's key and chain, and the account, readable by betwixt's user only.
    for name in [HOST, "betwixt-acme-account.json"] {
        let mode = std::fs::metadata(cache.0.join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }

    // Restarted with the CA gone: the cached certificate is served at once, without an order.
    drop(tls);
    drop(bx);
    let root = pebble.root();
    pebble.stop();
    let bx = Betwixt::start(&text, &[], &[port, metrics]);
    let connect = host_client(&root, Vec::new());
    let tls = connect(port).unwrap_or_else(|e| panic!("{e}; log:\n{}", bx.log_text()));
    assert_eq!(leaf(&tls), issued);
    let log = bx.log_text();
    assert!(log.contains("serving the cached certificate") && !log.contains("new certificate"), "{log}");
    // A name not listed fails the handshake, as autocert's host policy fails it.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let other =
        handshake(port, client_config(roots, Vec::new()), ServerName::try_from("other.example").unwrap());
    assert!(other.is_err(), "a certificate for an unlisted name");
    // The challenge listener sends everything else to HTTPS, as autocert's handler does.
    let mut plain = TcpStream::connect(("127.0.0.1", http)).unwrap();
    plain.write_all(format!("GET /page HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).unwrap();
    let mut reply = String::new();
    plain.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with(&format!("HTTP/1.1 302 Found\r\nLocation: https://{HOST}/page\r\n")),
        "{reply}"
    );
    let scraped = Client::http(metrics).get("/metrics").body;
    assert!(scraped.lines().any(|l| l == "betwixt_acme_orders_total 0"), "{scraped}");
}

#[test]
fn tls_alpn01_issues_on_the_servers_own_port() {
    let (unused_http, port) = (free_port(), free_port());
    let pebble = Pebble::start(unused_http, port, 3600);
    let backend = Backend::start("b", Behaviour::Echo);
    let cache = TempDir::new("acme-alpn");
    let bx =
        Betwixt::start(&config(&pebble, &cache, "challenge = \"tls-alpn\"\n", port, &backend), &[], &[port]);
    // Nothing listens for HTTP-01.
    assert!(TcpStream::connect(("127.0.0.1", unused_http)).is_err());
    // A client offering ALPN protocols of its own is served as before (none is negotiated).
    let connect = host_client(&pebble.root(), vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    let mut tls = first_certificate(port, &connect, &bx, &pebble);
    assert_eq!(tls.conn.alpn_protocol(), None);
    echo(&mut tls, b"after TLS-ALPN-01");
    let issued = leaf(&tls);

    // A reload that changes the server's [tls] section keeps its ACME host and the
    // certificate it has: no new order, no handshake refused.
    let path = bx.dir.0.join("betwixt.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace("acme_hosts = ", "min_version = \"tls1.2\"\nacme_hosts = ");
    assert_ne!(text, changed);
    std::fs::write(&path, changed).unwrap();
    bx.signal(libc::SIGHUP);
    let reloaded = wait_until(LIMIT, || bx.log_text().contains("reload (SIGHUP)"));
    assert!(reloaded, "{}", bx.log_text());
    let log = bx.log_text();
    assert!(!log.contains("rejected"), "{log}");
    let tls = connect(port).unwrap_or_else(|e| panic!("{e}; log:\n{log}"));
    assert_eq!(leaf(&tls), issued);
}

#[test]
fn short_lived_certificates_are_renewed_under_live_connections() {
    let (http, port) = (free_port(), free_port());
    // 8 s certificates: renewed half-way through their life.
    let pebble = Pebble::start(http, port, 8);
    let backend = Backend::start("b", Behaviour::Echo);
    let cache = TempDir::new("acme-renew");
    let text = config(&pebble, &cache, &format!("http_bind = \"127.0.0.1:{http}\"\n"), port, &backend);
    let bx = Betwixt::start(&text, &[], &[port]);
    let connect = host_client(&pebble.root(), Vec::new());
    let mut live = first_certificate(port, &connect, &bx, &pebble);
    let first = leaf(&live);
    let renewed = wait_until(LIMIT, || connect(port).is_ok_and(|tls| leaf(&tls) != first));
    assert!(renewed, "never renewed; log:\n{}", bx.log_text());
    // The connection made with the first certificate goes on.
    echo(&mut live, b"still here");
}

/// gobetween's ACME client is Go's default one, which goes through `HTTPS_PROXY`; so does
/// betwixt's, an HTTP proxy's `CONNECT` tunnel or a SOCKS5 proxy's. The directory is named by
/// a name only the proxy can reach, and TLS to the CA runs end to end through the tunnel.
#[test]
fn the_directory_is_reached_through_the_environments_proxy() {
    let (http, port) = (free_port(), free_port());
    let pebble = Pebble::start(http, port, 3600);
    let backend = Backend::start("b", Behaviour::Echo);
    let (connect, connects) = tunnel_to(pebble.port);
    let (socks, socks_connects) = socks5_to(pebble.port);
    for (proxy, tunnels) in [
        (format!("http://127.0.0.1:{connect}"), connects),
        (format!("socks5h://127.0.0.1:{socks}"), socks_connects),
    ] {
        let cache = TempDir::new("acme-proxied");
        let text = config(&pebble, &cache, &format!("http_bind = \"127.0.0.1:{http}\"\n"), port, &backend)
            .replace("https://127.0.0.1:", &format!("https://{PROXIED_CA}:"));
        let dir = TempDir::new("bx");
        let path = dir.write("betwixt.toml", &text);
        let bx =
            Betwixt::start_args(&["-c".as_ref(), path.as_os_str()], &[("HTTPS_PROXY", proxy.clone())], dir);
        bx.wait_listening(port);
        let client = host_client(&pebble.root(), Vec::new());
        let mut tls = first_certificate(port, &client, &bx, &pebble);
        echo(&mut tls, b"issued through a proxy");
        let first = tunnels.recv_timeout(Duration::from_secs(1)).unwrap();
        assert!(first.starts_with(&format!("CONNECT {PROXIED_CA}:{}", pebble.port)), "{proxy}: {first}");
    }
}

#[test]
fn check_accepts_acme_and_a_bad_cache_dir_stops_the_start() {
    let dir = TempDir::new("acme-check");
    let port = free_port();
    let server = format!(
        "[servers.site]\nbind = \"127.0.0.1:{port}\"\nprotocol = \"tls\"\n[servers.site.tls]\nacme_hosts = [\"{HOST}\"]\n\
         [servers.site.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:1\"]\n"
    );
    let good =
        dir.write("good.toml", &format!("[acme]\nchallenge = \"tls-alpn\"\ncache_dir = \"/tmp\"\n{server}"));
    let (status, stdout, stderr) = run_betwixt(&["check", "--strict", good.to_str().unwrap()]);
    assert!(status.success() && stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("acme_hosts"), "{stdout}");

    // acme_hosts without [acme], and a name no CA can validate, are configuration errors.
    let lone = dir.write("lone.toml", &server);
    let (status, _, stderr) = run_betwixt(&["check", lone.to_str().unwrap()]);
    assert!(!status.success() && stderr.contains("needs the [acme] section"), "{stderr}");
    let ip = dir.write("ip.toml", &format!("[acme]\n{}", server.replace(HOST, "127.0.0.1")));
    let (status, _, stderr) = run_betwixt(&["check", ip.to_str().unwrap()]);
    assert!(!status.success() && stderr.contains("servers.site.tls.acme_hosts"), "{stderr}");

    // A cache_dir that cannot be a directory: a clear error at start, nothing left running.
    let file = dir.write("a-file", "x");
    let bad = dir.write(
        "bad.toml",
        &format!("[acme]\nchallenge = \"tls-alpn\"\ncache_dir = \"{}/sub\"\n{server}", file.display()),
    );
    let (status, _, stderr) = run_betwixt(&["-c", bad.to_str().unwrap()]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("acme.cache_dir") && stderr.contains("a-file/sub"), "{stderr}");
    // `check` finds it too, without creating anything...
    let (status, stdout, stderr) = run_betwixt(&["check", bad.to_str().unwrap()]);
    assert!(!status.success() && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("acme.cache_dir") && stderr.contains("a-file/sub"), "{stderr}");
    // ... and passes a cache_dir the start would create, leaving it to the start.
    let missing = dir.0.join("cache/acme");
    let later = dir.write(
        "later.toml",
        &format!("[acme]\nchallenge = \"tls-alpn\"\ncache_dir = \"{}\"\n{server}", missing.display()),
    );
    let (status, _, stderr) = run_betwixt(&["check", "--strict", later.to_str().unwrap()]);
    assert!(status.success() && stderr.is_empty(), "{stderr}");
    assert!(!dir.0.join("cache").exists());
}
