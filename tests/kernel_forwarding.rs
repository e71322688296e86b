//! `[runtime] forwarding = "kernel"`: plain TCP connections moved by a BPF sockmap. Each test
//! checks that the kernel did carry the bytes (no byte was spliced or copied by a shard: the
//! bulk tests would splice otherwise, and the start log says so), and what a user-space
//! transfer guarantees still holds: byte-exact streams, half-close in order, faults passed on,
//! idle timeouts, counters, bounded memory behind a receiver that does not read.

mod api_client;
mod common;

use api_client::{counter_sum, u64_at, Client};
use common::backends::{one_connection_backend, pattern_byte, Backend, Behaviour};
use common::{echo_streams_at_once, free_port, read_until_end, wait_until, Betwixt};
use sonic_rs::JsonValueTrait;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// A server `k` to `backend` under kernel forwarding, with metrics and the API on; `extra` goes
/// into the server's section. Connections are handed to the kernel at once, so that each test
/// exercises the kernel's path from the first byte.
fn start(backend_port: u16, extra: &str) -> (Betwixt, u16, u16) {
    start_with(backend_port, "kernel_forwarding_after_reads = 0", extra)
}

/// `start`, with `runtime` added to the `[runtime]` section.
fn start_with(backend_port: u16, runtime: &str, extra: &str) -> (Betwixt, u16, u16) {
    let (port, api) = (free_port(), free_port());
    let config = format!(
        "[runtime]\nforwarding = \"kernel\"\n{runtime}\n[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\
         [servers.k]\nbind = \"127.0.0.1:{port}\"\n{extra}\n[servers.k.discovery]\nkind = \"static\"\n\
         static_list = [\"127.0.0.1:{backend_port} weight=1\"]\n",
        metrics = free_port(),
    );
    let dir = common::TempDir::new("kf");
    let path = dir.write("betwixt.toml", &config);
    let args: Vec<&std::ffi::OsStr> =
        vec!["-c".as_ref(), path.as_os_str(), "--shards".as_ref(), "1".as_ref()];
    // Debug lines of the kernel path: one says each attach.
    let log = [("RUST_LOG", "info,betwixt::kernel::forward=debug".to_string())];
    let betwixt = Betwixt::start_args(&args, &log, dir);
    for listener in [port, api] {
        betwixt.wait_listening(listener);
    }
    if betwixt.log_text().contains("cannot set up the BPF sockmap") {
        panic!("bpf() refused on this machine: kernel forwarding cannot be tested:\n{}", betwixt.log_text());
    }
    assert!(betwixt.log_text().contains("kernel forwarding on"), "log:\n{}", betwixt.log_text());
    (betwixt, port, api)
}

/// How many connections betwixt handed to the kernel (its debug log says so for each).
fn attached(betwixt: &Betwixt) -> usize {
    betwixt.log_text().matches("kernel forwarding: connection attached").count()
}

/// With the default hand-over, a connection starts in user space and goes to the kernel only
/// after `kernel_forwarding_after_reads` reads: one-request connections never do, a
/// conversation does, and its bytes stay exact across the hand-over.
#[test]
fn short_connections_stay_in_user_space_and_conversations_are_handed_over() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (betwixt, port, _) = start_with(backend.port, "kernel_forwarding_after_reads = 6", "");
    let exchange = |stream: &mut TcpStream, round: usize| {
        let request = format!("request {round} {}\n", "y".repeat(round % 200));
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = vec![0; request.len()];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, request.as_bytes(), "round {round}");
    };
    for round in 0..5 {
        let mut stream = connect(port);
        exchange(&mut stream, round);
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(attached(&betwixt), 0, "a one-request connection was handed over");
    let mut stream = connect(port);
    for round in 0..300 {
        exchange(&mut stream, round);
    }
    assert!(
        wait_until(Duration::from_secs(5), || attached(&betwixt) == 1),
        "not handed over:\n{}",
        betwixt.log_text()
    );
    assert_not_spliced(&betwixt);
}

