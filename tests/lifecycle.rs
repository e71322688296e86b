//! The process's life around its edges: shutdown with servers removed through the API, changes
//! refused once shutdown has begun, SIGHUP, a second stop signal, and a start that runs out of
//! threads.

mod api_client;
mod common;

use api_client::{static_server, Client};
use common::backends::{Backend, Behaviour};
use common::{binary, free_port, wait_until, Betwixt, TempDir, SIGINT, SIGTERM};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The API on `api` and one server `s` on `port` in front of `backend`.
fn config(api: u16, port: u16, backend: &Backend) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [servers.s]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n",
        backend.line()
    )
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
}

/// A connection through the proxy to an echo backend, checked with one exchange.
fn open_echo(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(echo(&mut stream, b"hello"), b"hello");
    stream
}

/// Writes `data` and reads as many bytes back. A writer thread keeps a large exchange from
/// filling both directions' buffers while nobody reads.
fn echo(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let out = data.to_vec();
    let sending = std::thread::spawn(move || writer.write_all(&out));
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    sending.join().unwrap().unwrap();
    back
}

/// Half-closes and expects the echo backend to end the stream with nothing more.
fn finish(mut stream: TcpStream) {
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} stray bytes", rest.len());
}

fn wait_for_log(bx: &Betwixt, text: &str) {
    let found = wait_until(Duration::from_secs(5), || bx.log_text().contains(text));
    assert!(found, "no {text:?} in the log:\n{}", bx.log_text());
}

fn still_running(bx: &mut Betwixt) -> bool {
    bx.child.try_wait().unwrap().is_none()
}

/// betwixt on `config` with `-p DIR/betwixt.pid`; returns it, the directory and the pidfile.
fn start_with_pidfile(api: u16, port: u16, backend: &Backend) -> (Betwixt, TempDir, PathBuf) {
    let dir = TempDir::new("pid");
    let pidfile = dir.0.join("betwixt.pid");
    let bx = Betwixt::start(&config(api, port, backend), &["-p", pidfile.to_str().unwrap()], &[api, port]);
    assert!(wait_until(Duration::from_secs(5), || pidfile.exists()), "no pidfile");
    (bx, dir, pidfile)
}

#[test]
fn sigterm_drains_a_stream_of_a_server_deleted_earlier() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port) = (free_port(), free_port());
    let mut bx = Betwixt::start(&config(api, port, &backend), &[], &[api, port]);
    let mut live = open_echo(port);
    let deleted = Client::http(api).send("DELETE", "/servers/s?drain=0", "");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    wait_for_log(&bx, "server s: removed");

    bx.signal(SIGTERM);
    wait_for_log(&bx, "SIGTERM: no longer accepting");
    std::thread::sleep(Duration::from_millis(300));
    assert!(still_running(&mut bx), "exited under a live connection; log:\n{}", bx.log_text());
    let data = pattern(300_000, 7);
    assert!(echo(&mut live, &data) == data, "the stream changed during the drain");
    finish(live);
    let status = bx.wait_exit(Duration::from_secs(5)).expect("did not exit after the last connection");
    assert!(status.success(), "{status:?}; log:\n{}", bx.log_text());
}

#[test]
fn changes_are_refused_once_shutdown_has_begun() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port, late) = (free_port(), free_port(), free_port());
    let mut bx = Betwixt::start(&config(api, port, &backend), &[], &[api, port]);
    // A live connection keeps the drain, and with it the API, going.
    let live = open_echo(port);
    bx.signal(SIGTERM);
    wait_for_log(&bx, "SIGTERM: no longer accepting");

    let client = Client::http(api);
    let body = static_server(&format!("127.0.0.1:{late}"), &backend.line());
    let created = client.send("POST", "/servers/late", &body);
    assert_eq!(created.status, 503, "{}", created.body);
    assert!(created.message().contains("shutting down"), "{}", created.body);
    let deleted = client.send("DELETE", "/servers/s", "");
    assert_eq!(deleted.status, 503, "{}", deleted.body);
    assert!(deleted.message().contains("shutting down"), "{}", deleted.body);
    std::thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(("127.0.0.1", late)).is_err(), "a server created during the drain listens");

    assert!(still_running(&mut bx));
    finish(live);
    let status = bx.wait_exit(Duration::from_secs(5)).expect("did not exit after the last connection");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_reloads_and_keeps_running() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port) = (free_port(), free_port());
    let (mut bx, _dir, pidfile) = start_with_pidfile(api, port, &backend);

    bx.signal(libc::SIGHUP);
    // The file did not change: the reload touches nothing.
    wait_for_log(&bx, "reload (SIGHUP): no server changed (1 unchanged)");
    assert!(still_running(&mut bx), "SIGHUP stopped betwixt; log:\n{}", bx.log_text());
    assert!(pidfile.exists(), "pidfile removed after SIGHUP");
    let live = open_echo(port);

    // Stopping still drains as usual.
    bx.signal(SIGTERM);
    wait_for_log(&bx, "SIGTERM: no longer accepting");
    std::thread::sleep(Duration::from_millis(200));
    assert!(still_running(&mut bx), "exited under a live connection");
    finish(live);
    let status = bx.wait_exit(Duration::from_secs(5)).expect("did not exit after the last connection");
    assert!(status.success(), "{status:?}");
    assert!(!pidfile.exists(), "pidfile left behind");
}

