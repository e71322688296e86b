//! The systemd notify protocol against a real `NOTIFY_SOCKET` listener: READY=1 once the
//! servers serve, WATCHDOG=1 pings, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 at
//! SIGTERM (see docs/systemd.md).

mod common;

use common::backends::{Backend, Behaviour};
use common::{ask_name, free_port, static_server, Betwixt, TempDir, SIGTERM};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;
const SIGUSR2: i32 = 12;
const SIGKILL: i32 = 9;

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
        self.until_line(|l| l == line, line, limit)
    }

    /// As `until`, for a line starting with `prefix`.
    fn until_prefix(&self, prefix: &str, limit: Duration) -> (String, Vec<String>) {
        self.until_line(|l| l.starts_with(prefix), prefix, limit)
    }

    fn until_line(
        &self,
        wanted: impl Fn(&str) -> bool,
        line: &str,
        limit: Duration,
    ) -> (String, Vec<String>) {
        let deadline = Instant::now() + limit;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            match self.next(left) {
                Some(message) if message.lines().any(&wanted) => return (message, skipped),
                Some(message) => skipped.push(message),
                None => panic!("no {line} within {limit:?}; got {skipped:?}"),
            }
        }
    }
}

/// betwixt serving one server (backend `b1`) under a notify listener, with `env` added to
/// `NOTIFY_SOCKET`.
struct Service {
    systemd: Listener,
    betwixt: Betwixt,
    port: u16,
    _backend: Backend,
    _dir: TempDir,
}

impl Service {
    fn start(tag: &str, env: &[(&str, &str)]) -> Service {
        Service::start_with(tag, env, &[])
    }

    /// `args` added to the command line.
    fn start_with(tag: &str, env: &[(&str, &str)], args: &[&str]) -> Service {
        let backend = Backend::start("b1", Behaviour::Named);
        let port = free_port();
        let dir = TempDir::new(tag);
        let (systemd, notify_socket) = Listener::bind(&dir);
        let config = dir.write("betwixt.toml", &static_server(port, "roundrobin", &[backend.line()], ""));
        let mut all = vec![("NOTIFY_SOCKET", notify_socket)];
        all.extend(env.iter().map(|&(k, v)| (k, v.to_string())));
        let mut command_line = vec!["-c".as_ref(), config.as_os_str()];
        command_line.extend(args.iter().map(std::ffi::OsStr::new));
        let betwixt = Betwixt::start_args(&command_line, &all, TempDir::new(tag));
        Service { systemd, betwixt, port, _backend: backend, _dir: dir }
    }
}

#[test]
fn betwixt_speaks_the_systemd_notify_protocol() {
    let mut service = Service::start("notify", &[("WATCHDOG_USEC", "200000")]);
    let (systemd, port) = (&service.systemd, service.port);

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
    service.betwixt.signal(SIGHUP);
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
    service.betwixt.signal(SIGTERM);
    systemd.until("STOPPING=1", Duration::from_secs(10));
    assert!(service.betwixt.wait_exit(Duration::from_secs(10)).is_some(), "did not exit");
    // systemd no longer watches a stopping service: the pings ended with STOPPING=1.
    while let Some(message) = systemd.next(Duration::from_millis(300)) {
        assert!(!message.contains("WATCHDOG=1"), "pinged after STOPPING=1: {message:?}");
    }
}

#[test]
fn nothing_is_sent_to_a_watchdog_meant_for_another_process() {
    let service = Service::start("notify-pid", &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")]);
    let systemd = &service.systemd;
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
    // A ping every 50 ms fills the socket's queue (net.unix.max_dgram_qlen, 10 by default) soon;
    // nobody reads it.
    let mut service = Service::start("notify-full", &[("WATCHDOG_USEC", "100000")]);
    let (betwixt, port) = (&mut service.betwixt, service.port);
    betwixt.wait_listening(port);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ask_name(port).as_deref(), Some("b1"));
    // The control thread still acts on signals: a blocking send would hang it here.
    betwixt.signal(SIGTERM);
    assert!(betwixt.wait_exit(Duration::from_secs(10)).is_some(), "stalled; log:\n{}", betwixt.log_text());
    let warnings = betwixt.log_text().matches("cannot notify systemd").count();
    assert!(warnings <= 3, "{warnings} warnings for one full queue");
}

/// Kills the process `pid` on drop: a successor betwixt started, which the test did not.
struct Successor(i32);

impl Drop for Successor {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the betwixt this test had started through the first one.
        unsafe { kill(self.0, SIGKILL) };
    }
}

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

#[test]
fn an_upgrade_moves_the_main_pid_and_the_pings_to_the_successor() {
    let sock = std::env::temp_dir().join(format!("betwixt-notify-upgrade-{}.sock", free_port()));
    let args = ["--upgrade-socket", sock.to_str().unwrap()];
    let mut service = Service::start_with("notify-upgrade", &[("WATCHDOG_USEC", "200000")], &args);
    let systemd = &service.systemd;
    systemd.until("READY=1", Duration::from_secs(15));
    let old = service.betwixt.pid();

    service.betwixt.signal(SIGUSR2);
    let (message, before) = systemd.until_prefix("MAINPID=", Duration::from_secs(20));
    let pid: i32 = message.lines().find_map(|l| l.strip_prefix("MAINPID=")).unwrap().parse().unwrap();
    let _successor = Successor(pid);
    assert_ne!(pid, old, "MAINPID= names the old process");
    // An orphan, not the old process's child: systemd supervises such a main process as its own
    // child (tests/systemd_real.rs shows what goes wrong otherwise).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let parent = status.lines().find_map(|l| l.strip_prefix("PPid:")).unwrap().trim();
    assert_ne!(parent, old.to_string(), "the successor is the old process's child");
    let (_, between) = systemd.until("READY=1", Duration::from_secs(10));
    assert!(service.betwixt.wait_exit(Duration::from_secs(15)).is_some(), "the old process did not exit");
    // The old process is gone: these pings are the successor's.
    let mut after = Vec::new();
    for _ in 0..3 {
        let (ping, skipped) = systemd.until("WATCHDOG=1", Duration::from_secs(5));
        after.extend(skipped);
        after.push(ping);
    }
    assert_eq!(ask_name(service.port).as_deref(), Some("b1"));
    let all: Vec<&String> = before.iter().chain(&between).chain(&after).collect();
    assert!(!all.iter().any(|m| m.contains("STOPPING=1")), "the service is not stopping: {all:?}");
    let _ = std::fs::remove_file(&sock);
}