/// A bulk stream is spliced in user space from its first large read, and never handed over.
#[test]
fn a_bulk_stream_stays_spliced_in_user_space() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (betwixt, port, _) = start_with(backend.port, "", "");
    let data: Vec<u8> = (0..8 * MIB).map(pattern_byte).collect();
    let mut stream = connect(port);
    let writer_data = data.clone();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&writer_data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let (echoed, end) = read_until_end(&mut stream, Duration::from_secs(20));
    sender.join().unwrap();
    assert_eq!(end, Ok(()));
    assert!(echoed == data, "the echo differs");
    let spliced = counter_sum(metrics_port(&betwixt), "betwixt_shard_spliced_bytes_total");
    assert!(spliced > 0, "nothing was spliced");
    assert_eq!(attached(&betwixt), 0, "a bulk stream was handed over");
}

fn metrics_port(betwixt: &Betwixt) -> u16 {
    let config = std::fs::read_to_string(betwixt.dir.0.join("betwixt.toml")).unwrap();
    let at = config.find("[metrics]").unwrap();
    let bind = &config[at..];
    let start = bind.find("127.0.0.1:").unwrap() + "127.0.0.1:".len();
    bind[start..].split('"').next().unwrap().parse().unwrap()
}

/// A client of `port` whose reads give up after 10 s.
fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// No byte went through a shard's pipes: the kernel moved them.
fn assert_not_spliced(betwixt: &Betwixt) {
    let spliced = counter_sum(metrics_port(betwixt), "betwixt_shard_spliced_bytes_total");
    assert_eq!(spliced, 0, "a shard spliced {spliced} bytes: user-space transfer ran");
}

#[test]
fn bulk_both_ways_is_byte_exact_and_half_close_passes_in_order() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (betwixt, port, _) = start(backend.port, "");
    echo_streams_at_once(port, 2, 32 * MIB);
    assert_not_spliced(&betwixt);
}

#[test]
fn client_half_close_still_gets_the_whole_reply() {
    let reply_len = 3 * MIB + 17;
    let backend = Backend::start("late", Behaviour::ReplyAfterEof { reply_len });
    let (betwixt, port, _) = start(backend.port, "");
    for _ in 0..5 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(&vec![b'q'; 100_000]).unwrap();
        // The end of stream comes once the connection is attached (a client whose FIN is in
        // before that is forwarded in user space: the kernel takes only open sockets).
        thread::sleep(Duration::from_millis(200));
        stream.write_all(&vec![b'q'; 100_000]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let (reply, end) = read_until_end(&mut stream, Duration::from_secs(20));
        assert_eq!(end, Ok(()));
        assert_eq!(reply.len(), reply_len);
        assert!(reply.iter().enumerate().all(|(i, &b)| b == pattern_byte(i)), "reply corrupted");
    }
    assert_not_spliced(&betwixt);
}

/// `half_close = false` under kernel forwarding: the backend's reply and FIN reach the client
/// whole, then both connections are closed with the client still holding its socket, and
/// what the client sends after that never reaches the backend.
#[test]
fn half_close_off_closes_both_once_the_backends_reply_is_through() {
    let reply_len = 2 * MIB + 5;
    let (backend_port, backend) = one_connection_backend(move |mut stream| {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut request = [0u8; 7];
        stream.read_exact(&mut request).unwrap();
        // Once attached (the hand-over is at once, as the client's request is read).
        thread::sleep(Duration::from_millis(200));
        let reply: Vec<u8> = (0..reply_len).map(pattern_byte).collect();
        stream.write_all(&reply).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let (after, _) = read_until_end(&mut stream, Duration::from_secs(10));
        after
    });
    let (betwixt, port, api) = start(backend_port, "half_close = false");
    let mut stream = connect(port);
    stream.write_all(b"request").unwrap();
    let (reply, end) = read_until_end(&mut stream, Duration::from_secs(20));
    assert_eq!((reply.len(), end), (reply_len, Ok(())));
    assert!(reply.iter().enumerate().all(|(i, &b)| b == pattern_byte(i)), "reply corrupted");
    let api = Client::http(api);
    let closed = wait_until(Duration::from_secs(5), || {
        u64_at(&api.get_json("/servers/k/stats"), "active_connections") == 0
    });
    assert!(closed, "the connection is still open after the backend's end of stream");
    let _ = stream.write_all(b"after");
    let _ = stream.shutdown(Shutdown::Write);
    assert_eq!(backend.join().unwrap(), b"", "bytes reached the backend after its FIN");
    assert_eq!(attached(&betwixt), 1, "the connection was not handed to the kernel");
    assert_not_spliced(&betwixt);
}

