//! Binary upgrade (docs/upgrade.md): a new betwixt takes the listening sockets of the running
//! one. Clients connecting throughout see no refusal and no reset, connections open at the
//! handover finish on the old process, the API answers throughout, UDP goes on, and a new
//! process that fails leaves the old one serving.

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, static_server, wait_until, Betwixt};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SIGUSR2: i32 = 12;
const SIGKILL: i32 = 9;

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { kill(pid, 0) == 0 }
}

/// The pid a pidfile names, if any.
fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A running betwixt offering its sockets on `upgrade.sock`, with a pidfile, and the processes
/// that take over from it; every one of them is killed on drop.
struct Upgradable {
    old: Betwixt,
    pidfile: PathBuf,
    socket: PathBuf,
}

impl Upgradable {
    fn start(config: &str, ports: &[u16]) -> Upgradable {
        let dir = common::TempDir::new("upgrade-paths");
        let pidfile = dir.0.join("betwixt.pid");
        let socket = dir.0.join("upgrade.sock");
        std::mem::forget(dir); // removed with the test's temporary directory below
        let args = ["-p", pidfile.to_str().unwrap(), "--upgrade-socket", socket.to_str().unwrap()];
        let old = Betwixt::start(config, &args, ports);
        assert!(wait_until(Duration::from_secs(5), || socket.exists()), "{}", old.log_text());
        Upgradable { old, pidfile, socket }
    }

    /// SIGUSR2 to the old process; returns the successor's pid once the pidfile names it.
    fn upgrade(&self) -> i32 {
        self.old.signal(SIGUSR2);
        let old = self.old.pid();
        let mut new = None;
        let named = wait_until(Duration::from_secs(10), || {
            new = pid_in(&self.pidfile).filter(|&pid| pid != old);
            new.is_some()
        });
        assert!(named, "the successor did not take over; log:\n{}", self.old.log_text());
        new.unwrap()
    }
}

impl Drop for Upgradable {
    fn drop(&mut self) {
        // The successor is not our child (the old process started it): end it by its pid.
        if let Some(pid) = pid_in(&self.pidfile).filter(|&pid| pid != self.old.pid()) {
            // SAFETY: plain kill(2) of the betwixt this test had started through the old one.
            unsafe { kill(pid, SIGKILL) };
        }
        if let Some(dir) = self.pidfile.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Tallies of the clients' outcomes.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    refused: AtomicUsize,
    reset: AtomicUsize,
    other: AtomicUsize,
}

impl Tally {
    fn counts(&self) -> [usize; 4] {
        [&self.ok, &self.refused, &self.reset, &self.other].map(|c| c.load(Ordering::Relaxed))
    }
}

/// One connection: a unique request echoed back byte for byte.
fn exchange(port: u16, n: usize) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request: Vec<u8> = format!("request {n} ").bytes().cycle().take(1000 + n % 3000).collect();
    stream.write_all(&request)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply == request)
}

/// Clients connecting one after another until `stop`, each exchange tallied.
fn clients(
    port: u16,
    threads: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let (stop, tally) = (stop.clone(), tally.clone());
            thread::spawn(move || {
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let counter = match exchange(port, n) {
                        Ok(true) => &tally.ok,
                        Ok(false) => &tally.other,
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => &tally.refused,
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => &tally.reset,
                        Err(e) => {
                            eprintln!("client: {e}");
                            &tally.other
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    n += threads;
                }
            })
        })
        .collect()
}

