//! Faults of the world around betwixt, each against the real binary on loopback: a backend
//! killed, black-holed, resetting or not reading; clients that hold connections and trickle
//! bytes; running out of descriptors; a flood of connections; a healthcheck that flaps under
//! load. In every case the streams the fault does not touch stay byte-exact, the broken ones end
//! promptly and as they broke (a backend's reset reaches the client as a reset, not a clean end
//! of stream), and a SIGTERM at the end still drains and exits 0 within `shutdown_grace`.
//!
//! Single transport faults one connection at a time are in hostile_data_plane.rs, many
//! connections at once in robustness.rs; this file puts the faults among live traffic.

mod api_client;
mod common;

use api_client::{u64_at, Client};
use common::backends::{Backend, Behaviour};
use common::{free_port, read_until_end, reset, wait_until, Betwixt, BlackHole, TempDir, SIGTERM};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the drain after SIGTERM may last in these tests.
const GRACE_SECS: u64 = 3;

/// The cases that measure memory or take thousands of descriptors run one at a time, so that
/// they measure betwixt and not each other.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// betwixt with the API on, a short `shutdown_grace`, and the servers `servers` (TOML sections).
struct Proxy {
    bx: Betwixt,
    api: Client,
}

impl Proxy {
    /// The configuration: the API on `api`, the grace, then `servers`.
    fn config(api: u16, servers: &str) -> String {
        format!(
            "[runtime]\nshutdown_grace = \"{GRACE_SECS}s\"\n\
             [api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n{servers}"
        )
    }

    fn start(servers: &str, ports: &[u16], shards: &str) -> Proxy {
        let api = free_port();
        let config = Proxy::config(api, servers);
        let mut wait: Vec<u16> = ports.to_vec();
        wait.push(api);
        Proxy { bx: Betwixt::start(&config, &["--shards", shards], &wait), api: Client::http(api) }
    }

    fn stats(&self, server: &str) -> sonic_rs::Value {
        self.api.get_json(&format!("/servers/{server}/stats"))
    }

    fn active(&self, server: &str) -> u64 {
        u64_at(&self.stats(server), "active_connections")
    }

    /// SIGTERM, then betwixt must exit 0 within the grace (plus slack for a loaded machine).
    fn stop_cleanly(mut self) {
        let asked = Instant::now();
        self.bx.signal(SIGTERM);
        let status = self.bx.wait_exit(Duration::from_secs(GRACE_SECS + 5));
        let log = self.bx.log_text();
        let status = status.unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{log}"));
        assert!(status.success(), "exit {status} after SIGTERM; log:\n{log}");
        assert!(asked.elapsed() < Duration::from_secs(GRACE_SECS + 5), "the drain outlasted the grace");
    }
}

fn server(name: &str, port: u16, lines: &[String], extra: &str) -> String {
    let list: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n{extra}\n\
         [servers.{name}.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

/// FNV-1a: streams are compared by checksum, not kept.
fn checksum(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn pattern(seed: usize, from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| ((i * 31 + seed * 7) % 251) as u8).collect()
}

/// A client streaming `len` bytes through an echo backend, paced so it is still running when
/// the fault strikes; the thread fails unless the echo comes back whole, in order, then ends.
fn echo_stream(port: u16, seed: usize, len: usize, pace: Duration) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sender = thread::spawn(move || {
            let mut sent_sum = FNV_START;
            for from in (0..len).step_by(16 * 1024) {
                let chunk = pattern(seed, from, (len - from).min(16 * 1024));
                sent_sum = checksum(sent_sum, &chunk);
                writer.write_all(&chunk).unwrap();
                thread::sleep(pace);
            }
            writer.shutdown(Shutdown::Write).unwrap();
            sent_sum
        });
        let (mut got, mut got_sum, mut buf) = (0, FNV_START, vec![0u8; 64 * 1024]);
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    got_sum = checksum(got_sum, &buf[..n]);
                }
                Err(e) => panic!("stream {seed}: {e} after {got} of {len} bytes"),
            }
        }
        let sent_sum = sender.join().unwrap();
        assert_eq!((got, got_sum), (len, sent_sum), "stream {seed} came back altered");
    })
}

/// Several echo streams of about two seconds each.
fn survivors(port: u16, count: usize) -> Vec<JoinHandle<()>> {
    (0..count).map(|i| echo_stream(port, i, 2 * 1024 * 1024, Duration::from_millis(15))).collect()
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        handle.join().expect("a surviving stream failed");
    }
}