/// A client whose request and FIN are in before the attach (the kernel takes only open
/// connections) is forwarded in user space, whole.
#[test]
fn a_client_that_ends_before_the_attach_is_served_in_user_space() {
    let reply_len = 100_000;
    let backend = Backend::start("late", Behaviour::ReplyAfterEof { reply_len });
    let (_betwixt, port, _) = start(backend.port, "");
    for _ in 0..10 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"short request").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let (reply, end) = read_until_end(&mut stream, Duration::from_secs(10));
        assert_eq!((reply.len(), end), (reply_len, Ok(())));
    }
}

/// The client's FIN arrives while the kernel still holds most of its bytes for a backend that
/// reads late: the FIN must wait for them (passed on at once, it would cut the stream short).
#[test]
fn end_of_stream_waits_for_the_bytes_held_for_a_late_reader() {
    let (backend_port, late) = one_connection_backend(move |mut stream| {
        thread::sleep(Duration::from_secs(1));
        let (got, end) = read_until_end(&mut stream, Duration::from_secs(20));
        stream.write_all(got.len().to_string().as_bytes()).unwrap();
        (got.iter().enumerate().all(|(i, &b)| b == pattern_byte(i)), end)
    });
    let (_betwixt, port, _) = start(backend_port, "");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    thread::sleep(Duration::from_millis(200));
    let request: Vec<u8> = (0..8 * MIB).map(pattern_byte).collect();
    stream.write_all(&request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (reply, end) = read_until_end(&mut stream, Duration::from_secs(20));
    let (intact, backend_end) = late.join().unwrap();
    assert_eq!((backend_end, end), (Ok(()), Ok(())));
    assert_eq!(
        String::from_utf8_lossy(&reply),
        (8 * MIB).to_string(),
        "bytes the backend got before the FIN"
    );
    assert!(intact, "the bytes reached the backend out of order or changed");
}

#[test]
fn many_request_response_round_trips() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (_betwixt, port, _) = start(backend.port, "");
    let mut stream = connect(port);
    for round in 0..2000u32 {
        let request = format!("request {round} {}\n", "x".repeat((round % 300) as usize));
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = vec![0; request.len()];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, request.as_bytes(), "round {round}");
    }
}

/// Bytes that wait in a socket when it is attached are passed on: the client's, sent while
/// betwixt connects to the backend and as it attaches, and a backend's banner, sent on accept.
#[test]
fn bytes_sent_at_connect_and_a_backend_that_speaks_first_both_pass() {
    let backend = Backend::start("banner", Behaviour::Named);
    let echo = Backend::start("echo", Behaviour::Echo);
    let (_b1, named_port, _) = start(backend.port, "");
    let (_b2, echo_port, _) = start(echo.port, "");
    for _ in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", named_port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = [0u8; 7];
        stream.read_exact(&mut line).expect("the backend's banner");
        assert_eq!(&line, b"banner\n");
    }
    for i in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", echo_port)).unwrap();
        // Written in small pieces from the first instant on, so that some arrive while the
        // sockets are being attached.
        let pieces: Vec<Vec<u8>> = (0..50).map(|p| format!("{i}:{p};").into_bytes()).collect();
        for piece in &pieces {
            stream.write_all(piece).unwrap();
        }
        let expected = pieces.concat();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = vec![0; expected.len()];
        stream.read_exact(&mut reply).expect("the echo of everything sent at connect");
        assert_eq!(reply, expected);
    }
}

#[test]
fn client_reset_resets_a_backend_that_does_not_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = listener.local_addr().unwrap().port();
    let (_betwixt, port, _) = start(backend_port, "");
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut backend, _) = listener.accept().unwrap();
    // Attached (the client's first bytes went through the kernel), then reset.
    (&client).write_all(b"hello").unwrap();
    let mut hello = [0u8; 5];
    backend.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    backend.read_exact(&mut hello).unwrap();
    common::reset(client);
    let (_, end) = read_until_end(&mut backend, Duration::from_secs(5));
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the backend must see an abort");
}

