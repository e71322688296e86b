//! Peers that misbehave at the transport level: a side that vanishes (reset) or goes silent
//! while the other side does not read, a backend that resets after its reply, and faults that
//! repeat thousands of times. Every connection must be released (sockets, buffer, and its place
//! under `max_connections`, seen through the API's `active_connections`), an abort must reach
//! the other side as an abort, and the log must stay readable.
//!
//! The backends here are plain listeners the test drives by hand, so it decides exactly when
//! a backend reads, writes or resets.

mod api_client;
mod common;

use api_client::{u64_at, Client};
use common::{free_port, read_until_end, reported_count, reset, wait_until, Betwixt};
use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A proxied connection with both ends in the test's hands.
struct Pair {
    client: TcpStream,
    backend: TcpStream,
}

/// betwixt with the API on and one server `s` in front of a listener the test accepts from.
struct Proxy {
    bx: Betwixt,
    api: Client,
    port: u16,
    listener: TcpListener,
}

impl Proxy {
    fn start(settings: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let backend = listener.local_addr().unwrap();
        let (api, port) = (free_port(), free_port());
        let config = format!(
            "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
             [servers.s]\nbind = \"127.0.0.1:{port}\"\n{settings}\n\
             [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"{backend}\"]\n"
        );
        let bx = Betwixt::start(&config, &["--shards", "1"], &[port, api]);
        Proxy { bx, api: Client::http(api), port, listener }
    }

    fn connect(&self) -> Pair {
        let client = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let backend = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("betwixt did not connect to the backend: {e}"),
            }
        };
        backend.set_nonblocking(false).unwrap();
        assert!(self.active_becomes(1), "the connection is not counted");
        Pair { client, backend }
    }

    fn active_connections(&self) -> u64 {
        u64_at(&self.api.get_json("/servers/s/stats"), "active_connections")
    }

    /// Whether `active_connections` reaches `n` within 8 s (generous: tests share the CPU).
    fn active_becomes(&self, n: u64) -> bool {
        wait_until(Duration::from_secs(8), || self.active_connections() == n)
    }
}

/// Writes from `stream` until nothing more goes out for 300 ms: every buffer between it and a
/// peer that does not read is full, so betwixt's direction toward that peer waits on a write.
fn fill(stream: &TcpStream) -> usize {
    stream.set_nonblocking(true).unwrap();
    let chunk = [0x5Au8; 64 * 1024];
    let (mut sent, mut stalled_since) = (0, Instant::now());
    while stalled_since.elapsed() < Duration::from_millis(300) {
        match (&*stream).write(&chunk) {
            Ok(n) => {
                sent += n;
                stalled_since = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("write failed while filling: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    assert!(sent > 256 * 1024, "only {sent} bytes went out");
    sent
}

/// Reads until the stream ends (a read timeout of 8 s fails the test).
fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Result<(), ErrorKind>) {
    read_until_end(stream, Duration::from_secs(8))
}

/// Bytes this socket has queued that its peer has not acknowledged yet.
fn unacknowledged(stream: &TcpStream) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through the pointer.
    assert_eq!(unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) }, 0);
    queued as usize
}

