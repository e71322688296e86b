//! A small HTTP server on a unix socket standing in for a daemon's API (Docker's, LXD's):
//! answers each GET with the current document, except paths starting with a "stream" prefix,
//! which get a chunked answer's head and then silence (an event stream without events). It can
//! be taken down (socket removed) and brought back.

use std::io::{BufRead, BufReader, Write};
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
        let (document, prefix) = (self.document.clone(), format!("GET {}", self.stream_prefix));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let (document, prefix) = (document.clone(), prefix.clone());
                std::thread::spawn(move || {
                    let mut head = String::new();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        head.push_str(&line);
                        line.clear();
                    }
                    if head.starts_with(&prefix) {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    let body = document.lock().unwrap().clone();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
                });
            }
        });
    }

    pub fn set(&self, document: Vec<u8>) {
        *self.document.lock().unwrap() = document;
    }
}