/// A client whose direction betwixt carries (its backend fell behind and never reads) resets
/// while betwixt waits to write its bytes: betwixt is not reading the client then, but watches
/// it for a hang-up, and resets the backend, which would otherwise hold the connection open.
#[test]
fn client_reset_while_its_handed_over_bytes_wait_resets_the_backend() {
    let (backend_port, holder) = one_connection_backend(|stream| {
        // Never reads; looks for the reset betwixt passes on.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(e)) = stream.take_error() {
                return Some((e.kind(), started.elapsed()));
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    });
    let (_betwixt, port, _) = start(backend_port, "");
    let data: Vec<u8> = (0..32 * MIB).map(pattern_byte).collect();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let held = write_for(&mut client, &data, 0, Instant::now() + Duration::from_millis(2500));
    assert!(held < 28 * MIB, "the client was not held ({held} bytes out)");
    let reset_at = Instant::now();
    common::reset(client);
    let seen = holder.join().unwrap();
    let Some((kind, _)) = seen else { panic!("the backend was never reset") };
    assert_eq!(kind, ErrorKind::ConnectionReset);
    assert!(reset_at.elapsed() < Duration::from_secs(5), "the reset took {:?}", reset_at.elapsed());
}

/// A client that sent its request and FIN, then resets while the reply still streams: its
/// socket is no longer watched by a poll (its FIN came), yet the backend is reset too.
#[test]
fn client_reset_after_its_fin_resets_the_backend() {
    let (backend_port, streamer) = one_connection_backend(|mut stream| {
        let mut request = [0u8; 5];
        stream.read_exact(&mut request).unwrap();
        let chunk = vec![b'r'; 64 * 1024];
        let started = Instant::now();
        // Streams until the write fails (the reset passed on) or 10 s pass.
        while started.elapsed() < Duration::from_secs(10) {
            if let Err(e) = stream.write_all(&chunk) {
                return Some(e.kind());
            }
            thread::sleep(Duration::from_millis(5));
        }
        None
    });
    let (_betwixt, port, _) = start(backend_port, "");
    let mut stream = connect(port);
    thread::sleep(Duration::from_millis(200));
    stream.write_all(b"hello").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut first = [0u8; 1000];
    stream.read_exact(&mut first).unwrap();
    common::reset(stream);
    let failure = streamer.join().unwrap();
    assert!(
        matches!(failure, Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)),
        "the backend went on streaming to a reset client: {failure:?}"
    );
}

/// The counts move while a connection lives (once a second), not only at its end.
#[test]
fn counts_of_a_live_connection_move() {
    let echo = Backend::start("echo", Behaviour::Echo);
    let (_betwixt, port, api) = start(echo.port, "");
    let mut stream = connect(port);
    let message = vec![b'm'; 300_000];
    stream.write_all(&message).unwrap();
    let mut echoed = vec![0; message.len()];
    stream.read_exact(&mut echoed).unwrap();
    let client = Client::http(api);
    let counted = wait_until(Duration::from_secs(5), || {
        let stats = client.get_json("/servers/k/stats");
        stats["tx_total"].as_u64() >= Some(300_000) && stats["rx_total"].as_u64() >= Some(300_000)
    });
    assert!(counted, "stats of a live connection: {}", client.get_json("/servers/k/stats"));
    drop(stream);
}

#[test]
fn backend_reset_resets_the_client() {
    let (backend_port, resetter) = one_connection_backend(move |mut stream| {
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(b"partial reply").unwrap();
        thread::sleep(Duration::from_millis(100));
        common::reset(stream);
    });
    let (_betwixt, port, _) = start(backend_port, "");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"hello").unwrap();
    let (got, end) = read_until_end(&mut stream, Duration::from_secs(10));
    resetter.join().unwrap();
    assert_eq!(got, b"partial reply", "what the backend sent before its reset");
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the client must see an abort, not an end of stream");
}

/// Writes `data[from..]` until `until` passes or all is written; returns how far it got.
fn write_for(stream: &mut TcpStream, data: &[u8], from: usize, until: Instant) -> usize {
    stream.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut sent = from;
    while sent < data.len() && Instant::now() < until {
        let end = (sent + 256 * 1024).min(data.len());
        match stream.write(&data[sent..end]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("write failed after {sent} bytes: {e}"),
        }
    }
    sent
}