/// Waits until the peer's kernel has every byte this socket sent (not necessarily read).
fn wait_acknowledged(stream: &TcpStream) {
    assert!(
        wait_until(Duration::from_secs(8), || unacknowledged(stream) == 0),
        "the peer did not take the bytes"
    );
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The client pushes data at a backend that never reads, then resets. betwixt is not reading
/// the client at that moment (its buffers toward the backend are full), yet it must notice the
/// reset, release the connection and pass the reset on to the backend.
#[test]
fn client_reset_while_backend_does_not_read_releases_the_connection() {
    sender_resets_while_receiver_does_not_read(true);
}

/// The mirror image: the backend pushes a reply at a client that never reads, then resets.
#[test]
fn backend_reset_while_client_does_not_read_releases_the_connection() {
    sender_resets_while_receiver_does_not_read(false);
}

fn sender_resets_while_receiver_does_not_read(client_sends: bool) {
    let proxy = Proxy::start("");
    let Pair { client, backend } = proxy.connect();
    let (sender, mut receiver) = if client_sends { (client, backend) } else { (backend, client) };
    fill(&sender);
    reset(sender);
    assert!(proxy.active_becomes(0), "the connection outlived the reset of its sender");
    let (_, end) = read_to_end(&mut receiver);
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the receiver must see the sender's abort");
}

/// A half-close is not a reset: a client that sends its FIN while its bytes wait for a slow
/// backend still gets every byte delivered, and then the backend's reply.
#[test]
fn client_half_close_while_backend_does_not_read_still_delivers() {
    let proxy = Proxy::start("");
    let Pair { mut client, mut backend } = proxy.connect();
    let sent = fill(&client);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // betwixt sees the FIN while blocked
    assert_eq!(proxy.active_connections(), 1, "a half-closed connection was dropped");
    let (received, end) = read_to_end(&mut backend);
    assert_eq!((received.len(), end), (sent, Ok(())), "the client's bytes and FIN must arrive");
    backend.write_all(b"reply").unwrap();
    drop(backend);
    let (reply, end) = read_to_end(&mut client);
    assert_eq!((reply.as_slice(), end), (&b"reply"[..], Ok(())));
    assert!(proxy.active_becomes(0));
}

/// Idle timeouts count time a direction spends stuck behind a peer that does not read: a
/// connection on which nothing has moved for the timeout is closed, whichever side it waits on.
#[test]
fn idle_timeouts_fire_while_a_direction_waits_on_a_write() {
    for (timeout, stuck_from_client) in [("client_idle_timeout", true), ("backend_idle_timeout", false)] {
        let proxy = Proxy::start(&format!("{timeout} = \"1s\""));
        let Pair { client, backend } = proxy.connect();
        let (sender, receiver) = if stuck_from_client { (client, backend) } else { (backend, client) };
        fill(&sender);
        let filled = Instant::now();
        assert_eq!(proxy.active_connections(), 1, "{timeout}: closed while bytes were moving");
        assert!(proxy.active_becomes(0), "{timeout} did not close a connection stuck on a write");
        let waited = filled.elapsed();
        assert!(waited >= Duration::from_millis(500), "{timeout}: closed after only {waited:?}");
        // Both peers learn that the connection is gone.
        for mut end in [sender, receiver] {
            end.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
            let (_, ended) = read_to_end(&mut end);
            assert!(matches!(ended, Ok(()) | Err(ErrorKind::ConnectionReset)), "{timeout}: {ended:?}");
        }
        drop(proxy.bx);
    }
}

/// A backend that sends a reply and then resets: the client must receive every byte the
/// backend sent before its reset, and then the reset, not a clean end of stream that would make
/// a truncated reply look complete.
#[test]
fn backend_reset_after_reply_reaches_client_as_reset() {
    let proxy = Proxy::start("");
    let Pair { mut client, mut backend } = proxy.connect();
    let reply = pattern(300_000);
    let writer = std::thread::spawn(move || {
        backend.write_all(&reply).unwrap();
        // Reset as soon as betwixt's kernel holds it all, read or not by betwixt.
        wait_acknowledged(&backend);
        reset(backend);
    });
    let (received, end) = read_to_end(&mut client);
    writer.join().unwrap();
    assert_eq!(received.len(), 300_000, "bytes sent before the reset were lost");
    assert!(received == pattern(300_000), "the reply arrived corrupted");
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the backend's reset reached the client as a clean end");
    assert!(proxy.active_becomes(0));
}

/// The mirror image: a client that aborts after sending must not look to the backend like a
/// client that finished its request.
#[test]
fn client_reset_after_request_reaches_backend_as_reset() {
    let proxy = Proxy::start("");
    let Pair { mut client, mut backend } = proxy.connect();
    let request = pattern(100_000);
    client.write_all(&request).unwrap();
    wait_acknowledged(&client);
    reset(client);
    let (received, end) = read_to_end(&mut backend);
    assert!(received == request, "bytes sent before the reset were lost ({} of 100000)", received.len());
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the client's reset reached the backend as a clean end");
    assert!(proxy.active_becomes(0));
}

/// Every connection to a server whose only backend refuses is a warning; thousands a second
/// must not mean thousands of log lines. What is left out is counted in the next line written.
#[test]
fn backend_failure_warnings_are_rate_limited() {
    let held = common::RefusingPort::new(); // every connect is refused
    let refusing = held.port;
    let port = free_port();
    let config = format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{refusing}\"]\n"
    );
    let bx = Betwixt::start(&config, &["--shards", "1"], &[port]);
    let attempts = 300;
    let started = Instant::now();
    for _ in 0..attempts {
        assert!(common::closed_without_data(port, Duration::from_secs(5)));
    }
    let flood_took = started.elapsed();
    // One more after a pause: the first line of a new second reports what was left out.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(common::closed_without_data(port, Duration::from_secs(5)));
    let failed = format!("backend 127.0.0.1:{refusing} failed");
    let ok = wait_until(Duration::from_secs(5), || {
        bx.log_text().lines().filter(|l| l.contains(&failed)).map(reported_count).sum::<u64>() == attempts + 1
    });
    let log = bx.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&failed)).collect();
    assert!(ok, "every failure must be written or counted once:\n{}", lines.join("\n"));
    // At most 10 lines per second of flood (plus the second it started in and the last one).
    let limit = 10 * (flood_took.as_secs() as usize + 2) + 1;
    assert!(lines.len() <= limit.min(attempts as usize / 2), "{} lines in {flood_took:?}", lines.len());
    assert!(lines.last().unwrap().ends_with("similar messages suppressed)"), "{}", lines.last().unwrap());
}

