//! Binding the listening sockets of a server: one `SO_REUSEPORT` socket per shard, all bound by
//! the control thread so that a busy port is reported to the caller at once.

use crate::plane::Listener;
use crate::upgrade;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};

/// Resolves a gobetween bind string. `":port"` means every interface, IPv4 and IPv6, and so
/// does `"0.0.0.0:port"` (see `wildcard`).
pub fn resolve_bind(bind: &str) -> io::Result<SocketAddr> {
    if let Some(port) = bind.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid port in {bind:?}")))?;
        return Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
    }
    let mut addrs: Vec<SocketAddr> = bind.to_socket_addrs()?.collect();
    // Prefer IPv4 for names like "localhost", as gobetween (Go's resolver) does.
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = addrs
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{bind:?} resolves to no address")))?;
    Ok(wildcard(addr, ipv4_mapped_supported()))
}

/// The address a listener on `addr` binds. gobetween listens with Go's `net.Listen`, which
/// serves an IPv4 wildcard (`0.0.0.0`, or `::ffff:0.0.0.0`) on a dual-stack IPv6 socket
/// wherever the host supports IPv4-mapped addresses: its `bind = "0.0.0.0:3000"` takes IPv6
/// clients too, and betwixt's does the same (`[::]`, `IPV6_V6ONLY` off). Without mapped
/// addresses, an IPv4 socket.
fn wildcard(addr: SocketAddr, ipv4_mapped: bool) -> SocketAddr {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) if ip.is_unspecified() && ipv4_mapped => {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, addr.port()))
        }
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((ip, addr.port())),
        _ => addr,
    }
}

/// Whether listeners on `a` and `b` would receive some of the same connections. `SO_REUSEPORT`
/// lets both bind, and the kernel then gives each connection to one of them, so a server could
/// be left without traffic. A v4-mapped address (`[::ffff:127.0.0.1]`) is its IPv4 address;
/// `0.0.0.0` takes every IPv4 address, and `[::]` (bound dual-stack) every address.
pub fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wide: IpAddr, other: IpAddr| {
        wide == other || (wide.is_unspecified() && (wide.is_ipv6() || other.is_ipv4()))
    };
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() != 0 && a.port() == b.port() && (covers(x, y) || covers(y, x))
}

/// Whether this host can serve IPv4 clients on an IPv6 socket (`::ffff:a.b.c.d`). Go asks the
/// same question (`supportsIPv4map`: bind an `IPV6_V6ONLY=0` socket to `::ffff:127.0.0.1`) to
/// decide that a wildcard bind gets a dual-stack IPv6 socket; gobetween's `iphash` therefore
/// sees IPv4 clients of such a server as 16 bytes, and betwixt hashes them alike.
pub fn ipv4_mapped_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let probe = || -> io::Result<()> {
            let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_only_v6(false)?;
            let mapped = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 0));
            socket.bind(&mapped.into())
        };
        probe().is_ok()
    })
}

/// A socket to listen on `addr` (from `resolve_bind`), with `SO_REUSEADDR`: `[::]` (from
/// `":port"` or `"0.0.0.0:port"`) takes IPv4 clients too, whatever the host's
/// `net.ipv6.bindv6only` says, as Go's listeners do.
fn listening_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Sockets are created blocking; the shard that takes a listener makes it non-blocking.
fn reuseport_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = listening_socket(addr, kind, protocol)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A non-blocking listener of the control thread's own (API, metrics, ACME's HTTP-01).
pub fn http_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = listening_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds `count` TCP listeners sharing one address. Port 0 is resolved once and then reused.
/// Listeners a predecessor handed over (`upgrade`) are taken rather than bound, and any it had
/// beyond `count` are returned too.
pub fn bind_tcp(bind: &str, count: usize) -> io::Result<Vec<Listener>> {
    bind_shards(bind, count, false, |addr| {
        let socket = reuseport_socket(addr, Type::STREAM, Protocol::TCP)?;
        // Accepted sockets inherit these, so connections need no setsockopt of their own. Set
        // before `listen`: a connection queued before it would not have them.
        socket.set_nodelay(true)?;
        keep_alive(socket.as_raw_fd())?;
        if let Err(e) = report_remaining(socket.as_raw_fd()) {
            // Kernels before 4.18: reads learn of a FIN one read later (see `report_remaining`).
            log::debug!("{bind}: no TCP_INQ: {e}");
        }
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        Ok((listener.local_addr()?, Listener::Tcp(listener)))
    })
}

/// TCP keepalive as Go (and so gobetween) sets it on every connection it accepts: a probe after
/// 15 s of silence, then every 15 s, the connection ended after 9 unanswered, so a client that
/// vanished without a FIN or a reset is let go after about 150 s rather than held for good.
pub fn keep_alive(fd: RawFd) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 15)?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 15)?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 9)
}

/// `TCP_INQ` on: each `recvmsg` on the socket then also reports what it still holds, which
/// lets the data plane see a FIN that came with the last bytes in the read that returns them,
/// and send those bytes on with a FIN of its own in one segment. Sockets accepted from a
/// listener inherit it.
pub fn report_remaining(fd: RawFd) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_INQ, 1)
}

