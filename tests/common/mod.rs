//! Shared integration-test harness: start the real betwixt binary on a config, real backends on
//! loopback, free ports, and polling helpers. Every process started here is killed on drop.
#![allow(dead_code)]

pub mod backends;
pub mod config_server;
pub mod connect_proxy;
pub mod netns;
pub mod replay;
pub mod unix_http;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1, and not handed out before in this process:
/// the kernel may give the same ephemeral port to two binds in a row, and a test asking for
/// two ports (a server's and the API's) then got one twice.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// How many events a rate-limited log line stands for: itself plus those it says were
/// suppressed (betwixt's `log_limited!` appends "(N similar messages suppressed)").
pub fn reported_count(line: &str) -> u64 {
    let suppressed = line
        .rsplit_once(" (")
        .and_then(|(_, tail)| tail.strip_suffix(" similar messages suppressed)"))
        .map_or(0, |n| n.parse::<u64>().unwrap());
    1 + suppressed
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    wait_until(limit, || TcpStream::connect(("127.0.0.1", port)).is_ok())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Named by process and a count of the directories it made: a free port in the name (as
    /// before) could be handed to two tests running at once, and the first to finish removed
    /// the other's directory, log included.
    pub fn new(tag: &str) -> TempDir {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("betwixt-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a script and makes it executable.
    pub fn write_executable(&self, name: &str, text: &str) -> PathBuf {
        let path = self.write(name, text);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_betwixt")
}

/// Runs betwixt to completion with `args` and returns (status, stdout, stderr).
pub fn run_betwixt(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(binary()).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A running betwixt process; killed on drop.
pub struct Betwixt {
    pub child: Child,
    pub dir: TempDir,
    pub log: PathBuf,
}

impl Betwixt {
    /// Starts betwixt on a TOML config text and waits until every port in `ports` accepts.
    pub fn start(config: &str, extra_args: &[&str], ports: &[u16]) -> Betwixt {
        let dir = TempDir::new("bx");
        let path = dir.write("betwixt.toml", config);
        let betwixt = Betwixt::start_file(&path, extra_args, dir);
        // Wait for the "listening" log line rather than probing with a connection, which would
        // itself be proxied and could occupy a limited backend.
        for &port in ports {
            betwixt.wait_listening(port);
        }
        betwixt
    }

    pub fn start_file(path: &Path, extra_args: &[&str], dir: TempDir) -> Betwixt {
        let mut args = vec![std::ffi::OsStr::new("-c"), path.as_os_str()];
        args.extend(extra_args.iter().map(|a| std::ffi::OsStr::new(*a)));
        Betwixt::start_args(&args, &[], dir)
    }

    /// Starts betwixt with exactly `args` (e.g. `from-url URL`) and the environment variables
    /// `env` added, its log in `dir`. The log level is `RUST_LOG` in `env`, else
    /// `BETWIXT_TEST_LOG`, else `info`.
    pub fn start_args(args: &[&std::ffi::OsStr], env: &[(&str, String)], dir: TempDir) -> Betwixt {
        Betwixt::start_command(binary(), args, env, dir)
    }

    /// Starts `program` with `args`, a program that ends by executing betwixt in its own
    /// process (`prlimit ... -- betwixt ...`), so that the child is betwixt.
    pub fn start_command(
        program: &str,
        args: &[&std::ffi::OsStr],
        env: &[(&str, String)],
        dir: TempDir,
    ) -> Betwixt {
        let log = dir.0.join("betwixt.log");
        let out = std::fs::File::create(&log).unwrap();
        let level = std::env::var("BETWIXT_TEST_LOG").unwrap_or_else(|_| "info".into());
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", level)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Betwixt { child, dir, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until the log says betwixt listens on `port`.
    pub fn wait_listening(&self, port: u16) {
        let listening = format!(":{port}");
        let ready = wait_until(Duration::from_secs(10), || {
            self.log_text().lines().any(|l| l.contains("listening on") && l.trim_end().ends_with(&listening))
        });
        assert!(ready, "betwixt did not listen on {port}; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on the child we started.
        unsafe { libc_kill(self.pid(), signal) };
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Betwixt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;

/// A config with one server `s` on `127.0.0.1:port` balancing over a static list of backend
/// `lines`; `extra` is added to the server's section.
pub fn static_server(port: u16, balance: &str, lines: &[String], extra: &str) -> String {
    let list: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\nbalance = \"{balance}\"\n{extra}\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

/// Every byte but ASCII letters and digits as `%XX`, for a name in a URL path.
pub fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `%XX` sequences decoded (what `percent_encoded` and URL writers produce).
pub fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex =
            bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects to the proxy and returns the first line the backend sends (backends built with
/// `backends::Named` send their name), then closes.
/// Runs betwixt with `args` until the server on `port` answers with `name` (at most 5 s), then
/// kills it. Returns whether it did, and what betwixt wrote to stdout.
pub fn serve_until_named(args: &[&str], port: u16, name: &str) -> (bool, Vec<u8>) {
    serve_until_named_with_env(args, &[], port, name)
}

/// [`serve_until_named`] with extra environment variables for betwixt.
pub fn serve_until_named_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    port: u16,
    name: &str,
) -> (bool, Vec<u8>) {
    let mut child = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = wait_until(Duration::from_secs(5), || ask_name(port).as_deref() == Some(name));
    let _ = child.kill();
    (served, child.wait_with_output().unwrap().stdout)
}

pub fn ask_name(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    read_line(&mut stream)
}

/// `GET path` over a fresh connection to `addr` (`Connection: close`): the whole reply, head
/// and body, read to the end within 5 s.
pub fn http_get(addr: impl std::net::ToSocketAddrs, path: &str) -> std::io::Result<String> {
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// The name an HTTP server behind `port` answers (its body's last line), through one GET.
pub fn http_name(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.lines().last().map(String::from).filter(|l| !l.is_empty())
}

pub fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    String::from_utf8(line).ok()
}

/// Counts which backend answered over `n` fresh connections.
pub fn tally(port: u16, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let name = ask_name(port).unwrap_or_else(|| "<none>".into());
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// True when the proxy closes a fresh connection without any byte within `limit`.
pub fn closed_without_data(port: u16, limit: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return true };
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
        && {
            // A read timeout also lands in Err: tell it apart from a close.
            let mut again = [0u8; 1];
            stream.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            !matches!(stream.read(&mut again), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
        }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Closes with a reset (SO_LINGER 0) instead of a FIN.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// Reads until the stream ends: the bytes, and `Ok` for a clean end of stream or the error's
/// kind. A stream that neither ends nor fails within `limit` fails the test.
pub fn read_until_end(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Result<(), std::io::ErrorKind>) {
    use std::io::ErrorKind;
    stream.set_read_timeout(Some(limit)).unwrap();
    let (mut data, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (data, Ok(())),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the stream neither ended nor failed within {limit:?} ({} bytes read)", data.len())
            }
            Err(e) => return (data, Err(e.kind())),
        }
    }
}

/// Writes all of `data` then half-closes.
pub fn send_and_half_close(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
}

/// A port on 127.0.0.1 where every connect is refused for as long as the value lives. The
/// socket is bound without listening, so nothing else can take the port meanwhile: a port that
/// was merely free a moment ago may go to the next listener any test binds.
pub struct RefusingPort {
    pub port: u16,
    _socket: socket2::Socket,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&addr(0).into()).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        RefusingPort { port, _socket: socket }
    }
}

/// A listener whose accept queue is full and never drained: new SYNs are dropped, so a connect
/// to it hangs until the connector's own timeout. Keep the value alive for the test.
pub struct BlackHole {
    pub port: u16,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    pub fn new() -> BlackHole {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener.bind(&addr(0).into()).unwrap();
        listener.listen(0).unwrap();
        let port = listener.local_addr().unwrap().as_socket().unwrap().port();
        // Fill the accept queue (backlog 0 still admits one); further handshakes stall.
        let mut fillers = Vec::new();
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        BlackHole { port, _listener: listener, _fillers: fillers }
    }
}

/// An HTTP server on 127.0.0.1 answering up to 4 requests with `body` (a configuration URL, or
/// Consul's raw KV read, which answers with the stored value as the body). Reports each
/// request's head: the request line, then one `name: value` line per header.
pub fn serve_http(body: String) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let _ = tx.send(head.join("\n"));
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Consul-Index: 7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, rx)
}

/// dnsmasq in the foreground on 127.0.0.1:`port` (UDP and TCP), answering only from its
/// command line (no configuration file, resolv.conf or /etc/hosts); add the records and spawn.
pub fn dnsmasq_command(port: u16) -> Command {
    let mut command = Command::new("dnsmasq");
    command.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        &format!("--port={port}"),
    ]);
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// Sends `len` pseudo-random bytes, half-closes, and reads the echo at the same time; returns
/// the hashes of both and the length received.
pub fn echo_round_trip(port: u16, len: usize, seed: u64) -> (Vec<u8>, Vec<u8>, usize) {
    use sha2::Digest;
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let mut writer = stream;
    let sender = std::thread::spawn(move || {
        let mut hash = sha2::Sha256::new();
        let mut state = seed;
        let mut chunk = vec![0u8; 200 * 1024 + 7];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            for byte in &mut chunk[..n] {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            writer.write_all(&chunk[..n]).unwrap();
            hash.update(&chunk[..n]);
            sent += n;
        }
        writer.shutdown(std::net::Shutdown::Write).unwrap();
        hash.finalize().to_vec()
    });
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0;
    reader.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        received += n;
    }
    (sender.join().unwrap(), hash.finalize().to_vec(), received)
}

/// `streams` echo round trips of `len` bytes each through `port` at once; each must come back
/// whole and unchanged.
pub fn echo_streams_at_once(port: u16, streams: u64, len: usize) {
    let streams: Vec<_> = (0..streams)
        .map(|i| std::thread::spawn(move || echo_round_trip(port, len, 0x9E37_79B9_7F4A_7C15 + i)))
        .collect();
    for stream in streams {
        let (sent, received, got) = stream.join().unwrap();
        assert_eq!(got, len, "echoed byte count");
        assert_eq!(sent, received, "echoed bytes differ from sent bytes");
    }
}
