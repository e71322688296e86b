//! A small HTTP server standing in for a daemon's API (Docker's, LXD's), on a unix socket or
//! on loopback TCP: answers each GET with the current document, except paths starting with a
//! "stream" prefix, which get a chunked answer's head and then silence (an event stream without
//! events). A request in absolute form (`GET http://host/path`, as sent to a proxy) is answered
//! by its path, so the TCP server also stands in for a proxy in front of the daemon; it records
//! the request lines it got. The unix socket can be taken down (removed) and brought back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct UnixDocument {
    document: Arc<Mutex<Vec<u8>>>,
    pub socket: PathBuf,
    stream_prefix: &'static str,
}

impl UnixDocument {
    pub fn serve(socket: PathBuf, document: &str, stream_prefix: &'static str) -> UnixDocument {
        let served = UnixDocument {
            document: Arc::new(Mutex::new(document.as_bytes().to_vec())),
            socket,
            stream_prefix,
        };
        served.listen();
        served
    }

    /// Listens (again) on the socket.
    pub fn listen(&self) {
        let listener = UnixListener::bind(&self.socket).unwrap();
        let (document, prefix) = (self.document.clone(), self.stream_prefix);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let document = document.clone();
                std::thread::spawn(move || answer(stream, &document, prefix));
            }
        });
    }

    pub fn set(&self, document: Vec<u8>) {
        *self.document.lock().unwrap() = document;
    }
}

/// The same server on loopback TCP: its port and the request lines it got.
pub fn serve_tcp(document: &str, stream_prefix: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let document = Arc::new(Mutex::new(document.as_bytes().to_vec()));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let (document, seen) = (document.clone(), seen.clone());
            std::thread::spawn(move || {
                let line = answer(stream, &document, stream_prefix);
                seen.lock().unwrap().push(line);
            });
        }
    });
    (port, lines)
}

/// Reads one request and answers it; returns its request line.
fn answer(mut stream: impl Read + Write + TryCloneStream, document: &Mutex<Vec<u8>>, prefix: &str) -> String {
    let mut head = String::new();
    let mut reader = BufReader::new(stream.try_clone_stream());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
        head.push_str(&line);
        line.clear();
    }
    let request_line = head.lines().next().unwrap_or("").to_string();
    let target = request_line.split(' ').nth(1).unwrap_or("");
    // An absolute URL's path: after the scheme's "//", from the first "/".
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if path.starts_with(prefix) {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        std::thread::sleep(Duration::from_secs(30));
        return request_line;
    }
    let body = document.lock().unwrap().clone();
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
    request_line
}

/// A stream a reader can be split off (both socket kinds have `try_clone`).
trait TryCloneStream {
    type Clone: Read;
    fn try_clone_stream(&self) -> Self::Clone;
}

impl TryCloneStream for std::net::TcpStream {
    type Clone = std::net::TcpStream;
    fn try_clone_stream(&self) -> Self::Clone {
        self.try_clone().unwrap()
    }
}

impl TryCloneStream for std::os::unix::net::UnixStream {
    type Clone = std::os::unix::net::UnixStream;
    fn try_clone_stream(&self) -> Self::Clone {
        self.try_clone().unwrap()
    }
}
