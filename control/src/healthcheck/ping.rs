//! `ping`: the backend is healthy when it accepts a TCP connection.

use std::net::SocketAddr;
use tokio::net::TcpStream;

pub async fn check(addrs: &[SocketAddr]) -> bool {
    for addr in addrs {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
    }
    false
}
