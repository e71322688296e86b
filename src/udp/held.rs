//! A udp server's socket on its shard, and the slot's mark that the shard holds it
//! (`ServerSlot::hold_socket`). The control thread reads the mark to know the port is still
//! taken by a removed server whose sessions drain. The mark comes down only once the socket is
//! closed: the serving task may end before a session's reply task lets go of the socket, and a
//! port marked free while still open would be shared, through `SO_REUSEPORT`, with the next
//! server bound on it.

use betwixt_control::plane::ServerSlot;
use std::mem::ManuallyDrop;
use std::net::UdpSocket;
use std::ops::Deref;
use std::sync::Arc;

pub struct HeldSocket {
    socket: ManuallyDrop<UdpSocket>,
    slot: Arc<ServerSlot>,
}

impl HeldSocket {
    pub fn new(socket: UdpSocket, slot: Arc<ServerSlot>) -> HeldSocket {
        slot.hold_socket(true);
        HeldSocket { socket: ManuallyDrop::new(socket), slot }
    }
}

impl Deref for HeldSocket {
    type Target = UdpSocket;

    fn deref(&self) -> &UdpSocket {
        &self.socket
    }
}

impl Drop for HeldSocket {
    fn drop(&mut self) {
        // SAFETY: the socket is dropped here once, and `self` is not used after `drop`.
        unsafe { ManuallyDrop::drop(&mut self.socket) };
        self.slot.hold_socket(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use betwixt_control::config::{Protocol, Server};
    use betwixt_control::plane::Listener;
    use betwixt_control::server::ServerHandle;
    use betwixt_control::stats::Counters;

    fn slot() -> Arc<ServerSlot> {
        let server =
            Server { bind: "127.0.0.1:1".into(), protocol: Some(Protocol::Udp), ..Server::default() };
        let settings = Arc::new(server.resolve("s", None).0);
        let snapshot = ServerHandle::empty_snapshot(&settings, &Arc::new(Counters::new(1)));
        let placeholder = UdpSocket::bind("127.0.0.1:0").unwrap();
        ServerSlot::new("s", Listener::Udp(placeholder), snapshot)
    }

    #[test]
    fn the_port_is_marked_free_only_once_the_socket_is_closed() {
        let slot = slot();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let held = HeldSocket::new(socket, slot.clone());
        assert!(slot.holds_socket());
        // Without `SO_REUSEPORT` a second bind fails while the socket is open.
        assert!(UdpSocket::bind(addr).is_err());
        drop(held);
        assert!(!slot.holds_socket());
        UdpSocket::bind(addr).expect("the port is free once the mark is down");
    }
}