/// Out of descriptors, every accept fails, and betwixt retries every 10 ms (a shard) or 50 ms
/// (the API) for as long as a client waits: that must not mean a log line per retry.
#[test]
fn accept_failure_warnings_are_rate_limited() {
    let backend = common::backends::Backend::start("b", common::backends::Behaviour::Named);
    let (port, api) = (free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [servers.s]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n",
        backend.line()
    );
    let bx = Betwixt::start(&config, &["--shards", "1"], &[port, api]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
            assert_eq!(common::read_line(&mut stream).as_deref(), Some("b"));
            stream
        })
        .collect();
    // The kernel gives out the lowest free descriptor: a limit there leaves betwixt none.
    let open: Vec<u64> = std::fs::read_dir(format!("/proc/{}/fd", bx.pid()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).unwrap();
    let limit = libc::rlimit { rlim_cur: lowest_free, rlim_max: lowest_free };
    // SAFETY: prlimit only reads `limit`; the process is our child.
    assert_eq!(unsafe { libc::prlimit(bx.pid(), libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) }, 0);
    // The third waits in the accept queue while every accept fails.
    let waiting = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accept_failed = |line: &&str| line.contains("accept failed:") && line.contains("Too many open files");
    let flooded = wait_until(Duration::from_secs(8), || {
        bx.log_text().lines().filter(accept_failed).map(reported_count).sum::<u64>() >= 150
    });
    let log = bx.log_text();
    let lines: Vec<&str> = log.lines().filter(accept_failed).collect();
    assert!(flooded, "accepts did not keep failing:\n{log}");
    // 150 failures take 1.5 s at one per 10 ms: with 10 lines a second, 40 is generous.
    let failures: u64 = lines.iter().map(|l| reported_count(l)).sum();
    assert!(lines.len() <= 40, "{} lines for {failures} failures", lines.len());
    assert!(lines.iter().any(|l| l.ends_with("similar messages suppressed)")), "{}", lines.join("\n"));

    // The API's accept loop (also the metrics' and ACME's): 40 failures take 2 s at one per
    // 50 ms, and a line each would never say that some were suppressed. Unlike a shard's, this
    // loop waits for readiness, and a refused client leaves nothing to retry for; so a new
    // client arrives at every look at the log (each is refused in turn).
    let api_failed = |line: &&str| line.contains("api: accept failed:");
    let flooded = wait_until(Duration::from_secs(8), || {
        drop(TcpStream::connect(("127.0.0.1", api)));
        bx.log_text().lines().filter(api_failed).map(reported_count).sum::<u64>() >= 40
    });
    let log = bx.log_text();
    let lines: Vec<&str> = log.lines().filter(api_failed).collect();
    assert!(flooded, "the API's accepts did not keep failing:\n{log}");
    assert!(lines.iter().any(|l| l.ends_with("similar messages suppressed)")), "{}", lines.join("\n"));
    drop((held, waiting));
}