/// The kernel's redirect takes a chunk off the sender's socket at once and queues it for the
/// receiver outside TCP's accounting; unbounded, a client writing to a backend that never reads
/// would never be blocked (it pushed 512 MiB in a second before the bound). The program stops
/// redirecting once 1 MiB waits for the backend and leaves the bytes in the client's socket,
/// where TCP closes the client's window; betwixt then carries the direction itself. So the
/// client stalls after the socket buffers on the way and that 1 MiB, and when the backend reads
/// at last it gets every byte, in order.
#[test]
fn a_backend_that_does_not_read_stops_the_client_then_gets_every_byte_in_order() {
    const TOTAL: usize = 64 * MIB;
    let (backend_port, holder) = one_connection_backend(move |mut stream| {
        thread::sleep(Duration::from_secs(3));
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut got = 0usize;
        loop {
            let n = stream.read(&mut buffer).unwrap();
            if n == 0 {
                return got;
            }
            if let Some(k) = (0..n).find(|&k| buffer[k] != pattern_byte(got + k)) {
                panic!("byte {} differs", got + k);
            }
            got += n;
        }
    });
    let (betwixt, port, _) = start(backend_port, "");
    let data: Vec<u8> = (0..TOTAL).map(pattern_byte).collect();
    let mut writer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    let held = write_for(&mut writer, &data, 0, started + Duration::from_millis(2500));
    eprintln!("while the backend did not read, the client got {held} bytes out");
    // Socket buffers on the way (the client's send, betwixt's two, the backend's receive)
    // autotune to at most 4 + 6 + 4 + 6 MiB here; the kernel's queue adds at most ~1 MiB.
    assert!(held < 28 * MIB, "the client pushed {held} bytes into a backend that does not read");
    let sent = write_for(&mut writer, &data, held, Instant::now() + Duration::from_secs(30));
    assert_eq!(sent, TOTAL, "the client was not let go on once the backend read");
    writer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(holder.join().unwrap(), TOTAL);
    assert_not_spliced(&betwixt);
}

/// MemAvailable from /proc/meminfo, in bytes.
fn available_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemAvailable:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Sends `chunk` again and again for at most `limit`, until the stream fails: the bytes sent
/// and the failure.
fn blast(stream: &mut TcpStream, chunk: &[u8], limit: Duration) -> (usize, Option<ErrorKind>) {
    stream.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < limit {
        match stream.write(chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return (sent, Some(e.kind())),
        }
    }
    (sent, None)
}

/// Both sides send without ever reading. Whichever direction's receiver falls 1 MiB behind
/// first while the other's kernel queue is empty is handed to betwixt (its sender is then held
/// by TCP); a direction whose hand-over would have to queue behind the other direction's stuck
/// bytes is not handed over, and at 8 MiB the program condemns the connection: it drops what
/// arrives, and betwixt resets both sides at its next look (within a second). Either way the
/// kernel does not hold whatever they send: both are blocked, or both are reset.
#[test]
fn both_sides_sending_without_reading_are_blocked_or_reset_not_unbounded_memory() {
    const FOR: Duration = Duration::from_secs(4);
    let chunk = vec![5u8; 256 * 1024];
    let backend_chunk = chunk.clone();
    let (backend_port, holder) =
        one_connection_backend(move |mut stream| blast(&mut stream, &backend_chunk, FOR));
    let (_betwixt, port, _) = start(backend_port, "");
    let free_before = available_memory();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sent, outcome) = blast(&mut client, &chunk, FOR);
    let taken = free_before.saturating_sub(available_memory());
    let (backend_sent, backend_outcome) = holder.join().unwrap();
    eprintln!(
        "the client sent {sent} bytes, then {outcome:?}; the backend {backend_sent}, then {backend_outcome:?}; \
         available memory fell by {taken} bytes"
    );
    let reset = |o: Option<ErrorKind>| matches!(o, Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe));
    match (outcome, backend_outcome) {
        (None, None) => {
            // Blocked: what they got out fits the socket buffers on the way and the 1 MiB queue.
            assert!(sent < 32 * MIB && backend_sent < 32 * MIB, "{sent} and {backend_sent} bytes got out");
        }
        // Condemned: dropped bytes hold no memory, so the counts may be large.
        (client, backend) => assert!(reset(client) && reset(backend), "{client:?} / {backend:?}"),
    }
    // Unbounded, the kernel would hold most of what was sent (gigabytes in that time).
    assert!(taken < 512 * MIB as u64, "available memory fell by {taken} bytes");
}

