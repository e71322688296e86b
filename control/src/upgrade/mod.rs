//! Binary upgrade: a new betwixt takes the listening sockets of the running one, so that no
//! client is refused while the binary changes (see `docs/upgrade.md`).
//!
//! The running process offers its sockets on a unix socket (`wire`); its successor receives
//! them and files them here, in the inherited-socket registry. Binding consults the registry
//! first (`bind_tcp`, `bind_udp`, the API and metrics listeners): a socket handed over for the
//! same protocol, address and shard is taken instead of binding a new one. The kernel socket,
//! with the connections queued on it, is then shared by both processes until the old one stops
//! accepting and lets go of its copy, so nothing is closed in between.

pub mod wire;

use crate::control::Control;
use crate::plane::Listener;
use socket2::{Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// What a handed-over socket is, as the successor needs to know it. The protocol and address
/// are read from the socket itself; the description only places it.
#[derive(Debug)]
pub struct Handed {
    /// For the logs: `server NAME`, `api` or `metrics`.
    pub what: String,
    /// The shard that served it; `None` for the API and metrics listeners.
    pub shard: Option<usize>,
    pub fd: OwnedFd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
}

/// A socket received from the predecessor and not taken yet.
#[derive(Debug)]
struct Inherited {
    kind: Kind,
    addr: SocketAddr,
    shard: Option<usize>,
    what: String,
    fd: OwnedFd,
}

static INHERITED: Mutex<Vec<Inherited>> = Mutex::new(Vec::new());

fn inherited() -> std::sync::MutexGuard<'static, Vec<Inherited>> {
    INHERITED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Files the sockets received from the predecessor. One that is neither a bound TCP nor UDP
/// socket is closed and reported.
pub fn inherit(handed: Vec<Handed>) -> Result<usize, String> {
    let mut registry = inherited();
    for Handed { what, shard, fd } in handed {
        let socket = Socket::from(fd);
        let kind = match socket.r#type() {
            Ok(Type::STREAM) => Kind::Tcp,
            Ok(Type::DGRAM) => Kind::Udp,
            other => return Err(format!("{what}: handed over a socket of type {other:?}")),
        };
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| format!("{what}: handed over a socket with no IP address"))?;
        registry.push(Inherited { kind, addr, shard, what, fd: socket.into() });
    }
    Ok(registry.len())
}

fn take(kind: Kind, addr: SocketAddr, shard: Option<usize>) -> Option<OwnedFd> {
    take_where(kind, shard, |held| held == addr)
}

fn take_where(kind: Kind, shard: Option<usize>, serves: impl Fn(SocketAddr) -> bool) -> Option<OwnedFd> {
    let mut registry = inherited();
    let at = registry.iter().position(|i| i.kind == kind && serves(i.addr) && i.shard == shard)?;
    let taken = registry.swap_remove(at);
    log::debug!("{}: listening on {} with the socket handed over", taken.what, taken.addr);
    Some(taken.fd)
}

fn wrap(kind: Kind, fd: OwnedFd) -> Listener {
    match kind {
        Kind::Tcp => Listener::Tcp(fd.into()),
        Kind::Udp => Listener::Udp(fd.into()),
    }
}

/// The server socket handed over for `addr` and `shard`, if any.
pub fn take_server(udp: bool, addr: SocketAddr, shard: usize) -> Option<Listener> {
    let kind = if udp { Kind::Udp } else { Kind::Tcp };
    take(kind, addr, Some(shard)).map(|fd| wrap(kind, fd))
}

/// Whether `held`, a socket from the predecessor, is what an older betwixt bound for a bind
/// that now gets `wanted`: before IPv4 wildcards were bound dual-stack (`bind::resolve_bind`),
/// `"0.0.0.0:P"` was an IPv4 socket, and `[::]:P` is bound for it now.
fn ipv4_only_before(held: SocketAddr, wanted: SocketAddr) -> bool {
    held.ip() == Ipv4Addr::UNSPECIFIED && wanted.ip() == Ipv6Addr::UNSPECIFIED && held.port() == wanted.port()
}

/// Server sockets for `addr` left over once every shard has one: the predecessor ran more
/// shards, or (an older betwixt) bound the IPv4 wildcard where `addr` is now dual-stack. They
/// are served too (by the shards in turn), never closed: connections already queued on a
/// closed listener would be reset.
pub fn take_extra_servers(udp: bool, addr: SocketAddr) -> Vec<Listener> {
    let kind = if udp { Kind::Udp } else { Kind::Tcp };
    let mut registry = inherited();
    let (extra, rest): (Vec<Inherited>, Vec<Inherited>) =
        std::mem::take(&mut *registry).into_iter().partition(|i| {
            i.kind == kind && (i.addr == addr || ipv4_only_before(i.addr, addr)) && i.shard.is_some()
        });
    *registry = rest;
    extra.into_iter().map(|i| wrap(kind, i.fd)).collect()
}

/// The API or metrics listener handed over for `addr`, if any. An older betwixt's IPv4
/// wildcard listener is taken for `[::]` too: a second listener could not bind beside it, and
/// closing it would reset the requests queued on it. It stays IPv4-only until a restart.
pub fn take_http(addr: SocketAddr) -> Option<std::net::TcpListener> {
    take(Kind::Tcp, addr, None)
        .or_else(|| take_where(Kind::Tcp, None, |held| ipv4_only_before(held, addr)))
        .map(Into::into)
}

/// Closes what the configuration no longer listens on (a removed server, a moved API) and
/// names it. Called once the successor has bound everything it serves.
pub fn release_unused() -> Vec<String> {
    std::mem::take(&mut *inherited()).into_iter().map(|i| format!("{} ({})", i.what, i.addr)).collect()
}

