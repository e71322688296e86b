//! The systemd notify protocol against a real `NOTIFY_SOCKET` listener: READY=1 once the
//! servers serve, WATCHDOG=1 pings, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 at
//! SIGTERM (see docs/systemd.md).

mod common;

use common::backends::{Backend, Behaviour};
use common::{ask_name, free_port, static_server, Betwixt, TempDir, SIGTERM};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;

/// The systemd side: a datagram socket in a temporary directory.
struct Listener {
    socket: UnixDatagram,
}

impl Listener {
    fn bind(dir: &TempDir) -> (Listener, String) {
        let path = dir.0.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        (Listener { socket }, path.to_string_lossy().into_owned())
    }

    /// The next message, or None once `limit` has passed without one.
    fn next(&self, limit: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Reads messages until one has the line `line`; returns it and those skipped before it.
    fn until(&self, line: &str, limit: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + limit;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            match self.next(left) {
                Some(message) if message.lines().any(|l| l == line) => return (message, skipped),
                Some(message) => skipped.push(message),
                None => panic!("no {line} within {limit:?}; got {skipped:?}"),
            }
        }
    }
}

#[test]
fn betwixt_speaks_the_systemd_notify_protocol() {
    let backend = Backend::start("b1", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("notify");
    let (systemd, notify_socket) = Listener::bind(&dir);
    let config = dir.write("betwixt.toml", &static_server(port, "roundrobin", &[backend.line()], ""));
    let env = [("NOTIFY_SOCKET", notify_socket), ("WATCHDOG_USEC", "200000".to_string())];
    let betwixt = Betwixt::start_args(&["-c".as_ref(), config.as_os_str()], &env, TempDir::new("notify-run"));

    // READY=1 comes first, and when it does the server already answers through a backend.
    let first = systemd.next(Duration::from_secs(15)).expect("no message from betwixt");
    assert!(first.lines().any(|l| l == "READY=1"), "first message {first:?}");
    assert_eq!(ask_name(port).as_deref(), Some("b1"), "READY=1 before the server served");

    // Watchdog pings every 100 ms while the shards answer.
    let started = Instant::now();
    for _ in 0..5 {
        systemd.until("WATCHDOG=1", Duration::from_secs(5));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "pings too slow: {:?}", started.elapsed());

    // `systemctl reload`: RELOADING=1 with the monotonic clock, then READY=1.
    betwixt.signal(SIGHUP);
    let (reloading, _) = systemd.until("RELOADING=1", Duration::from_secs(10));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);
    systemd.until("READY=1", Duration::from_secs(10));
    assert_eq!(ask_name(port).as_deref(), Some("b1"), "not serving after the reload");

    // `systemctl stop`: STOPPING=1.
    betwixt.signal(SIGTERM);
    systemd.until("STOPPING=1", Duration::from_secs(10));
    let mut betwixt = betwixt;
    assert!(betwixt.wait_exit(Duration::from_secs(10)).is_some(), "did not exit");
    // systemd no longer watches a stopping service: the pings ended with STOPPING=1.
    while let Some(message) = systemd.next(Duration::from_millis(300)) {
        assert!(!message.contains("WATCHDOG=1"), "pinged after STOPPING=1: {message:?}");
    }
}

#[test]
fn nothing_is_sent_to_a_watchdog_meant_for_another_process() {
    let backend = Backend::start("b1", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("notify-pid");
    let (systemd, notify_socket) = Listener::bind(&dir);
    let config = dir.write("betwixt.toml", &static_server(port, "roundrobin", &[backend.line()], ""));
    let env = [
        ("NOTIFY_SOCKET", notify_socket),
        ("WATCHDOG_USEC", "200000".to_string()),
        ("WATCHDOG_PID", "1".to_string()),
    ];
    let _betwixt =
        Betwixt::start_args(&["-c".as_ref(), config.as_os_str()], &env, TempDir::new("notify-pid-run"));
    systemd.until("READY=1", Duration::from_secs(15));
    // Five intervals: no ping.
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(message) =
        systemd.next(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))
    {
        assert!(!message.contains("WATCHDOG=1"), "pinged for another pid: {message:?}");
        if Instant::now() >= deadline {
            break;
        }
    }
}

#[test]
fn a_notify_socket_nobody_reads_does_not_stall_betwixt() {
    let backend = Backend::start("b1", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("notify-full");
    let (_systemd, notify_socket) = Listener::bind(&dir);
    let config = dir.write("betwixt.toml", &static_server(port, "roundrobin", &[backend.line()], ""));
    // A ping every 50 ms fills the socket's queue (net.unix.max_dgram_qlen, 10 by default) soon.
    let env = [("NOTIFY_SOCKET", notify_socket), ("WATCHDOG_USEC", "100000".to_string())];
    let mut betwixt =
        Betwixt::start_args(&["-c".as_ref(), config.as_os_str()], &env, TempDir::new("notify-full-run"));
    betwixt.wait_listening(port);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ask_name(port).as_deref(), Some("b1"));
    // The control thread still acts on signals: a blocking send would hang it here.
    betwixt.signal(SIGTERM);
    assert!(betwixt.wait_exit(Duration::from_secs(10)).is_some(), "stalled; log:\n{}", betwixt.log_text());
    let warnings = betwixt.log_text().matches("cannot notify systemd").count();
    assert!(warnings <= 3, "{warnings} warnings for one full queue");
}