#[test]
fn idle_timeout_closes_a_quiet_connection_but_not_a_busy_one() {
    let echo = Backend::start("echo", Behaviour::Echo);
    let (_betwixt, port, _) = start(echo.port, "client_idle_timeout = \"1s\"");
    // Busy: a message every 300 ms for 2.5 s, each echoed.
    let mut busy = TcpStream::connect(("127.0.0.1", port)).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let quiet = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for i in 0..8 {
        let message = format!("ping {i}\n");
        busy.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0; message.len()];
        busy.read_exact(&mut reply).expect("a busy connection is not idle");
        thread::sleep(Duration::from_millis(300));
    }
    // The quiet one was closed after about 1 s.
    let mut quiet = quiet;
    let started = Instant::now();
    let (_, end) = read_until_end(&mut quiet, Duration::from_secs(5));
    assert_eq!(end, Ok(()), "the idle connection is closed");
    assert!(started.elapsed() < Duration::from_secs(2), "closed at about its idle timeout");
}

#[test]
fn server_stats_count_the_bytes_each_way() {
    let reply_len = 2 * MIB + 3;
    let backend = Backend::start("late", Behaviour::ReplyAfterEof { reply_len });
    let (betwixt, port, api) = start(backend.port, "");
    let request = 1_234_567;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(&vec![b'r'; request]).unwrap();
    thread::sleep(Duration::from_millis(200));
    stream.shutdown(Shutdown::Write).unwrap();
    let (reply, end) = read_until_end(&mut stream, Duration::from_secs(20));
    assert_eq!((reply.len(), end), (reply_len, Ok(())));
    drop(stream);
    let client = Client::http(api);
    let counted = wait_until(Duration::from_secs(5), || {
        let stats = client.get_json("/servers/k/stats");
        stats["rx_total"].as_u64() == Some(reply_len as u64)
            && stats["tx_total"].as_u64() == Some(request as u64)
    });
    assert!(counted, "stats: {}", client.get_json("/servers/k/stats"));
    let stats = client.get_json("/servers/k/stats");
    let b = &stats["backends"][0]["stats"];
    assert_eq!((b["rx"].as_u64(), b["tx"].as_u64()), (Some(reply_len as u64), Some(request as u64)));
    assert_not_spliced(&betwixt);
}

/// Without CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN the kernel refuses the sockmap: betwixt
/// says so once and forwards in user space.
#[test]
fn without_the_capabilities_it_forwards_in_user_space() {
    let Ok(capsh) = which("capsh") else {
        eprintln!("skipped: capsh is not installed");
        return;
    };
    let echo = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let dir = common::TempDir::new("kf");
    let config = format!(
        "[runtime]\nforwarding = \"kernel\"\n[servers.k]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.k.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{} weight=1\"]\n",
        echo.port
    );
    let path = dir.write("betwixt.toml", &config);
    let command = format!("exec {} -c {} --shards 1", common::binary(), path.display());
    let args = ["--drop=cap_bpf,cap_net_admin,cap_sys_admin,cap_perfmon", "--", "-c", command.as_str()];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let betwixt = Betwixt::start_command(&capsh, &args, &[], dir);
    betwixt.wait_listening(port);
    let log = betwixt.log_text();
    assert!(log.contains("cannot set up the BPF sockmap"), "log:\n{log}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"still served").unwrap();
    let mut reply = [0u8; 12];
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"still served");
}

fn which(program: &str) -> Result<String, ()> {
    let out = std::process::Command::new("sh").args(["-c", &format!("command -v {program}")]).output();
    match out {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        _ => Err(()),
    }
}

#[test]
fn check_accepts_kernel_and_warns_of_the_old_opt_in() {
    let dir = common::TempDir::new("kfc");
    let server = "[servers.k]\nbind = \"127.0.0.1:1\"\n[servers.k.discovery]\nkind = \"static\"\n\
                  static_list = [\"127.0.0.1:2\"]\n";
    let plain = dir.write("plain.toml", &format!("[runtime]\nforwarding = \"kernel\"\n{server}"));
    let (status, out, err) = common::run_betwixt(&["check", "--strict", plain.to_str().unwrap()]);
    assert!(status.success(), "{out}{err}");
    let old = dir.write(
        "old.toml",
        &format!("[runtime]\nforwarding = \"kernel\"\nkernel_forwarding_unbounded_memory = true\n{server}"),
    );
    let (status, out, err) = common::run_betwixt(&["check", old.to_str().unwrap()]);
    assert!(status.success(), "{out}{err}");
    assert!(format!("{out}{err}").contains("kernel_forwarding_unbounded_memory"), "{out}{err}");
    let (status, out, err) = common::run_betwixt(&["check", "--strict", old.to_str().unwrap()]);
    assert!(!status.success(), "--strict refuses the warning: {out}{err}");
}
