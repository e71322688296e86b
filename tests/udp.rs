//! `protocol = "udp"` through the real binary: a real DNS server (dnsmasq) behind betwixt,
//! sessions and their limits, socket counts from /proc, many clients on two shards.

mod api_client;
mod common;

use api_client::Client;
use common::{free_port, wait_until, Betwixt};
use sonic_rs::JsonValueTrait;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A UDP port that was free a moment ago on 127.0.0.1.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port free for both UDP and TCP: dnsmasq listens on both, and the kernel hands out UDP and
/// TCP ports independently, so a UDP-free port may be a busy TCP port under a parallel run.
fn free_dual_port() -> u16 {
    loop {
        let port = free_udp_port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    socket
}

/// Sends `payload` to `port` and waits for one reply, resending a few times (loopback UDP may
/// drop under load).
fn ask(socket: &UdpSocket, port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0; 65_536];
    for _ in 0..4 {
        socket.send_to(payload, ("127.0.0.1", port)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// Every descriptor betwixt holds.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The UDP sockets betwixt holds: its descriptors whose socket inode is listed in
/// `/proc/net/udp` or `udp6`. Counting only these keeps the API connections the test itself
/// opens (and betwixt closes a moment later) out of the figures.
fn udp_sockets(pid: i32) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        inodes.extend(text.lines().skip(1).filter_map(|l| l.split_whitespace().nth(9).map(String::from)));
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .filter(|inode| inodes.contains(inode))
        .count()
}

/// A UDP backend on 127.0.0.1 answering every datagram with `name:` followed by the datagram,
/// from the port it received on (or, with `other_port`, from a second socket). Counts what it
/// received; `mute` makes it receive without answering, `twice` answers again 100 ms later.
struct Echo {
    port: u16,
    received: Arc<AtomicUsize>,
    mute: Arc<AtomicBool>,
    from_other_port: Arc<AtomicBool>,
    twice: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(name: &str) -> Echo {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let mut echo = Echo {
            port,
            received: Arc::default(),
            mute: Arc::default(),
            from_other_port: Arc::default(),
            twice: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        let (received, mute, other_port, twice, stop) = (
            echo.received.clone(),
            echo.mute.clone(),
            echo.from_other_port.clone(),
            echo.twice.clone(),
            echo.stop.clone(),
        );
        let prefix = format!("{name}:").into_bytes();
        echo.thread = Some(std::thread::spawn(move || {
            let mut buf = vec![0; 65_536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                received.fetch_add(1, Ordering::Relaxed);
                if mute.load(Ordering::Relaxed) {
                    continue;
                }
                let reply = [&prefix[..], &buf[..n]].concat();
                let sender = if other_port.load(Ordering::Relaxed) { &other } else { &socket };
                let _ = sender.send_to(&reply, from);
                if twice.load(Ordering::Relaxed) {
                    let again = sender.try_clone().unwrap();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(100));
                        let _ = again.send_to(&reply, from);
                    });
                }
            }
        }));
        echo
    }

    /// A backend that receives and never answers.
    fn silent() -> Echo {
        let echo = Echo::start("never");
        echo.mute.store(true, Ordering::Relaxed);
        echo
    }

    fn line(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The ports of one test's betwixt: its UDP server, its API and its metrics.
struct Ports {
    udp: u16,
    api: u16,
    metrics: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports { udp: free_udp_port(), api: free_port(), metrics: free_port() }
    }
}

/// betwixt's `/metrics` text.
fn metrics(ports: &Ports) -> String {
    Client::http(ports.metrics).get("/metrics").body
}

/// Asserts that `series` (name and labels) reads `value` in betwixt's metrics.
fn assert_metric(ports: &Ports, series: &str, value: u64) {
    let text = metrics(ports);
    assert!(text.contains(&format!("{series} {value}")), "{series} is not {value}:\n{text}");
}

/// betwixt serving UDP server `s` over `backends` (see `udp_config`), with its ports.
fn serve(backends: &[String], server: &str, udp: &str) -> (Ports, Betwixt) {
    let ports = Ports::new();
    let bx = start(&udp_config(&ports, backends, server, udp), &ports);
    (ports, bx)
}

/// A UDP server `s` on `port` over `backends`; `server` and `udp` are added to the server's
/// section and its `[udp]` table.
fn udp_config(ports: &Ports, backends: &[String], server: &str, udp: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    let Ports { udp: port, api, metrics } = ports;
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\
         [servers.s]\nbind = \"127.0.0.1:{port}\"\nprotocol = \"udp\"\n{server}\n\
         [servers.s.udp]\n{udp}\n[servers.s.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

/// The server's `active_connections` (its open sessions), from the API.
fn sessions(ports: &Ports) -> u64 {
    let reply = Client::http(ports.api).get("/servers/s/stats");
    reply.json()["active_connections"].as_u64().unwrap_or_else(|| panic!("{}", reply.body))
}

fn start(config: &str, ports: &Ports) -> Betwixt {
    let bx = Betwixt::start(config, &[], &[ports.udp]);
    // The API may start listening a moment after the UDP server does: refused until then.
    let api = Client::http(ports.api);
    let up = || api.try_send("GET", "/ping", &[], "").is_ok_and(|reply| reply.status == 200);
    assert!(wait_until(Duration::from_secs(10), up), "the API never answered; log:\n{}", bx.log_text());
    bx
}

// ---------------------------------------------------------------------------------------------
// A real DNS server behind betwixt.

/// dnsmasq on a loopback port, answering `*.example.test` with 10.9.8.7; killed on drop.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    fn start() -> Dnsmasq {
        let port = free_dual_port();
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--address=/example.test/10.9.8.7",
                "--conf-file=/dev/null",
                "--pid-file=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("dnsmasq is needed for this test (apt-get install dnsmasq): {e}"));
        let dns = Dnsmasq { child, port };
        let socket = client();
        assert!(
            wait_until(Duration::from_secs(5), || ask(&socket, port, &dns_query(1, "up.example.test"))
                .is_some()),
            "dnsmasq did not answer on port {port}"
        );
        dns
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS query for the A record of `name`, with transaction id `id` (RFC 1035 §4.1).
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// The answer's id and the address in its last record (dnsmasq answers with one A record).
fn dns_answer(reply: &[u8]) -> (u16, [u8; 4]) {
    assert!(reply.len() > 16, "short DNS reply {reply:?}");
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    assert_eq!(answers, 1, "one answer expected in {reply:?}");
    let n = reply.len();
    (u16::from_be_bytes([reply[0], reply[1]]), [reply[n - 4], reply[n - 3], reply[n - 2], reply[n - 1]])
}

#[test]
fn sni_and_tls_on_a_udp_server_are_ignored_as_gobetween_ignores_them() {
    let echo = Echo::start("e");
    // Files that do not exist: gobetween never reads them for a udp server, nor does betwixt.
    let tables = "[servers.s.sni]\nhostname_matching_strategy = \"exact\"\n[servers.s.tls]\n\
                  cert_path = \"/nonexistent/cert.pem\"\nkey_path = \"/nonexistent/key.pem\"";
    let (ports, bx) = serve(&[echo.line()], tables, "max_responses = 1");
    assert_eq!(ask(&client(), ports.udp, b"hi").as_deref(), Some(&b"e:hi"[..]));
    let log = bx.log_text();
    for key in ["servers.s.sni", "servers.s.tls"] {
        assert!(
            log.contains(key) && log.contains("ignored: a udp server has no TLS handshake"),
            "{key}: {log}"
        );
    }
}

#[test]
fn dns_through_betwixt_and_max_responses_frees_each_session_at_the_answer() {
    let dns = Dnsmasq::start();
    let (ports, bx) = serve(&[format!("127.0.0.1:{}", dns.port)], "", "max_responses = 1");
    let (api, port) = (&ports, ports.udp);
    let baseline = udp_sockets(bx.pid());

    // dig, the everyday client, gets its answer through betwixt.
    let dig = Command::new("dig")
        .args(["+short", "+time=2", "+tries=3", "-p", &port.to_string(), "@127.0.0.1", "www.example.test"])
        .output()
        .unwrap_or_else(|e| panic!("dig is needed for this test (apt-get install dnsutils): {e}"));
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "10.9.8.7", "{dig:?}");

    // 300 queries, each from its own port: every answer is right, and each session ends at its
    // answer: nothing else could end it, there is no timeout. Its socket to dnsmasq is kept
    // for the next query, so one socket per shard serves them all (betwixt runs a shard per
    // CPU here, and the kernel spreads the client ports over them).
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    for i in 0..300u16 {
        let socket = client();
        let reply = ask(&socket, port, &dns_query(i, &format!("q{i}.example.test"))).expect("DNS answer");
        assert_eq!(dns_answer(&reply), (i, [10, 9, 8, 7]));
    }
    // A query asked again on a slow machine leaves its session's socket lingering for 2 s
    // (docs/udp.md), hence the room.
    assert!(
        wait_until(Duration::from_secs(5), || udp_sockets(bx.pid()) <= baseline + shards
            && sessions(api) == 0),
        "sessions left open: {} fds (baseline {baseline}), {} sessions",
        udp_sockets(bx.pid()),
        sessions(api)
    );
    // Counted as gobetween counts: one connection (session) per query on server and backend.
    let stats = Client::http(api.api).get("/servers/s/stats").json();
    assert_eq!(stats["backends"][0]["stats"]["total_connections"].as_u64(), Some(301), "{stats:?}");
    let metrics = metrics(api);
    assert!(
        metrics.contains("betwixt_udp_datagrams_total{server=\"s\",direction=\"from_client\"} 301"),
        "{metrics}"
    );
    assert!(metrics.contains("betwixt_udp_sessions{server=\"s\"} 0"), "{metrics}");
}

// ---------------------------------------------------------------------------------------------
// Many clients.

#[test]
fn ten_thousand_clients_on_two_shards_each_get_only_their_own_replies() {
    let echo = Echo::start("echo");
    let api = &Ports::new();
    let port = api.udp;
    let config = format!(
        "[runtime]\nshards = 2\n{}",
        udp_config(api, &[echo.line()], "client_idle_timeout = \"2s\"", "max_responses = 1")
    );
    let bx = start(&config, api);
    let mut buf = vec![0; 2048];
    let mut answered = 0;
    // 2,000 sockets at a time keep the test (and betwixt) far below the descriptor limit.
    for batch in 0..5 {
        let clients: Vec<UdpSocket> = (0..2000).map(|_| client()).collect();
        let payload =
            |i: usize| format!("client {} of batch {batch}", clients[i].local_addr().unwrap()).into_bytes();
        let mut pending: Vec<usize> = (0..clients.len()).collect();
        // Datagrams a busy machine drops (2,000 sent at once) are sent again, for up to 1.5 s.
        for _round in 0..30 {
            for &i in &pending {
                clients[i].send_to(&payload(i), ("127.0.0.1", port)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
            pending.retain(|&i| {
                clients[i].set_nonblocking(true).unwrap();
                let mut got = false;
                while let Ok((n, from)) = clients[i].recv_from(&mut buf) {
                    // Only ever a reply to this address comes back. A socket of a later batch
                    // may get a port an earlier batch used; a late reply to that earlier
                    // client (a retry's second session) is then, correctly, delivered to
                    // the same address: it is not counted as this batch's answer.
                    let own = [&b"echo:"[..], &payload(i)].concat();
                    let address = format!("echo:client {} of batch ", clients[i].local_addr().unwrap());
                    assert!(
                        buf[..n].starts_with(address.as_bytes()),
                        "client {i} ({}) got another's reply from {from}: {:?} (betwixt {port}, echo {})",
                        clients[i].local_addr().unwrap(),
                        String::from_utf8_lossy(&buf[..n]),
                        echo.port
                    );
                    got |= buf[..n] == own[..];
                }
                !got
            });
            if pending.is_empty() {
                break;
            }
        }
        assert!(pending.is_empty(), "{} clients of batch {batch} never got a reply", pending.len());
        answered += clients.len();
    }
    assert_eq!(answered, 10_000);
    // Sessions end at their reply; one whose datagram or reply was lost on the way ends when
    // its client has been silent for 2 s.
    assert!(wait_until(Duration::from_secs(6), || sessions(api) == 0), "{} sessions left", sessions(api));
    // Both shards served sessions: the kernel spreads client addresses over the two sockets.
    let metrics = metrics(api);
    for shard in 0..2 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("betwixt_shard_connections_total{{shard=\"{shard}\"}}")))
            .unwrap_or_else(|| panic!("{metrics}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 1000, "shard {shard} served {n} sessions");
    }
    drop(bx);
}

// ---------------------------------------------------------------------------------------------
// Session expiry and limits.

#[test]
fn silent_backend_sessions_still_expire_and_their_sockets_return() {
    let echo = Echo::silent();
    let (ports, bx) = serve(&[echo.line()], "client_idle_timeout = \"1500ms\"", "");
    let (api, port) = (&ports, ports.udp);
    let baseline = udp_sockets(bx.pid());
    let clients: Vec<UdpSocket> = (0..50).map(|_| client()).collect();
    for c in &clients {
        c.send_to(b"hello?", ("127.0.0.1", port)).unwrap();
    }
    assert!(wait_until(Duration::from_secs(2), || echo.received() == 50));
    // One socket per session while they last...
    assert_eq!(sessions(api), 50);
    assert!(udp_sockets(bx.pid()) >= baseline + 50);
    // ...the sessions end once the clients have been silent for 1.5 s...
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || sessions(api) == 0), "{} sessions left", sessions(api));
    assert!(started.elapsed() >= Duration::from_millis(700), "ended before their timeout");
    // ...and their sockets, each owed an answer, linger 2 s more before they close, so that
    // a late answer cannot reach a later session's client (docs/udp.md).
    let ended = Instant::now();
    assert!(wait_until(Duration::from_secs(6), || udp_sockets(bx.pid()) <= baseline));
    assert!(ended.elapsed() >= Duration::from_secs(1), "closed without lingering: {:?}", ended.elapsed());
}

