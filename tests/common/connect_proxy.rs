//! Proxies for tests of betwixt's clients behind one, HTTP and SOCKS5: each answers `CONNECT`
//! and carries the tunnel's bytes both ways.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, Sender};

/// A proxy that opens a `CONNECT` tunnel to `127.0.0.1:to` whatever host is named; returns
/// its port and the request lines it got.
pub fn tunnel_to(to: u16) -> (u16, Receiver<String>) {
    serve(move |mut client, said| {
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = said.send(line.trim_end().to_string());
        let mut header = String::new();
        while reader.read_line(&mut header).unwrap_or(0) > 2 {
            header.clear();
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { return };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        // What the reader holds beyond the head is the client's, for the server.
        carry(reader, client, server);
    })
}

/// A SOCKS5 proxy (RFC 1928) that connects whatever host is named to `127.0.0.1:to`, asking for
/// a username and password when the client offers them (RFC 1929); returns its port and, per
/// connection, `CONNECT host:port` as the client named it, with ` as user:password` when given.
pub fn socks5_to(to: u16) -> (u16, Receiver<String>) {
    serve(move |client, said| {
        if let Ok((request, server)) = socks5_handshake(&client, to) {
            let _ = said.send(request);
            carry(client.try_clone().unwrap(), client, server);
        }
    })
}

/// A loopback listener running `handle` on a thread of its own for each connection.
fn serve(
    handle: impl Fn(TcpStream, Sender<String>) + Send + Sync + Clone + 'static,
) -> (u16, Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (handle, tx) = (handle.clone(), tx.clone());
            std::thread::spawn(move || handle(client, tx));
        }
    });
    (port, rx)
}

/// Copies `from_client` to `server` and `server` to `client` until each ends.
fn carry(mut from_client: impl Read + Send + 'static, mut client: TcpStream, server: TcpStream) {
    let mut up = server.try_clone().unwrap();
    std::thread::spawn(move || std::io::copy(&mut from_client, &mut up));
    let _ = std::io::copy(&mut { server }, &mut client);
}

fn socks5_handshake(mut client: &TcpStream, to: u16) -> std::io::Result<(String, TcpStream)> {
    let mut reader = client.try_clone()?;
    let mut read = |n: usize| -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; n];
        reader.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let greeting = read(2)?;
    let methods = read(greeting[1] as usize)?;
    let mut credentials = String::new();
    if methods.contains(&2) {
        client.write_all(&[5, 2])?;
        let user_len = read(2)?[1] as usize;
        let user = String::from_utf8_lossy(&read(user_len)?).into_owned();
        let password_len = read(1)?[0] as usize;
        let password = String::from_utf8_lossy(&read(password_len)?).into_owned();
        credentials = format!(" as {user}:{password}");
        client.write_all(&[1, 0])?;
    } else {
        client.write_all(&[5, 0])?;
    }
    let head = read(4)?;
    let host = match head[3] {
        1 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(read(4)?).unwrap()).to_string(),
        4 => format!("[{}]", std::net::Ipv6Addr::from(<[u8; 16]>::try_from(read(16)?).unwrap())),
        _ => {
            let len = read(1)?[0] as usize;
            String::from_utf8_lossy(&read(len)?).into_owned()
        }
    };
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(read(2)?).unwrap());
    let server = TcpStream::connect(("127.0.0.1", to))?;
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    Ok((format!("CONNECT {host}:{port}{credentials}"), server))
}
