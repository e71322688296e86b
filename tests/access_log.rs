//! `[access_log]` through the real binary: one line per connection and per UDP session with the
//! bytes the test itself sent and received, the reason a refused connection ended, an output
//! that cannot be written refused up front, lines dropped and counted (never waited for) when
//! the output does not keep up, and the file reopened on SIGHUP after logrotate moved it.

mod common;

use common::backends::{Backend, Behaviour};
use common::*;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

const SIGHUP: i32 = 1;

/// The writer flushes at least once a second; a loaded machine gets ample room.
const LINE_WAIT: Duration = Duration::from_secs(10);

fn access_log_section(path: &Path, format: &str, extra: &str) -> String {
    format!("[access_log]\nenabled = true\noutput = \"{}\"\nformat = \"{format}\"\n{extra}\n", path.display())
}

/// The file's complete lines once there are at least `n` of them.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let found = wait_until(LINE_WAIT, || read().lines().count() >= n);
    assert!(found, "fewer than {n} lines in {}:\n{}", path.display(), read());
    read().lines().map(str::to_string).collect()
}

/// Sends `sent` bytes, half-closes and reads the reply to its end.
fn exchange(port: u16, sent: usize) -> (std::net::SocketAddr, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let local = stream.local_addr().unwrap();
    send_and_half_close(&mut stream, &vec![b'x'; sent]);
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    (local, reply)
}

/// betwixt on `port` logging to `path`, over one backend that replies `reply_len` bytes.
struct Proxied {
    backend: Backend,
    port: u16,
    path: std::path::PathBuf,
    bx: Betwixt,
    _dir: TempDir,
}

impl Proxied {
    fn start(format: &str, reply_len: usize) -> Proxied {
        let backend = Backend::start("b", Behaviour::ReplyAfterEof { reply_len });
        let port = free_port();
        let dir = TempDir::new("alog");
        let path = dir.0.join("access.log");
        let config =
            access_log_section(&path, format, "") + &static_server(port, "roundrobin", &[backend.line()], "");
        let bx = Betwixt::start(&config, &[], &[port]);
        Proxied { backend, port, path, bx, _dir: dir }
    }
}

#[test]
fn a_proxied_connection_is_one_json_line_with_the_bytes_each_way() {
    let Proxied { backend, port, path, .. } = &Proxied::start("json", 70_000);
    let (local, reply) = exchange(*port, 123_457);
    assert_eq!(reply.len(), 70_000);
    let lines = wait_lines(path, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: Value = sonic_rs::from_str(&lines[0]).expect("a JSON object");
    let text = |key: &str| line[key].as_str().map(str::to_string);
    assert_eq!(text("protocol").as_deref(), Some("tcp"));
    assert_eq!(text("server").as_deref(), Some("s"));
    assert_eq!(text("client"), Some(local.to_string()));
    assert_eq!(text("backend"), Some(format!("127.0.0.1:{}", backend.port)));
    assert_eq!(line["bytes_from_client"].as_u64(), Some(123_457));
    assert_eq!(line["bytes_to_client"].as_u64(), Some(70_000));
    assert_eq!(text("stage").as_deref(), Some("transfer"));
    assert_eq!(text("end").as_deref(), Some("done"));
    assert!(line["side"].is_null() && line["error"].is_null() && line["sni"].is_null(), "{line:?}");
    assert!(line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line:?}");
    assert!(text("time").is_some_and(|t| t.ends_with('Z')), "{line:?}");
    assert_eq!(line.as_object().map(|o| o.len()), Some(13), "{line:?}");
}

#[test]
fn refused_connections_log_why() {
    let (denied, dead) = (free_port(), free_port());
    let dir = TempDir::new("alog-refused");
    let path = dir.0.join("access.log");
    // Nothing listens on the backend's port: every connect is refused.
    let refusing = common::RefusingPort::new();
    let nowhere = format!("127.0.0.1:{}", refusing.port);
    let config = access_log_section(&path, "text", "")
        + &static_server(
            denied,
            "roundrobin",
            std::slice::from_ref(&nowhere),
            "[servers.s.access]\ndefault = \"deny\"",
        )
        + &static_server(dead, "roundrobin", &[nowhere], "").replace("servers.s", "servers.t");
    let _bx = Betwixt::start(&config, &[], &[denied, dead]);
    for port in [denied, dead] {
        assert!(closed_without_data(port, Duration::from_secs(10)));
    }
    let lines = wait_lines(&path, 2);
    let of = |server: &str| lines.iter().find(|l| l.contains(&format!(" server={server} "))).cloned();
    let denied = of("s").expect("a line for s");
    assert!(denied.contains(" backend=- bytes_from_client=0 bytes_to_client=0 "), "{denied}");
    assert!(
        denied.contains(" stage=admit end=denied side=client error=\"denied by access rules\""),
        "{denied}"
    );
    let dead = of("t").expect("a line for t");
    assert!(
        dead.contains(" stage=connect end=no_backend side=backend error=\"no backend available\""),
        "{dead}"
    );
}

#[test]
fn a_server_can_opt_out() {
    let backend = Backend::start("b", Behaviour::ReplyAfterEof { reply_len: 2 });
    let (quiet, logged) = (free_port(), free_port());
    let dir = TempDir::new("alog-opt-out");
    let path = dir.0.join("access.log");
    let config = access_log_section(&path, "text", "")
        + &static_server(quiet, "roundrobin", &[backend.line()], "access_log = false")
        + &static_server(logged, "roundrobin", &[backend.line()], "").replace("servers.s", "servers.t");
    let _bx = Betwixt::start(&config, &[], &[quiet, logged]);
    exchange(quiet, 1);
    exchange(logged, 1);
    let lines = wait_lines(&path, 1);
    // The quiet server's connection ended first; a line for it would be out by now, but give
    // the writer another flush interval.
    std::thread::sleep(Duration::from_millis(1500));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(lines[0].contains(" server=t "), "{lines:?}");
}

#[test]
fn an_unwritable_output_fails_check_and_start() {
    let dir = TempDir::new("alog-unwritable");
    let missing = dir.0.join("no-such-dir/access.log");
    let config =
        access_log_section(&missing, "text", "") + &static_server(free_port(), "roundrobin", &[], "");
    let path = dir.write("b.toml", &config);
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("access_log.output: cannot write") && stderr.contains("no-such-dir"), "{stderr}");
    let (status, _, stderr) = run_betwixt(&["-c", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("access_log.output: cannot open") && stderr.contains("no-such-dir"), "{stderr}");
    let config = config.replace("format = \"text\"", "format = \"xml\"");
    let path = dir.write("c.toml", &config);
    let (status, _, stderr) = run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(!status.success() && stderr.contains("access_log.format"), "{stderr}");
}

/// Reads `betwixt_access_log_dropped_records_total` from `/metrics`.
fn dropped(metrics: u16) -> Option<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", metrics)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let line = text.lines().find(|l| l.starts_with("betwixt_access_log_dropped_records_total "))?;
    line.split(' ').nth(1)?.parse().ok()
}

