//! A tunnel through an HTTP proxy, as Go's client opens one for an `https` URL: `CONNECT
//! host:port`, and only `200` opens it. Used by discovery's client and ACME's.

use super::{snippet, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest answer head a proxy may give to `CONNECT`.
const MAX_CONNECT_HEAD: usize = 8 << 10;

/// Connects to `proxy` and asks it for a tunnel to `host:port`; the stream then carries the
/// server's bytes. Not bounded in time: the caller bounds the whole request.
pub async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port)).await?;
    let authority = crate::backend::host_port(host, port);
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(authorization) = proxy.authorization() {
        head.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    // Byte by byte: what follows the head is the server's, for TLS to read.
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_CONNECT_HEAD {
            return Err(std::io::Error::other(format!(
                "proxy's answer to CONNECT over {MAX_CONNECT_HEAD} bytes"
            )));
        }
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other("proxy closed the connection before answering CONNECT"));
        }
        answer.push(byte[0]);
    }
    let status_line =
        String::from_utf8_lossy(answer.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
    match status_line.split(' ').nth(1) {
        Some("200") => Ok(stream),
        _ => {
            Err(std::io::Error::other(format!("proxy refused CONNECT: {}", snippet(status_line.as_bytes()))))
        }
    }
}
