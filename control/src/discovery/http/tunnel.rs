//! A tunnel through a proxy to `host:port`, as Go's client opens one: SOCKS5's `CONNECT` for
//! every request through a SOCKS5 proxy; HTTP's `CONNECT host:port` (only `200` opens it) for
//! TLS through an HTTP proxy. Used by discovery's client and ACME's.

use super::proxy::Kind;
use super::{snippet, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

/// The longest answer head a proxy may give to `CONNECT`.
const MAX_CONNECT_HEAD: usize = 8 << 10;

/// Connects to `proxy` and asks it for a tunnel to `host:port`; the stream then carries the
/// server's bytes. Not bounded in time: the caller bounds the whole request.
pub async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> std::io::Result<TcpStream> {
    match proxy.kind {
        Kind::Http => http_connect(proxy, host, port).await,
        Kind::Socks5 => socks5_connect(proxy, host, port).await,
    }
}

/// SOCKS5, the host named as Go's client names it (its name, for the proxy to resolve, or
/// its address), with username/password authentication when the proxy's URL has a user.
async fn socks5_connect(proxy: &Proxy, host: &str, port: u16) -> std::io::Result<TcpStream> {
    let at = (proxy.host.as_str(), proxy.port);
    let stream = match &proxy.credentials {
        Some((user, password)) => Socks5Stream::connect_with_password(at, (host, port), user, password).await,
        None => Socks5Stream::connect(at, (host, port)).await,
    };
    stream.map(Socks5Stream::into_inner).map_err(|e| std::io::Error::other(format!("SOCKS5: {e}")))
}

async fn http_connect(proxy: &Proxy, host: &str, port: u16) -> std::io::Result<TcpStream> {
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