#[test]
fn backend_idle_timeout_ends_sessions_of_a_silent_backend() {
    let echo = Echo::silent();
    let (ports, bx) = serve(&[echo.line()], "backend_idle_timeout = \"300ms\"", "");
    let (api, port) = (&ports, ports.udp);
    let socket = client();
    // The client keeps talking; the backend's silence ends the session all the same, and the
    // client's next datagram opens a new one.
    let deadline = Instant::now() + Duration::from_millis(900);
    while Instant::now() < deadline {
        socket.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = Client::http(api.api).get("/servers/s/stats").json();
    let total = stats["backends"][0]["stats"]["total_connections"].as_u64().unwrap_or(0);
    assert!((2..=5).contains(&total), "sessions opened: {total} ({stats:?})");
    assert!(wait_until(Duration::from_secs(2), || sessions(api) == 0));
    drop(bx);
}

#[test]
fn max_requests_moves_the_client_to_a_new_session() {
    let (a, b) = (Echo::start("a"), Echo::start("b"));
    let server = "balance = \"roundrobin\"\nclient_idle_timeout = \"5s\"";
    let (ports, _bx) = serve(&[a.line(), b.line()], server, "max_requests = 2");
    let (api, port) = (&ports, ports.udp);
    let socket = client();
    // Two datagrams per session; each new session goes to the next backend in turn.
    let names: Vec<String> = (0..6)
        .map(|i| {
            let reply = ask(&socket, port, format!("r{i}").as_bytes()).expect("reply");
            String::from_utf8(reply).unwrap().split(':').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(names[0], names[1]);
    assert_eq!(names[2], names[3]);
    assert_ne!(names[1], names[2]);
    assert_eq!(names[4], names[0]);
    // The exhausted sessions wait for their client's silence (5 s): three are open.
    assert_eq!(sessions(api), 3);
}

#[test]
fn fire_and_forget_reuses_one_socket_per_backend() {
    let (a, b) = (Echo::start("a"), Echo::start("b"));
    let (ports, bx) = serve(&[a.line(), b.line()], "balance = \"roundrobin\"", "max_requests = 1");
    let (api, port) = (&ports, ports.udp);
    let baseline = udp_sockets(bx.pid());
    let socket = client();
    for i in 0..1000 {
        socket.send_to(format!("log line {i}").as_bytes(), ("127.0.0.1", port)).unwrap();
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(wait_until(Duration::from_secs(3), || a.received() + b.received() >= 990));
    // Balanced per datagram, as gobetween's fire-and-forget mode...
    assert!(a.received() >= 400 && b.received() >= 400, "{} / {}", a.received(), b.received());
    // ...through one socket per backend (one shard here), not one per datagram; no session.
    assert!(udp_sockets(bx.pid()) <= baseline + 2, "{} fds, baseline {baseline}", udp_sockets(bx.pid()));
    assert_eq!(sessions(api), 0);
    // And, as gobetween, replies are not relayed in this mode.
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(socket.recv(&mut [0; 64]).is_err());
}

/// gobetween serves `max_requests = 1` as fire-and-forget whatever else is set: a
/// `max_responses` or an idle timeout (here one from the server) opens no session and relays
/// no reply.
#[test]
fn max_requests_one_is_fire_and_forget_whatever_else_is_set() {
    let echo = Echo::start("echo");
    let (ports, _bx) =
        serve(&[echo.line()], "client_idle_timeout = \"5s\"", "max_requests = 1\nmax_responses = 1");
    let (api, port) = (&ports, ports.udp);
    let socket = client();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    for i in 0..10 {
        socket.send_to(format!("q{i}").as_bytes(), ("127.0.0.1", port)).unwrap();
    }
    assert!(wait_until(Duration::from_secs(3), || echo.received() >= 10), "{}", echo.received());
    assert!(socket.recv(&mut [0; 64]).is_err(), "a reply was relayed");
    assert_eq!(sessions(api), 0);
}

#[test]
fn max_connections_limits_sessions() {
    let echo = Echo::start("echo");
    let (ports, _bx) = serve(&[echo.line()], "max_connections = 3\nclient_idle_timeout = \"10s\"", "");
    let (api, port) = (&ports, ports.udp);
    let clients: Vec<UdpSocket> = (0..5).map(|_| client()).collect();
    let answered: Vec<bool> = clients.iter().map(|c| ask(c, port, b"hi").is_some()).collect();
    assert_eq!(answered, [true, true, true, false, false]);
    assert_eq!(sessions(api), 3);
    // A client with a session keeps being served.
    assert!(ask(&clients[0], port, b"again").is_some());
    assert_metric(api, "betwixt_udp_dropped_datagrams_total{server=\"s\",reason=\"limit\"}", 8);
}

// ---------------------------------------------------------------------------------------------
// Hostile peers.

#[test]
fn reply_from_another_port_is_dropped() {
    let echo = Echo::start("echo");
    echo.from_other_port.store(true, Ordering::Relaxed);
    let (ports, _bx) = serve(&[echo.line()], "client_idle_timeout = \"5s\"", "");
    let port = ports.udp;
    let socket = client();
    // The session's socket is connected to the backend's address: the kernel drops a datagram
    // from any other port, as with gobetween's connected sockets.
    assert_eq!(ask(&socket, port, b"spoof?"), None);
    assert!(echo.received() >= 1);
    echo.from_other_port.store(false, Ordering::Relaxed);
    assert_eq!(ask(&socket, port, b"real").as_deref(), Some(&b"echo:real"[..]));
}

/// A session that ends at its answer leaves its socket for the next session; a backend that
/// answers once more after that must not reach the next client through it. The socket is
/// drained before reuse, and one that held a stray datagram is closed instead.
#[test]
fn a_second_answer_on_an_idle_socket_never_reaches_the_next_client() {
    let echo = Echo::start("echo");
    echo.twice.store(true, Ordering::Relaxed);
    let (ports, _bx) = serve(&[echo.line()], "", "max_responses = 1");
    let port = ports.udp;
    for i in 0..5 {
        let socket = client();
        let query = format!("query {i}");
        assert_eq!(ask(&socket, port, query.as_bytes()), Some(format!("echo:{query}").into_bytes()));
        // The backend's second answer arrives while the socket is idle.
        std::thread::sleep(Duration::from_millis(200));
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert!(socket.recv(&mut [0; 64]).is_err(), "the session ended at its first answer");
    }
}

#[test]
fn access_rules_drop_denied_clients() {
    let echo = Echo::start("echo");
    let server = "client_idle_timeout = \"5s\"\n[servers.s.access]\ndefault = \"allow\"\nrules = [\"deny 127.0.0.0/8\"]";
    let (ports, _bx) = serve(&[echo.line()], server, "max_responses = 1");
    let (api, port) = (&ports, ports.udp);
    let socket = client();
    assert_eq!(ask(&socket, port, b"let me in"), None);
    assert_eq!(echo.received(), 0);
    assert_eq!(sessions(api), 0);
    assert_metric(api, "betwixt_udp_dropped_datagrams_total{server=\"s\",reason=\"denied\"}", 4);
}

#[test]
fn removing_the_server_closes_its_sessions() {
    let echo = Echo::start("echo");
    let (ports, bx) = serve(&[echo.line()], "client_idle_timeout = \"1m\"", "");
    let (api, port) = (&ports, ports.udp);
    let baseline = udp_sockets(bx.pid());
    let clients: Vec<UdpSocket> = (0..20).map(|_| client()).collect();
    for c in &clients {
        assert!(ask(c, port, b"x").is_some());
    }
    assert!(udp_sockets(bx.pid()) >= baseline + 20);
    assert_eq!(Client::http(api.api).send("DELETE", "/servers/s", "").status, 200);
    // Every session socket and the server's own sockets close.
    assert!(
        wait_until(Duration::from_secs(3), || udp_sockets(bx.pid()) < baseline),
        "{} fds, baseline {baseline}",
        udp_sockets(bx.pid())
    );
    assert_eq!(ask(&clients[0], port, b"x"), None);
}

/// `DELETE /servers/s?drain=`: the sessions open go on and no new one is opened; the port stays
/// taken (a server added there is refused) until the last session has ended, and the drain's
/// time ends the ones still open then.
#[test]
fn a_drained_server_serves_its_sessions_then_lets_the_port_go() {
    let echo = Echo::start("echo");
    let (ports, _bx) = serve(&[echo.line()], "client_idle_timeout = \"1s\"", "");
    let (api, port) = (Client::http(ports.api), ports.udp);
    let (old, new) = (client(), client());
    assert!(ask(&old, port, b"before").is_some());
    assert_eq!(api.send("DELETE", "/servers/s?drain=30s", "").status, 200);
    let body = format!(
        r#"{{"bind": "127.0.0.1:{port}", "protocol": "udp", "client_idle_timeout": "1s",
            "discovery": {{"kind": "static", "static_list": ["{}"]}}}}"#,
        echo.line()
    );
    let taken = api.send("POST", "/servers/t", &body);
    assert!(taken.status == 409 && taken.body.contains("sessions drain"), "{} {}", taken.status, taken.body);
    for _ in 0..3 {
        assert_eq!(ask(&old, port, b"during").as_deref(), Some(&b"echo:during"[..]));
        std::thread::sleep(Duration::from_millis(300));
    }
    // A new client gets no session (meanwhile the old one goes idle past its second).
    assert_eq!(ask(&new, port, b"new"), None);
    let free = wait_until(Duration::from_secs(5), || api.send("POST", "/servers/t", &body).status == 200);
    assert!(free, "the port was not let go");
    assert_eq!(ask(&new, port, b"new").as_deref(), Some(&b"echo:new"[..]));

    // A client that never stops sending is cut off when the drain's time is over.
    assert_eq!(api.send("DELETE", "/servers/t?drain=1s", "").status, 200);
    new.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let cut = wait_until(Duration::from_secs(5), || {
        std::thread::sleep(Duration::from_millis(100));
        ask(&new, port, b"still").is_none()
    });
    assert!(cut && started.elapsed() >= Duration::from_millis(900), "cut after {:?}", started.elapsed());
    assert!(wait_until(Duration::from_secs(3), || UdpSocket::bind(("127.0.0.1", port)).is_ok()));
}

// ---------------------------------------------------------------------------------------------
// Soak.

/// betwixt's resident memory in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The issue asks for 60 seconds of steady load; in the suite it runs 12 s (3 s of warm-up,
/// then 9 s measured), and `BETWIXT_UDP_SOAK_SECS=60` runs the full minute. Every query opens
/// a session that ends at its answer (`max_responses = 1`), tens of thousands in all: a socket
/// or a few bytes kept per session would show as steady growth.
#[test]
fn sixty_seconds_of_steady_load_with_short_sessions_keeps_descriptors_and_rss_flat() {
    let seconds: u64 = std::env::var("BETWIXT_UDP_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let warm_up = Duration::from_secs(3);
    let echo = Echo::start("echo");
    let (ports, bx) = serve(&[echo.line()], "client_idle_timeout = \"2s\"", "max_responses = 1");
    let (api, port) = (&ports, ports.udp);
    let pid = bx.pid();
    let fds_idle = open_fds(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    // Four clients, each cycling over 8 ports: a query, its answer (or 200 ms), the next.
    let load: Vec<JoinHandle<()>> = (0..4)
        .map(|_| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let sockets: Vec<UdpSocket> = (0..8).map(|_| client()).collect();
                let mut buf = [0u8; 256];
                while !stop.load(Ordering::Relaxed) {
                    for s in &sockets {
                        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                        s.send_to(b"query", ("127.0.0.1", port)).unwrap();
                        if s.recv(&mut buf).is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(warm_up);
    let (fds_warm, rss_warm, answered_warm) = (open_fds(pid), rss_kib(pid), answered.load(Ordering::Relaxed));
    let (mut fds_max, mut rss_max) = (fds_warm, rss_warm);
    let measured = Instant::now();
    while measured.elapsed() < Duration::from_secs(seconds) - warm_up {
        std::thread::sleep(Duration::from_millis(250));
        fds_max = fds_max.max(open_fds(pid));
        rss_max = rss_max.max(rss_kib(pid));
    }
    stop.store(true, Ordering::Relaxed);
    load.into_iter().for_each(|t| t.join().unwrap());
    let measured_sessions = answered.load(Ordering::Relaxed) - answered_warm;
    eprintln!(
        "{measured_sessions} sessions after warm-up; fds {fds_idle} idle, {fds_warm} after warm-up, \
         max {fds_max}; RSS {rss_warm} -> max {rss_max} KiB"
    );
    assert!(measured_sessions > 2_000, "only {measured_sessions} queries answered after warm-up");
    // At most 32 sessions are open at any moment (one per client port), each with one socket,
    // plus the few sockets a shard keeps for reuse, plus room for lingering ones: a client that
    // gave up waiting after 200 ms asks again in the same session, which then ends with an
    // answer owed and holds its socket 2 s more (docs/udp.md). A leak grows past any bound.
    let bound = fds_idle + 32 + 8 + 32;
    assert!(
        fds_max <= bound,
        "descriptors grew: {fds_idle} idle, {fds_warm} after warm-up, {fds_max} at most"
    );
    assert!(rss_max <= rss_warm + 4096, "RSS grew: {rss_warm} KiB after warm-up, {rss_max} KiB at most");
    assert!(wait_until(Duration::from_secs(4), || sessions(api) == 0), "{} sessions left", sessions(api));
}