#[test]
fn clients_connecting_throughout_an_upgrade_are_never_refused_or_reset() {
    let backend = Backend::start("b", Behaviour::Echo);
    let port = free_port();
    let config = static_server(port, "roundrobin", &[backend.line()], "");
    let mut bx = Upgradable::start(&config, &[port]);
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let threads = clients(port, 3, &stop, &tally);
    thread::sleep(Duration::from_millis(300));
    let before = tally.counts()[0];
    let new = bx.upgrade();
    // The old process has only short connections: it drains and exits at once.
    assert!(bx.old.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", bx.old.log_text());
    let at_exit = tally.counts()[0];
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let [ok, refused, reset, other] = tally.counts();
    assert_eq!((refused, reset, other), (0, 0, 0), "{ok} byte-exact; log:\n{}", bx.old.log_text());
    assert!(before > 0 && at_exit > before && ok > at_exit, "served throughout: {before} {at_exit} {ok}");
    assert!(alive(new), "the successor serves on");
    let log = bx.old.log_text();
    assert!(log.contains(&format!("taken over by pid {new}")), "{log}");
}

#[test]
fn connections_open_at_the_handover_finish_on_the_old_process() {
    let backend = Backend::start("b", Behaviour::Echo);
    let port = free_port();
    let config = static_server(port, "roundrobin", &[backend.line()], "");
    let mut bx = Upgradable::start(&config, &[port]);
    let mut open: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let round = |open: &mut Vec<TcpStream>, tag: &str| {
        for (i, stream) in open.iter_mut().enumerate() {
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let message: Vec<u8> = format!("{tag} {i};").bytes().cycle().take(20_000).collect();
            stream.write_all(&message).unwrap();
            let mut echoed = vec![0; message.len()];
            stream.read_exact(&mut echoed).unwrap();
            assert!(echoed == message, "byte-exact on connection {i}");
        }
    };
    round(&mut open, "before");
    bx.upgrade();
    round(&mut open, "after");
    // The old process drains: it stays while its connections are open.
    thread::sleep(Duration::from_millis(300));
    assert!(bx.old.child.try_wait().unwrap().is_none(), "exited with connections open");
    round(&mut open, "later");
    drop(open);
    assert!(bx.old.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", bx.old.log_text());
    // New connections were served by the successor all along.
    assert!(exchange(port, 7).unwrap());
}

/// `GET /` through the API, and the pid it reports.
fn api_pid(port: u16) -> std::io::Result<i32> {
    let reply = common::http_get(("127.0.0.1", port), "/")?;
    let pid = reply.split("\"pid\":").nth(1).and_then(|rest| {
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok())
    });
    pid.ok_or_else(|| std::io::Error::other(format!("no pid in {reply:?}")))
}

#[test]
fn the_api_answers_throughout_and_then_from_the_successor() {
    let backend = Backend::start("b", Behaviour::Echo);
    let (port, api) = (free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\n{}",
        static_server(port, "roundrobin", &[backend.line()], "")
    );
    let mut bx = Upgradable::start(&config, &[port, api]);
    let old = bx.old.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let asker = {
        let stop = stop.clone();
        thread::spawn(move || {
            let (mut answers, mut failures) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match api_pid(api) {
                    Ok(pid) => answers.push((Instant::now(), pid)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (answers, failures)
        })
    };
    thread::sleep(Duration::from_millis(200));
    let new = bx.upgrade();
    assert!(bx.old.wait_exit(Duration::from_secs(10)).is_some(), "{}", bx.old.log_text());
    let exited = Instant::now();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (answers, failures) = asker.join().unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(answers.first().map(|a| a.1), Some(old));
    // While the successor starts, both processes accept on the shared socket; once the old one
    // has let go, only the successor answers.
    let after: Vec<i32> = answers.iter().filter(|a| a.0 > exited).map(|a| a.1).collect();
    assert!(!after.is_empty() && after.iter().all(|&pid| pid == new), "{after:?}");
}

/// The status line ACME's HTTP-01 responder gives for a token it does not hold.
fn challenge_status(port: u16) -> std::io::Result<String> {
    let reply = common::http_get(("127.0.0.1", port), "/.well-known/acme-challenge/unknown")?;
    Ok(reply.lines().next().unwrap_or_default().to_string())
}

/// With `[acme] challenge = "http"`, the HTTP-01 responder's listener is handed over like the
/// API's: the successor used to fail with "Address already in use" on `http_bind`, and the
/// upgrade with it.
#[test]
fn the_acme_responder_is_handed_over_and_answers_throughout() {
    let backend = Backend::start("b", Behaviour::Echo);
    let (port, acme) = (free_port(), free_port());
    let cache = common::TempDir::new("upgrade-acme");
    let config = format!(
        "[acme]\nchallenge = \"http\"\nhttp_bind = \"127.0.0.1:{acme}\"\ncache_dir = \"{}\"\n\n{}",
        cache.0.display(),
        static_server(port, "roundrobin", &[backend.line()], "")
    );
    let mut bx = Upgradable::start(&config, &[port]); // the responder is bound before the server
    let stop = Arc::new(AtomicBool::new(false));
    let asker = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                outcomes.push(challenge_status(acme).map_err(|e| e.to_string()));
            }
            outcomes
        })
    };
    thread::sleep(Duration::from_millis(200));
    bx.upgrade();
    assert!(bx.old.wait_exit(Duration::from_secs(10)).is_some(), "{}", bx.old.log_text());
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let outcomes = asker.join().unwrap();
    assert!(outcomes.len() > 10, "{outcomes:?}");
    let wrong: Vec<_> = outcomes.iter().filter(|o| o.as_deref() != Ok("HTTP/1.1 404 Not Found")).collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(challenge_status(acme).unwrap(), "HTTP/1.1 404 Not Found", "the successor answers");
}