/// A client of a backend that streams a pattern at it without reading: it says something (left
/// unread, so the backend's end resets when it dies), then reads the pattern as it comes.
fn victim_client(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"unread request").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut first = [0u8; 4096];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first[..], &streamer_pattern(0, 4096)[..]);
    stream
}

/// What the streaming backends send: byte i is i mod 251.
fn streamer_pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

/// The victim's end: every byte after the first 4096 continues the pattern, then a reset (not
/// a clean end of stream) within a few seconds of the fault.
fn assert_reset_after_exact_prefix(mut stream: TcpStream) {
    let (data, end) = read_until_end(&mut stream, Duration::from_secs(8));
    assert_eq!(data, streamer_pattern(4096, data.len()), "bytes before the fault were altered");
    assert_eq!(
        end,
        Err(ErrorKind::ConnectionReset),
        "the backend's fault did not reach the client as a reset"
    );
}

/// A backend in a process of its own, killed with SIGKILL by the test: it streams the pattern
/// at each client and never reads.
struct StreamerProcess {
    child: Child,
    port: u16,
}

impl StreamerProcess {
    fn start() -> StreamerProcess {
        let script = "import socket, threading, sys\n\
            l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(64)\n\
            print(l.getsockname()[1], flush=True)\n\
            data = bytes(i % 251 for i in range(251 * 64))\n\
            def serve(c):\n    while True: c.sendall(data)\n\
            while True:\n    c, _ = l.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
            .unwrap();
        StreamerProcess { child, port: line.trim().parse().unwrap() }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StreamerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Streams the pattern at each client without reading, and resets (SO_LINGER 0) every
/// connection once `reset_now` is set.
fn resetting_streamer(reset_now: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let reset_now = reset_now.clone();
            thread::spawn(move || {
                stream.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
                let (mut stream, data) = (stream, streamer_pattern(0, 251 * 64));
                let mut at = 0;
                while !reset_now.load(Ordering::Relaxed) {
                    match stream.write(&data[at..]) {
                        Ok(n) => at = (at + n) % data.len(),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
            });
        }
    });
    port
}

/// A backend's process is killed (SIGKILL) while clients stream through it and others stream
/// through another backend: the killed ones get every byte the backend sent, then a reset; new
/// clients of the dead backend are closed at once; the others are untouched.
#[test]
fn backend_killed_mid_stream() {
    let mut victim = StreamerProcess::start();
    let echo = Backend::start("echo", Behaviour::Echo);
    let (port, dead) = (free_port(), free_port());
    let proxy = Proxy::start(
        &(server("s", port, &[echo.line()], "")
            + &server("v", dead, &[format!("127.0.0.1:{}", victim.port)], "")),
        &[port, dead],
        "2",
    );
    let streams = survivors(port, 6);
    let victims: Vec<TcpStream> = (0..4).map(|_| victim_client(dead)).collect();
    victim.kill();
    let killed = Instant::now();
    for stream in victims {
        assert_reset_after_exact_prefix(stream);
    }
    assert!(killed.elapsed() < Duration::from_secs(5), "the fault took {:?} to arrive", killed.elapsed());
    assert!(common::closed_without_data(dead, Duration::from_secs(3)), "a client of the dead backend hangs");
    join_all(streams);
    assert!(wait_until(Duration::from_secs(5), || proxy.active("v") == 0 && proxy.active("s") == 0));
    proxy.stop_cleanly();
}

/// A backend resets (SO_LINGER 0) its connections in the middle of their streams: each of its
/// clients gets the bytes sent before the reset, then a reset; the other streams are untouched.
#[test]
fn backend_resets_mid_stream() {
    let reset = Arc::new(AtomicBool::new(false));
    let resetting = resetting_streamer(reset.clone());
    let echo = Backend::start("echo", Behaviour::Echo);
    let (port, bad) = (free_port(), free_port());
    let proxy = Proxy::start(
        &(server("s", port, &[echo.line()], "") + &server("v", bad, &[format!("127.0.0.1:{resetting}")], "")),
        &[port, bad],
        "2",
    );
    let streams = survivors(port, 6);
    let victims: Vec<TcpStream> = (0..4).map(|_| victim_client(bad)).collect();
    reset.store(true, Ordering::Relaxed);
    for stream in victims {
        assert_reset_after_exact_prefix(stream);
    }
    join_all(streams);
    assert!(wait_until(Duration::from_secs(5), || proxy.active("v") == 0 && proxy.active("s") == 0));
    proxy.stop_cleanly();
}

/// Black holes: a backend that accepts and then never reads nor answers, and one whose listen
/// queue is full (its SYNs are dropped, so connects hang). With `backend_idle_timeout` and
/// `backend_connection_timeout` set, their clients are closed within those times; streams to a
/// good backend are untouched meanwhile.
#[test]
fn black_holed_backends_end_their_clients_within_the_timeouts() {
    let silent = Backend::start("silent", Behaviour::Silent);
    let hole = BlackHole::new();
    let echo = Backend::start("echo", Behaviour::Echo);
    let (port, quiet, unreachable) = (free_port(), free_port(), free_port());
    let servers = server("s", port, &[echo.line()], "")
        + &server("q", quiet, &[silent.line()], "backend_idle_timeout = \"1s\"")
        + &server(
            "u",
            unreachable,
            &[format!("127.0.0.1:{}", hole.port)],
            "backend_connection_timeout = \"500ms\"",
        );
    let proxy = Proxy::start(&servers, &[port, quiet, unreachable], "2");
    let streams = survivors(port, 6);
    let ends: Vec<JoinHandle<Duration>> = [quiet, unreachable]
        .into_iter()
        .flat_map(|p| std::iter::repeat_n(p, 3))
        .map(|p| {
            thread::spawn(move || {
                let started = Instant::now();
                let mut stream = TcpStream::connect(("127.0.0.1", p)).unwrap();
                let _ = stream.write_all(b"anyone there?");
                let (data, _) = read_until_end(&mut stream, Duration::from_secs(8));
                assert!(data.is_empty(), "a black hole answered {data:?}");
                started.elapsed()
            })
        })
        .collect();
    for end in ends {
        let took = end.join().unwrap();
        assert!(took < Duration::from_secs(4), "a client of a black hole waited {took:?}");
    }
    join_all(streams);
    assert!(wait_until(Duration::from_secs(5), || ["s", "q", "u"].iter().all(|s| proxy.active(s) == 0)));
    proxy.stop_cleanly();
}

/// betwixt's resident memory in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Writes until nothing more goes out for 300 ms, and at most `cap` bytes; returns what went.
fn push_until_stalled(stream: &TcpStream, cap: usize) -> usize {
    stream.set_nonblocking(true).unwrap();
    let chunk = [0x5Au8; 64 * 1024];
    let (mut sent, mut stalled_since) = (0, Instant::now());
    while stalled_since.elapsed() < Duration::from_millis(300) && sent < cap {
        match (&*stream).write(&chunk) {
            Ok(n) => {
                sent += n;
                stalled_since = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("write failed: {e}"),
        }
    }
    sent
}

/// A backend that accepts and never reads nor closes: its connections are kept until the test
/// process ends.
fn never_reading_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    port
}

/// 32 clients push as much as they can at a backend that accepts and never reads: betwixt
/// stops reading them once its bounded buffers toward the backend are full (every client
/// stalls well below 64 MiB), its resident memory grows by less than 48 MiB (documented in
/// hardening.md), and a stream on another server is untouched.
#[test]
fn a_backend_that_never_reads_does_not_make_betwixt_buffer_without_bound() {
    let _heavy = heavy();
    let deaf = never_reading_backend();
    let echo = Backend::start("echo", Behaviour::Echo);
    let (port, stuck) = (free_port(), free_port());
    let servers =
        server("s", port, &[echo.line()], "") + &server("n", stuck, &[format!("127.0.0.1:{deaf}")], "");
    let proxy = Proxy::start(&servers, &[port, stuck], "2");
    let before = rss_kib(proxy.bx.pid());
    let streams = survivors(port, 2);
    let pushers: Vec<TcpStream> =
        (0..32).map(|_| TcpStream::connect(("127.0.0.1", stuck)).unwrap()).collect();
    const CAP: usize = 64 * 1024 * 1024;
    let sent: Vec<usize> = thread::scope(|scope| {
        let handles: Vec<_> =
            pushers.iter().map(|s| scope.spawn(move || push_until_stalled(s, CAP))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let grown = rss_kib(proxy.bx.pid()).saturating_sub(before);
    eprintln!("betwixt RSS grew by {grown} KiB holding up {} bytes", sent.iter().sum::<usize>());
    assert!(
        sent.iter().all(|&n| n < CAP),
        "betwixt kept taking bytes for a backend that never reads: {sent:?}"
    );
    assert!(grown < 48 * 1024, "RSS grew by {grown} KiB with {} bytes held up", sent.iter().sum::<usize>());
    join_all(streams);
    // A FIN would wait for the backend to read what is queued; a reset releases at once.
    pushers.into_iter().for_each(reset);
    assert!(wait_until(Duration::from_secs(5), || proxy.active("n") == 0));
    proxy.stop_cleanly();
}

/// An echo backend for thousands of connections: a thread each, with a small stack and buffer.
fn light_echo() -> u16 {
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.bind(&common::addr(0).into()).unwrap();
    listener.listen(4096).unwrap();
    let listener: TcpListener = listener.into();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let spawned = thread::Builder::new().stack_size(64 * 1024).spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            spawned.expect("cannot start a backend thread");
        }
    });
    port
}

/// betwixt with one server `s` in front of a `light_echo` backend, on `shards` shards.
fn light_echo_proxy(shards: &str) -> (Proxy, u16) {
    let (echo, port) = (light_echo(), free_port());
    (Proxy::start(&server("s", port, &[format!("127.0.0.1:{echo}")], ""), &[port], shards), port)
}

/// Connects `n` clients (from 4 threads) and returns them once each is proxied (its first echo
/// came back).
fn idle_clients(port: u16, n: usize) -> Vec<TcpStream> {
    thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    (0..n / 4)
                        .map(|_| {
                            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            s.write_all(b"x").unwrap();
                            s.read_exact(&mut [0u8; 1]).unwrap();
                            s
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// One round trip through `port` on a new connection; returns how long it took.
fn round_trip_time(port: u16, payload: &[u8]) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
    started.elapsed()
}

/// Slowloris: 2,500 clients connect and go silent, and one trickles a byte a second; no idle
/// timeout is set, so betwixt holds them all. Real clients are still served at once, the
/// trickled bytes come back in order, and the SIGTERM drain closes the idle ones at the grace.
#[test]
fn slowloris_does_not_starve_real_clients() {
    let _heavy = heavy();
    let (proxy, port) = light_echo_proxy("2");
    let idle = idle_clients(port, 2500);
    let trickler = thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for &byte in b"slow" {
            stream.write_all(&[byte]).unwrap();
            let mut back = [0u8; 1];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back[0], byte);
            thread::sleep(Duration::from_secs(1));
        }
    });
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        slowest = slowest.max(round_trip_time(port, format!("real client {i}").as_bytes()));
        thread::sleep(Duration::from_millis(50));
    }
    assert!(slowest < Duration::from_secs(1), "a real client waited {slowest:?}");
    trickler.join().unwrap();
    assert!(proxy.active("s") >= 2500);
    proxy.stop_cleanly();
    drop(idle);
}

