//! Real TCP backends on loopback, each on its own threads, stopped on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What a backend does with each accepted connection.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Sends `name\n`, then holds the connection until the client closes it.
    Named,
    /// Echoes everything back; half-closes when the client does.
    Echo,
    /// Reads everything until the client half-closes, then replies with `reply_len` bytes
    /// (a known pattern) and closes.
    ReplyAfterEof { reply_len: usize },
    /// Accepts and never reads or writes (for idle timeout tests).
    Silent,
}

pub struct Backend {
    /// The loopback address it listens on (127.0.0.1 unless started with `start_at`).
    pub ip: Ipv4Addr,
    pub port: u16,
    pub name: String,
    stop: Arc<AtomicBool>,
    pub accepted: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Backend {
    pub fn start(name: &str, behaviour: Behaviour) -> Backend {
        Backend::start_on(name, behaviour, 0)
    }

    /// Listens on a given port (0 = any), e.g. to bring a killed backend back on its old port.
    pub fn start_on(name: &str, behaviour: Behaviour, port: u16) -> Backend {
        Backend::listen(name, behaviour, Ipv4Addr::LOCALHOST, port)
    }

    /// Listens on another loopback address (127.0.0.0/8), on any port.
    pub fn start_at(name: &str, behaviour: Behaviour, ip: Ipv4Addr) -> Backend {
        assert!(ip.is_loopback(), "tests listen on loopback only");
        Backend::listen(name, behaviour, ip, 0)
    }

    /// Listens on another loopback address and a given port (in a test's own namespace, where
    /// ports are known to be free).
    pub fn start_at_port(name: &str, behaviour: Behaviour, ip: Ipv4Addr, port: u16) -> Backend {
        assert!(ip.is_loopback(), "tests listen on loopback only");
        Backend::listen(name, behaviour, ip, port)
    }

    fn listen(name: &str, behaviour: Behaviour, ip: Ipv4Addr, port: u16) -> Backend {
        let listener = bind_retrying(ip, port);
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, accepted, name) = (stop.clone(), accepted.clone(), name.to_string());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            stream.set_nonblocking(false).unwrap();
                            let (name, stop) = (name.clone(), stop.clone());
                            thread::spawn(move || serve(stream, &name, behaviour, &stop));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Backend { ip, port, name: name.to_string(), stop, accepted, thread: Some(thread) }
    }

    pub fn line(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Stops listening and drops open connections.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind_retrying(ip: Ipv4Addr, port: u16) -> TcpListener {
    for _ in 0..200 {
        if let Ok(listener) = bind(ip, port) {
            return listener;
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("cannot bind backend port {port}");
}

/// A listener with room for a burst of connects (the standard library's backlog is 128: a
/// burst beyond it loses SYNs, and their retransmission takes seconds).
fn bind(ip: Ipv4Addr, port: u16) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from((ip, port)).into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The byte at position `i` of a reply: a pattern a test can check without storing it.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

fn serve(mut stream: TcpStream, name: &str, behaviour: Behaviour, stop: &AtomicBool) {
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Named => {
            if stream.write_all(format!("{name}\n").as_bytes()).is_ok() {
                discard_until_closed(&mut stream, &mut buf, stop);
            }
        }
        // Checked before every read: a busy connection never reaches the read timeout.
        Behaviour::Echo => {
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        let _ = stream.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => return,
                }
            }
        }
        Behaviour::ReplyAfterEof { reply_len } => {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) && !stop.load(Ordering::Relaxed) => {}
                    Err(_) => return,
                }
            }
            let reply: Vec<u8> = (0..reply_len).map(pattern_byte).collect();
            let _ = stream.write_all(&reply);
        }
        Behaviour::Silent => discard_until_closed(&mut stream, &mut buf, stop),
    }
}

/// Reads and drops whatever the client sends until it closes or the backend stops.
fn discard_until_closed(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match stream.read(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// A UDP backend answering every datagram with `seen <sender address>`, for at most 30 s (the
/// test is over long before; the thread is left to end by itself).
pub fn udp_echo_sender(socket: UdpSocket) {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..300 {
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(format!("seen {from}").as_bytes(), from);
            }
        }
    });
}

/// A backend on a free loopback port that takes one connection and hands it to `serve`; the
/// handle gives back what `serve` returns.
pub fn one_connection_backend<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (u16, thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (port, thread::spawn(move || serve(listener.accept().unwrap().0)))
}
