//! Connecting from a chosen loopback source address (127.x.y.z or ::1), so one test process can
//! act as many different clients.
#![allow(dead_code)]

use socket2::{Domain, Socket, Type};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A connection to `target` whose source address is `source`.
pub fn connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// The name the backend behind the proxy sends to a client at `source`; `None` when the proxy
/// closes the connection without one.
pub fn ask_name_from(source: IpAddr, target: SocketAddr) -> Option<String> {
    let mut stream = connect_from(source, target).ok()?;
    super::common::read_line(&mut stream)
}

/// The `n`-th of many distinct IPv4 loopback client addresses (127.0.1.1, 127.0.1.2, ...).
pub fn client(n: usize) -> IpAddr {
    IpAddr::from([127, 0, 1 + (n / 250) as u8, 1 + (n % 250) as u8])
}