/// A client that connects and waits for its echo: `Ok` when served, else how it was refused.
/// It is kept open (returned) so that the descriptors it holds stay taken. Neither served nor
/// refused within 5 s fails the test: the client would hang.
fn attempt(port: u16, payload: &str) -> (Result<(), String>, Option<TcpStream>) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (Err("connect refused".into()), None);
    };
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A refusal can reach the client before its request does: the write then reports the reset,
    // and a read after it would see only an end of stream.
    if let Err(e) = stream.write_all(payload.as_bytes()) {
        return (Err(e.kind().to_string()), Some(stream));
    }
    let mut back = vec![0u8; payload.len()];
    let outcome = match stream.read(&mut back) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err("closed".into()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("{payload} hangs: neither served nor refused within 5 s")
        }
        Err(e) => Err(e.kind().to_string()),
    };
    (outcome, Some(stream))
}

/// Sets betwixt's soft descriptor limit (the hard one stays).
fn set_soft_nofile(pid: i32, soft: u64) {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: 256 };
    // SAFETY: prlimit only reads `limit`; the process is our child.
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) }, 0);
}

/// A betwixt limited to 256 descriptors (`prlimit --nofile=256:256`), one shard. 400 clients
/// connect (from 4 threads) and stay: each is served or refused (reset or closed) within
/// seconds. Then the limit is set to exactly the descriptors in use, so that `accept` itself
/// fails: 30 more clients are each refused with a reset (they used to wait in the accept queue,
/// connected and unanswered, until a descriptor freed), and so are 5 clients of the API. Once
/// they have all gone, new clients are served again.
#[test]
fn out_of_descriptors_excess_clients_are_refused_and_service_recovers() {
    let _heavy = heavy();
    let echo = light_echo();
    let (api, port) = (free_port(), free_port());
    let dir = TempDir::new("fd");
    let config = dir
        .write("betwixt.toml", &Proxy::config(api, &server("s", port, &[format!("127.0.0.1:{echo}")], "")));
    let args = ["--nofile=256:256", "--", common::binary(), "-c", config.to_str().unwrap(), "--shards", "1"];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let proxy = Proxy { bx: Betwixt::start_command("prlimit", &args, &[], dir), api: Client::http(api) };
    proxy.bx.wait_listening(port);
    proxy.bx.wait_listening(api);

    let (outcomes, mut held): (Vec<_>, Vec<_>) = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    (0..100).map(|i| attempt(port, &format!("client {t}-{i}"))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).unzip()
    });
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    let mut refusals = std::collections::BTreeMap::new();
    for refusal in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        *refusals.entry(refusal.clone()).or_insert(0) += 1;
    }
    eprintln!("under 256 descriptors: {served} served, refused: {refusals:?}");
    assert!(served >= 20, "only {served} of 400 served under 256 descriptors");
    assert!(served < 400, "all 400 served: the descriptor limit did not bite");

    // Every descriptor taken: the kernel hands out the lowest free one, so a limit there
    // leaves betwixt none. While accepts fail, betwixt frees its spare descriptor for an
    // instant every 10 ms: the largest lowest-free over a few looks is the one in use. A
    // descriptor open only for a moment (on a loaded machine, one still being closed) would
    // raise that look: the smallest of three such looks is taken.
    let pid = proxy.bx.pid();
    let lowest_free = || {
        let open: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect();
        (0..).find(|fd| !open.contains(fd)).unwrap()
    };
    let look = || {
        (0..8)
            .map(|_| {
                thread::sleep(Duration::from_millis(3));
                lowest_free()
            })
            .max()
            .unwrap()
    };
    let limit = (0..3).map(|_| look()).min().unwrap();
    set_soft_nofile(pid, limit);
    for i in 0..30 {
        let (outcome, stream) = attempt(port, &format!("late client {i}"));
        assert_eq!(outcome, Err(ErrorKind::ConnectionReset.to_string()), "late client {i}");
        held.push(stream);
    }
    // The API's clients too: the control thread keeps a reserve of its own. One may be served
    // now and then: every 10 ms a shard frees its spare descriptor for an instant, and an API
    // accept in that instant gets it. None may hang, and most are refused.
    let mut api_resets = 0;
    for i in 0..5 {
        let (outcome, stream) = attempt(api, "GET /ping HTTP/1.1\r\nHost: betwixt\r\n\r\n");
        match outcome {
            Ok(()) => {}
            Err(e) if e == ErrorKind::ConnectionReset.to_string() => api_resets += 1,
            Err(e) => panic!("late API client {i}: {e}"),
        }
        held.push(stream);
    }
    assert!(api_resets >= 3, "only {api_resets} of 5 late API clients refused");
    set_soft_nofile(pid, 256);
    drop(held);
    assert!(wait_until(Duration::from_secs(10), || proxy.active("s") == 0), "connections not released");
    for i in 0..50 {
        round_trip_time(port, format!("after {i}").as_bytes());
    }
    proxy.stop_cleanly();
}

