//! One keep-alive HTTP/1.1 exchange at a time on a blocking socket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, buffer: Vec::with_capacity(1024) })
    }

    /// Sends one request and reads the whole response (headers and Content-Length body).
    pub fn exchange(&mut self) -> io::Result<()> {
        self.stream.write_all(REQUEST)?;
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
            if let Some(total) = response_length(&self.buffer) {
                if self.buffer.len() >= total {
                    return Ok(());
                }
            }
        }
    }
}

/// Length of the whole response once its headers are complete.
pub fn response_length(bytes: &[u8]) -> Option<usize> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let body = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    Some(head_end + body)
}

#[cfg(test)]
mod tests {
    use super::response_length;

    #[test]
    fn length_counts_headers_and_body() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab";
        assert_eq!(response_length(response), Some(response.len() + 1));
        assert_eq!(response_length(b"HTTP/1.1 200 OK\r\nContent-"), None);
        assert_eq!(response_length(b"HTTP/1.1 204 No Content\r\n\r\n"), Some(27));
    }
}