/// SIGUSR1, and SIGUSR2 without `--upgrade-socket`, are ignored with a warning, as gobetween (a
/// Go program) ignores them; the default action would kill betwixt without a drain.
#[test]
fn sigusr1_and_sigusr2_without_an_upgrade_socket_are_ignored() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port) = (free_port(), free_port());
    let (mut bx, _dir, pidfile) = start_with_pidfile(api, port, &backend);
    let mut live = open_echo(port);
    bx.signal(libc::SIGUSR1);
    wait_for_log(&bx, "SIGUSR1: ignored");
    bx.signal(libc::SIGUSR2);
    wait_for_log(&bx, "SIGUSR2: ignored: there is no --upgrade-socket");
    assert!(still_running(&mut bx), "a user signal stopped betwixt; log:\n{}", bx.log_text());
    assert!(pidfile.exists());
    assert_eq!(echo(&mut live, b"still here"), b"still here");
    finish(live);
    assert_eq!(echo(&mut open_echo(port), b"and new ones"), b"and new ones");
}

/// The pidfile is created 0644 whatever the umask: under `umask 0` (some service managers'
/// default) a file anyone can write would let anyone choose the process a supervisor signals.
#[test]
fn the_pidfile_is_not_writable_by_others_under_umask_0() {
    use std::os::unix::fs::PermissionsExt;
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port) = (free_port(), free_port());
    let dir = TempDir::new("umask");
    let conf = dir.write("c.toml", &config(api, port, &backend));
    let pidfile = dir.0.join("b.pid");
    let script = format!("umask 0 && exec {} -c {} -p {}", binary(), conf.display(), pidfile.display());
    let bx = Betwixt::start_command("sh", &["-c".as_ref(), script.as_ref()], &[], dir);
    let written = || std::fs::read_to_string(&pidfile).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(5), || written().ends_with('\n')), "no pidfile");
    assert_eq!(written(), format!("{}\n", bx.pid()));
    assert_eq!(std::fs::metadata(&pidfile).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let (api, port) = (free_port(), free_port());
    // The default grace is 30 s: the exit below can only come from the second signal.
    let (mut bx, _dir, pidfile) = start_with_pidfile(api, port, &backend);
    let live = open_echo(port);
    bx.signal(SIGTERM);
    wait_for_log(&bx, "SIGTERM: no longer accepting");
    std::thread::sleep(Duration::from_millis(300));
    assert!(still_running(&mut bx), "exited under a live connection");

    let second = Instant::now();
    bx.signal(SIGINT);
    let status = bx.wait_exit(Duration::from_secs(3)).expect("a second signal did not stop betwixt");
    assert!(second.elapsed() < Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
    let log = bx.log_text();
    assert!(log.contains("SIGINT during shutdown: closing 1 live connection(s) now"), "{log}");
    assert!(!pidfile.exists(), "pidfile left behind");
    drop(live);
}

/// A configuration with one server on a free port, for starts that must fail before it listens.
fn one_server(dir: &TempDir) -> PathBuf {
    let port = free_port();
    dir.write(
        "c.toml",
        &format!(
            "[servers.s]\nbind = \"127.0.0.1:{port}\"\n\
             [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:9\"]\n"
        ),
    )
}

/// Runs `command` (betwixt under a limit, through util-linux tools) with its output captured,
/// killing it if it still runs after 10 s. Returns whether it exited by itself, and its output.
fn run_to_exit(command: &mut Command) -> (bool, std::process::Output) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv and prlimit (util-linux) are needed");
    let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    (exited, child.wait_with_output().unwrap())
}

/// RLIMIT_NPROC binds everyone but root, and for other users it counts all their threads (this
/// test's included). So the test runs as root and applies the limit to betwixt run as `nobody`,
/// who then has no other threads; the binary and the config must be readable to it.
#[test]
fn running_out_of_threads_at_start_is_a_clean_error() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root, to run betwixt as another user under a thread limit");
        return;
    }
    let dir = TempDir::new("nproc");
    let path = one_server(&dir);
    use std::os::unix::fs::PermissionsExt;
    for p in [&dir.0, &path] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Each shard is a thread plus glommio's helper thread: every limit below 5 stops one of
    // them, the first (1) before any shard starts, the others inside a shard's start.
    for threads in 1..=4 {
        let (exited, out) = run_to_exit(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "prlimit"])
                .arg(format!("--nproc={threads}"))
                .args([common::binary(), "-c", path.to_str().unwrap(), "--shards", "2"])
                .env("RUST_BACKTRACE", "1"),
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(exited, "limit {threads}: still running half-started:\n{text}");
        assert_eq!(out.status.code(), Some(1), "limit {threads}:\n{text}");
        assert!(
            text.contains("cannot start shard") && text.contains("ulimit -u"),
            "limit {threads}:\n{text}"
        );
        assert!(!text.contains("panicked") && !text.contains("backtrace"), "limit {threads}:\n{text}");
    }
}

/// Below the 512 KiB of locked memory glommio requires per executor, betwixt stops at start
/// with a message naming the limit and how to raise it, not glommio's `MemLockLimit(a/b)`.
/// Root's limit is as binding as anyone's here: betwixt raises only its soft limit.
#[test]
fn locked_memory_limit_too_low_is_a_plain_error() {
    let dir = TempDir::new("memlock");
    let path = one_server(&dir);
    let (exited, out) = run_to_exit(Command::new("prlimit").arg("--memlock=65536:65536").args([
        common::binary(),
        "-c",
        path.to_str().unwrap(),
        "--shards",
        "1",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited, "still running under a 64 KiB locked-memory limit:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("betwixt: cannot start the shards: the locked-memory limit (RLIMIT_MEMLOCK) is 65536 bytes, below the 512 KiB io_uring needs")
            && stderr.contains("LimitMEMLOCK=infinity")
            && stderr.contains("`ulimit -l 512`"),
        "{stderr}"
    );
    assert!(!stderr.contains("MemLockLimit("), "{stderr}");
}