/// A flood of 2,000 connections held open through one shard: betwixt's resident memory stays
/// under 64 MiB and grows by less than 16 KiB per connection (documented in hardening.md;
/// measured: 28 MiB idle, 37 MiB with the 2,000, in a debug build), every connection still
/// echoes afterwards, and once they close the server counts none.
#[test]
fn a_flood_of_connections_stays_under_the_memory_ceiling() {
    let _heavy = heavy();
    let (proxy, port) = light_echo_proxy("1");
    let idle_rss = rss_kib(proxy.bx.pid());
    let mut flood = idle_clients(port, 2000);
    let rss = rss_kib(proxy.bx.pid());
    eprintln!("betwixt RSS: {idle_rss} KiB idle, {rss} KiB with 2000 connections");
    assert!(rss < 64 * 1024, "RSS {rss} KiB with 2000 connections (idle: {idle_rss} KiB)");
    assert!(rss.saturating_sub(idle_rss) < 2000 * 16, "RSS grew from {idle_rss} to {rss} KiB");
    for stream in flood.iter_mut().step_by(50) {
        stream.write_all(b"still").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"still");
    }
    drop(flood);
    assert!(wait_until(Duration::from_secs(10), || proxy.active("s") == 0));
    proxy.stop_cleanly();
}

/// Each backend of `server` as (live, total, active, refused connections).
fn backend_stats(proxy: &Proxy, server: &str) -> Vec<(bool, u64, u64, u64)> {
    let stats = proxy.stats(server);
    let backends = stats.get("backends").and_then(|b| b.as_array().cloned()).unwrap_or_default();
    backends
        .iter()
        .map(|b| {
            let s = b.get("stats").unwrap();
            let number = |k: &str| s.get(k).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{k} in {b}"));
            (
                s.get("live").and_then(|v| v.as_bool()).unwrap(),
                number("total_connections"),
                number("active_connections"),
                number("refused_connections"),
            )
        })
        .collect()
}