/// Sets a socket option that takes an int, for the options `socket2` does not offer.
pub fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a plain setsockopt on an open socket, with an int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds `count` UDP sockets sharing one address: the kernel hashes each client address to one
/// of them, so a client's datagrams always reach the same shard. Port 0 is resolved once.
/// Sockets handed over are taken as in `bind_tcp`.
pub fn bind_udp(bind: &str, count: usize) -> io::Result<Vec<Listener>> {
    bind_shards(bind, count, true, |addr| {
        let socket = reuseport_socket(addr, Type::DGRAM, Protocol::UDP)?;
        // Bursts of datagrams wait here while the shard works; the kernel caps the request.
        let _ = socket.set_recv_buffer_size(UDP_BUFFER);
        let _ = socket.set_send_buffer_size(UDP_BUFFER);
        let socket: std::net::UdpSocket = socket.into();
        Ok((socket.local_addr()?, Listener::Udp(socket)))
    })
}

/// One socket per shard on `bind`: a handed-over one where there is one for that shard, else
/// one made by `make`, which answers the address it bound (port 0 becomes the port the first
/// socket got); then the handed-over sockets beyond `count`.
fn bind_shards(
    bind: &str,
    count: usize,
    udp: bool,
    make: impl Fn(SocketAddr) -> io::Result<(SocketAddr, Listener)>,
) -> io::Result<Vec<Listener>> {
    let mut addr = resolve_bind(bind)?;
    let mut listeners = Vec::with_capacity(count);
    for shard in 0..count {
        if let Some(inherited) = upgrade::take_server(udp, addr, shard) {
            listeners.push(inherited);
            continue;
        }
        let (bound, listener) = make(addr)?;
        addr = bound;
        listeners.push(listener);
    }
    listeners.extend(upgrade::take_extra_servers(udp, addr));
    Ok(listeners)
}

/// Receive and send buffer asked for a UDP server socket (the kernel caps it at `rmem_max`).
const UDP_BUFFER: usize = 4 << 20;

/// Lets `socket` bind an address that is not this host's (a client's, for `udp.transparent`)
/// and receive datagrams sent to it once policy routing delivers them locally.
pub fn set_transparent(socket: &Socket, domain: Domain) -> io::Result<()> {
    if domain == Domain::IPV6 {
        return set_int_option(socket.as_raw_fd(), libc::SOL_IPV6, libc::IPV6_TRANSPARENT, 1);
    }
    socket.set_ip_transparent(true)
}

/// Checks at a transparent UDP server's start that this process may set `IP_TRANSPARENT`
/// (it needs `CAP_NET_ADMIN` or `CAP_NET_RAW`), rather than failing on each session later.
pub fn check_transparent() -> Result<(), String> {
    let probe = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .and_then(|socket| set_transparent(&socket, Domain::IPV4));
    match probe {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(format!(
            "transparent mode needs CAP_NET_ADMIN (setting IP_TRANSPARENT was refused: {e}); \
             run betwixt as root or grant it: setcap cap_net_admin+ep /path/to/betwixt"
        )),
        Err(e) => Err(format!("transparent mode: cannot set IP_TRANSPARENT: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_share_one_port() {
        let port = |l: &Listener| match l {
            Listener::Tcp(l) => l.local_addr().unwrap().port(),
            Listener::Udp(s) => s.local_addr().unwrap().port(),
        };
        for listeners in [bind_tcp("127.0.0.1:0", 3).unwrap(), bind_udp("127.0.0.1:0", 3).unwrap()] {
            let ports: Vec<u16> = listeners.iter().map(port).collect();
            assert!(ports.iter().all(|&p| p == ports[0] && p != 0));
        }
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listeners = bind_tcp("127.0.0.1:0", 1).unwrap();
        let Listener::Tcp(listener) = &listeners[0] else { unreachable!() };
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn overlapping_addresses() {
        let overlap = |a: &str, b: &str| overlaps(a.parse().unwrap(), b.parse().unwrap());
        for (a, b) in [
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.1:80"),
            ("[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.1]:80"),
            ("[::ffff:0.0.0.0]:80", "10.0.0.1:80"),
            ("0.0.0.0:80", "127.0.0.1:80"),
            ("0.0.0.0:80", "[::ffff:127.0.0.1]:80"),
            ("[::]:80", "0.0.0.0:80"),
            ("[::]:80", "127.0.0.1:80"),
            ("[::]:80", "[::1]:80"),
        ] {
            assert!(overlap(a, b) && overlap(b, a), "{a} and {b} overlap");
        }
        for (a, b) in [
            ("127.0.0.1:80", "127.0.0.1:81"),
            ("127.0.0.1:80", "127.0.0.2:80"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.2:80"),
            ("0.0.0.0:80", "[::1]:80"),
            ("[::1]:80", "127.0.0.1:80"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ] {
            assert!(!overlap(a, b) && !overlap(b, a), "{a} and {b} do not overlap");
        }
    }

    #[test]
    fn colon_port_is_every_interface() {
        assert_eq!(resolve_bind(":8080").unwrap(), "[::]:8080".parse().unwrap());
        assert!(resolve_bind("localhost:1").unwrap().is_ipv4());
    }

    #[test]
    fn an_ipv4_wildcard_is_dual_stack_where_mapped_addresses_work() {
        let at = |a: &str, mapped: bool| wildcard(a.parse().unwrap(), mapped).to_string();
        for any in ["0.0.0.0:80", "[::ffff:0.0.0.0]:80"] {
            assert_eq!(at(any, true), "[::]:80");
            assert_eq!(at(any, false), "0.0.0.0:80");
        }
        for kept in ["127.0.0.1:80", "[::]:80", "[::1]:80", "[::ffff:127.0.0.1]:80"] {
            assert_eq!(at(kept, true), kept);
        }
    }
}