/// The profiler's and the metrics' listeners are handed over too: the successor bound the
/// profiler's before it had received the predecessor's sockets, failed with "Address already in
/// use", and the upgrade with it.
#[test]
fn the_metrics_and_profiler_listeners_are_handed_over() {
    let (port, metrics, profiler) = (free_port(), free_port(), free_port());
    let config = format!(
        "[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\n\
         [profiler]\nenabled = true\nbind = \"127.0.0.1:{profiler}\"\n\n{}",
        static_server(port, "roundrobin", &[], "")
    );
    let mut bx = Upgradable::start(&config, &[port, metrics, profiler]);
    bx.upgrade();
    assert!(bx.old.wait_exit(Duration::from_secs(10)).is_some(), "{}", bx.old.log_text());
    for (port, path) in [(metrics, "/metrics"), (profiler, "/debug/pprof/")] {
        let reply = common::http_get(("127.0.0.1", port), path).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }
}

/// A UDP echo backend, until `stop`.
fn udp_echo(stop: Arc<AtomicBool>) -> (u16, thread::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let port = socket.local_addr().unwrap().port();
    let thread = thread::spawn(move || {
        let mut buffer = [0; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buffer) {
                let _ = socket.send_to(&buffer[..n], from);
            }
        }
    });
    (port, thread)
}

#[test]
fn a_udp_server_answers_across_the_upgrade_with_retries() {
    let stop = Arc::new(AtomicBool::new(false));
    let (backend, echo) = udp_echo(stop.clone());
    let port = free_port();
    let config = format!(
        "[servers.u]\nbind = \"127.0.0.1:{port}\"\nprotocol = \"udp\"\nclient_idle_timeout = \"2s\"\n\
         [servers.u.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{backend}\"]\n"
    );
    let bx = Upgradable::start(&config, &[port]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let (mut answered, mut retries) = (0, 0);
    let mut upgraded = None;
    let started = Instant::now();
    for n in 0..400u32 {
        if n == 100 {
            bx.old.signal(SIGUSR2);
        }
        let request = format!("query {n}");
        let mut got = false;
        for attempt in 0..5 {
            retries += usize::from(attempt > 0);
            client.send_to(request.as_bytes(), ("127.0.0.1", port)).unwrap();
            let mut buffer = [0; 2048];
            // Replies to earlier attempts may arrive late: skip them.
            while let Ok(n) = client.recv(&mut buffer) {
                if buffer[..n] == *request.as_bytes() {
                    got = true;
                    break;
                }
            }
            if got {
                break;
            }
        }
        answered += usize::from(got);
        if upgraded.is_none() && pid_in(&bx.pidfile).is_some_and(|pid| pid != bx.old.pid()) {
            upgraded = Some(n);
        }
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    assert!(upgraded.is_some_and(|n| n < 390), "the upgrade happened during the run: {upgraded:?}");
    assert_eq!(answered, 400, "every query answered ({retries} retries) in {:?}", started.elapsed());
}

#[test]
fn a_successor_that_fails_leaves_the_old_process_serving() {
    let backend = Backend::start("b", Behaviour::Echo);
    let port = free_port();
    let config = static_server(port, "roundrobin", &[backend.line()], "");
    let bx = Upgradable::start(&config, &[port]);
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let threads = clients(port, 2, &stop, &tally);
    let dir = common::TempDir::new("upgrade-bad");
    let from = bx.socket.to_str().unwrap();
    // A configuration that does not parse: the new process never asks for the sockets.
    let bad = dir.write("bad.toml", "[servers.s\n");
    // One that parses but cannot bind (a port taken by another program), after the sockets
    // were handed over.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unbindable = dir.write(
        "unbindable.toml",
        &format!(
            "{config}\n{}",
            static_server(busy.local_addr().unwrap().port(), "roundrobin", &[backend.line()], "")
                .replace("servers.s", "servers.t")
        ),
    );
    for config in [&bad, &unbindable] {
        let (status, _, stderr) =
            common::run_betwixt(&["-c", config.to_str().unwrap(), "--upgrade-from", from]);
        assert_eq!(status.code(), Some(1), "{stderr}");
    }
    assert!(stderr_mentions_bind(&bx));
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let [ok, refused, reset, other] = tally.counts();
    assert!(ok > 0 && (refused, reset, other) == (0, 0, 0), "{:?} {}", tally.counts(), bx.old.log_text());
    assert!(alive(bx.old.pid()));
    assert_eq!(pid_in(&bx.pidfile), Some(bx.old.pid()), "the pidfile still names the old process");
    // And a later upgrade still works.
    let new = bx.upgrade();
    assert!(alive(new));
}

/// The old process saw the unbindable successor leave without taking over.
fn stderr_mentions_bind(bx: &Upgradable) -> bool {
    wait_until(Duration::from_secs(5), || bx.old.log_text().contains("went away without taking over"))
}
