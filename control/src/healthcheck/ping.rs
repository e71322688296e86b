//! `ping`: the backend is healthy when it accepts a TCP connection.

use super::Failure;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Tries each address in turn; fails with every address's error when none accepts.
pub async fn check(addrs: &[SocketAddr]) -> Result<(), Failure> {
    let mut failures = Vec::new();
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) => failures.push(format!("connect to {addr}: {e}")),
        }
    }
    Err(if failures.is_empty() { "no address to connect to".to_string() } else { failures.join("; ") })
}