/// Duplicates of every listening socket this process serves on, to hand to a successor: each
/// running server's socket per shard, then the API and metrics listeners. A server removed
/// meanwhile is left out (see below), so this may run beside the control thread.
pub fn listeners(control: &Control) -> std::io::Result<Vec<Handed>> {
    let shards = control.plane.shard_count().max(1);
    let mut handed = Vec::new();
    for handle in control.servers() {
        for (i, slot) in handle.slots.iter().enumerate() {
            let fd = dup(slot.listener_fd())?;
            // The shard closes a listener only after its slot is marked closed: a slot still
            // open after the duplicate was made proves the descriptor was still this socket.
            if slot.is_closed() {
                continue;
            }
            handed.push(Handed { what: format!("server {}", handle.name), shard: Some(i % shards), fd });
        }
    }
    for (what, fd) in crate::api::serve::handed_listeners()? {
        handed.push(Handed { what: what.to_string(), shard: None, fd });
    }
    Ok(handed)
}

/// `F_DUPFD_CLOEXEC` of a descriptor this process owns.
pub(crate) fn dup(fd: std::os::fd::RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: borrowed only for the duration of the call; the caller guarantees it is open.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

/// Marks every server socket as handed over, so that stopping them leaves the kernel socket
/// alone (no `shutdown(2)`, which would stop it for the successor too), then stops accepting
/// everywhere as a shutdown does; the successor accepts from here on.
pub fn hand_over(control: &Control) {
    for handle in control.servers() {
        handle.slots.iter().for_each(|slot| slot.hand_over());
    }
    control.shut_down();
    crate::api::serve::stop_accepting();
}

/// For tests: whether `fd` is a socket with this address.
#[cfg(test)]
fn address_of(fd: &impl std::os::fd::AsFd) -> Option<SocketAddr> {
    let socket = Socket::from(fd.as_fd().try_clone_to_owned().ok()?);
    socket.local_addr().ok()?.as_socket()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn handed(what: &str, shard: Option<usize>, fd: OwnedFd) -> Handed {
        Handed { what: what.into(), shard, fd }
    }

    #[test]
    fn inherited_sockets_are_matched_by_protocol_address_and_shard() {
        let tcp = crate::bind::bind_tcp("127.0.0.1:0", 3).unwrap();
        let udp = crate::bind::bind_udp("127.0.0.1:0", 1).unwrap();
        let fd = |l: &Listener| match l {
            Listener::Tcp(l) => l.as_fd().try_clone_to_owned().unwrap(),
            Listener::Udp(s) => s.as_fd().try_clone_to_owned().unwrap(),
        };
        let tcp_addr = address_of(&fd(&tcp[0])).unwrap();
        let udp_addr = address_of(&fd(&udp[0])).unwrap();
        let list = vec![
            handed("server a", Some(0), fd(&tcp[0])),
            handed("server a", Some(1), fd(&tcp[1])),
            handed("server a", Some(2), fd(&tcp[2])),
            handed("server u", Some(0), fd(&udp[0])),
        ];
        inherit(list).unwrap();
        // The wrong protocol, the wrong shard: not taken.
        assert!(take_server(true, tcp_addr, 0).is_none());
        assert!(take_server(false, tcp_addr, 5).is_none());
        assert!(take_http(tcp_addr).is_none());
        let Some(Listener::Tcp(first)) = take_server(false, tcp_addr, 0) else { panic!("shard 0") };
        assert_eq!(first.local_addr().unwrap(), tcp_addr);
        assert!(take_server(false, tcp_addr, 0).is_none(), "taken once");
        // A successor with one shard serves the other two as extras.
        assert_eq!(take_extra_servers(false, tcp_addr).len(), 2);
        assert!(matches!(take_server(true, udp_addr, 0), Some(Listener::Udp(_))));
        assert!(release_unused().is_empty());

        // An older betwixt bound "0.0.0.0:P" as IPv4, where "[::]:P" is bound now: its server
        // sockets are served beside the new ones and its API listener is taken. (Loopback
        // sockets stand in for them: only the addresses they were filed under matter here.)
        let older = |what: &str, shard: Option<usize>, addr: &str| Inherited {
            kind: Kind::Tcp,
            addr: addr.parse().unwrap(),
            shard,
            what: what.into(),
            fd: fd(&tcp[0]),
        };
        inherited().push(older("server old", Some(0), "0.0.0.0:7000"));
        inherited().push(older("api", None, "0.0.0.0:7001"));
        let dual = |port: u16| SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        assert!(take_server(false, dual(7000), 0).is_none(), "a shard binds its dual-stack socket");
        assert_eq!(take_extra_servers(false, dual(7000)).len(), 1);
        assert!(take_http(dual(7001)).is_some());
        assert!(release_unused().is_empty());
        let stray = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        inherit(vec![handed("api", None, stray.as_fd().try_clone_to_owned().unwrap())]).unwrap();
        assert_eq!(release_unused().len(), 1);
    }

    #[test]
    fn only_the_ipv4_wildcard_on_the_same_port_stands_for_a_dual_stack_bind() {
        let before =
            |held: &str, wanted: &str| ipv4_only_before(held.parse().unwrap(), wanted.parse().unwrap());
        assert!(before("0.0.0.0:80", "[::]:80"));
        assert!(!before("0.0.0.0:81", "[::]:80"));
        assert!(!before("127.0.0.1:80", "[::]:80"));
        assert!(!before("0.0.0.0:80", "0.0.0.0:80"), "an exact match is not this");
        assert!(!before("[::]:80", "[::]:80"));
    }

    #[test]
    fn a_socket_of_another_kind_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = inherit(vec![handed("api", None, a.into())]).unwrap_err();
        assert!(e.contains("no IP address"), "{e}");
    }
}