/// A backend whose exec healthcheck alternates pass and fail every 300 ms while 24 streams run
/// and new ones start all the time: no stream is cut (marking a backend down leaves its open
/// connections alone), both backends take traffic, no connect is refused, and at the end every
/// connection is counted once: the backends' totals add up to the clients that came.
#[test]
fn healthcheck_flapping_under_load_loses_no_connection() {
    let (steady, flapping) =
        (Backend::start("steady", Behaviour::Echo), Backend::start("flapping", Behaviour::Echo));
    let dir = TempDir::new("flap");
    let up = dir.0.join("up");
    let script = dir.write_executable(
        "check",
        &format!(
            "#!/bin/sh\nif [ \"$2\" = {} ] && [ ! -e {} ]; then echo 0; else echo 1; fi\n",
            flapping.port,
            up.display()
        ),
    );
    let port = free_port();
    let check = format!(
        "balance = \"roundrobin\"\n[servers.s.healthcheck]\nkind = \"exec\"\ninterval = \"100ms\"\ntimeout = \"1s\"\n\
         exec_command = \"{}\"\nexec_expected_positive_output = \"1\"\nexec_expected_negative_output = \"0\"\n",
        script.display()
    );
    // The healthcheck section must come after the server's own keys and before discovery.
    let config = format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\n{check}\n[servers.s.discovery]\nkind = \"static\"\n\
         static_list = [\"{}\", \"{}\"]\n",
        steady.line(),
        flapping.line()
    );
    std::fs::write(&up, "").unwrap();
    let proxy = Proxy::start(&config, &[port], "2");
    // The flapper runs until every client has started, and clients start one at a time, so
    // arrivals fall in both phases whatever the machine's pace (waves of clients started together
    // could all land in down phases).
    let flapping_done = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (up, done) = (up.clone(), flapping_done.clone());
        thread::spawn(move || {
            let mut down = false;
            while !done.load(Ordering::Relaxed) {
                down = !down;
                if down {
                    let _ = std::fs::remove_file(&up);
                } else {
                    std::fs::write(&up, "").unwrap();
                }
                thread::sleep(Duration::from_millis(300));
            }
            std::fs::write(&up, "").unwrap();
        })
    };
    let (mut streams, mut seen_down, mut seen_up) = (Vec::new(), false, false);
    for client in 0..24 {
        streams.push(echo_stream(port, client, 512 * 1024, Duration::from_millis(10)));
        let live: Vec<bool> = backend_stats(&proxy, "s").iter().map(|b| b.0).collect();
        seen_down |= live.contains(&false);
        seen_up |= live.iter().all(|&l| l);
        thread::sleep(Duration::from_millis(110));
    }
    flapping_done.store(true, Ordering::Relaxed);
    join_all(streams);
    flapper.join().unwrap();
    assert!(seen_down && seen_up, "the healthcheck did not flap (down seen: {seen_down}, up: {seen_up})");
    assert!(wait_until(Duration::from_secs(5), || proxy.active("s") == 0));
    let backends = backend_stats(&proxy, "s");
    let totals: Vec<u64> = backends.iter().map(|b| b.1).collect();
    assert_eq!(totals.iter().sum::<u64>(), 24, "backend totals {backends:?} for 24 clients");
    assert!(totals.iter().all(|&t| t > 0), "one backend took no traffic: {backends:?}");
    assert!(backends.iter().all(|b| b.2 == 0 && b.3 == 0), "{backends:?}");
    proxy.stop_cleanly();
}