#[test]
fn a_stalled_output_drops_and_counts_lines_but_never_blocks_connections() {
    let backend = Backend::start("b", Behaviour::ReplyAfterEof { reply_len: 10 });
    let (port, metrics) = (free_port(), free_port());
    let dir = TempDir::new("alog-fifo");
    let fifo = dir.0.join("access.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A reader that never reads: betwixt's open succeeds, then its writes stall once the pipe
    // (64 KiB) and the writer's buffer are full.
    use std::os::unix::fs::OpenOptionsExt;
    let _reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
    let config = access_log_section(&fifo, "text", "queue_size = 16")
        + &format!("[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n")
        + &static_server(port, "roundrobin", &[backend.line()], "");
    let bx = Betwixt::start(&config, &[], &[port, metrics]);
    // Each line is about 200 bytes: 2000 of them are far more than the pipe, the buffer and
    // the queue hold.
    for i in 0..2000 {
        let (_, reply) = exchange(port, 1);
        assert_eq!(reply.len(), 10, "connection {i} was not served");
    }
    let counted = wait_until(Duration::from_secs(10), || dropped(metrics).is_some_and(|n| n > 0));
    assert!(counted, "dropped: {:?}", dropped(metrics));
    let warned = wait_until(LINE_WAIT, || bx.log_text().contains("dropped in the last second"));
    assert!(warned, "{}", bx.log_text());
}

#[test]
fn sighup_reopens_a_file_moved_away() {
    let Proxied { port, path, bx, .. } = &Proxied::start("text", 3);
    let (port, path) = (*port, path.as_path());
    let rotated = path.with_extension("log.1");
    exchange(port, 5);
    wait_lines(path, 1);
    std::fs::rename(path, &rotated).unwrap();
    bx.signal(SIGHUP);
    let reopened = wait_until(LINE_WAIT, || bx.log_text().contains("reopened"));
    assert!(reopened, "{}", bx.log_text());
    exchange(port, 7);
    let lines = wait_lines(path, 1);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains(" bytes_from_client=7 "), "{lines:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1);
    assert!(old.contains(" bytes_from_client=5 "), "{old}");
}

#[test]
fn a_udp_session_is_one_line_with_its_datagrams() {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let backend = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buffer) {
            let _ = echo.send_to(&buffer[..n], from);
        }
    });
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = TempDir::new("alog-udp");
    let path = dir.0.join("access.log");
    let server = static_server(port, "roundrobin", &[backend.to_string()], "protocol = \"udp\"");
    let config = access_log_section(&path, "json", "") + &server + "[servers.s.udp]\nmax_responses = 1\n";
    let _bx = Betwixt::start(&config, &[], &[port]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.send_to(&[7u8; 321], ("127.0.0.1", port)).unwrap();
    let mut reply = [0u8; 1024];
    assert_eq!(client.recv(&mut reply).unwrap(), 321);
    let lines = wait_lines(&path, 1);
    let line: Value = sonic_rs::from_str(&lines[0]).unwrap();
    assert_eq!(line["protocol"].as_str(), Some("udp"));
    assert_eq!(line["client"].as_str(), Some(client.local_addr().unwrap().to_string().as_str()));
    assert_eq!(line["backend"].as_str(), Some(backend.to_string().as_str()));
    for key in ["bytes_from_client", "bytes_to_client"] {
        assert_eq!(line[key].as_u64(), Some(321), "{key}: {line:?}");
    }
    for key in ["datagrams_from_client", "datagrams_to_client"] {
        assert_eq!(line[key].as_u64(), Some(1), "{key}: {line:?}");
    }
    assert_eq!(line["end"].as_str(), Some("done"));
}

#[test]
fn lines_of_the_last_connections_are_written_before_exit() {
    let Proxied { port, path, bx, .. } = &mut Proxied::start("text", 4);
    exchange(*port, 9);
    // At once, well within the writer's one-second flush.
    bx.signal(SIGTERM);
    assert!(bx.wait_exit(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", bx.log_text());
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(" bytes_from_client=9 bytes_to_client=4 "), "{text}");
}
