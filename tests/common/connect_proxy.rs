//! An HTTP proxy for tests of betwixt's clients behind one: it answers `CONNECT` and carries
//! the tunnel's bytes both ways.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc::Receiver;

/// A proxy that opens a `CONNECT` tunnel to `127.0.0.1:to` whatever host is named; returns
/// its port and the request lines it got.
pub fn tunnel_to(to: u16) -> (u16, Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line.trim_end().to_string());
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap_or(0) > 2 {
                header.clear();
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut up, mut down) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut reader, &mut up));
            std::thread::spawn(move || std::io::copy(&mut { server }, &mut down));
        }
    });
    (port, rx)
}
