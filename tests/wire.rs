//! What betwixt puts on the wire, watched with a packet socket on the loopback interface
//! (which needs root; the test says so and returns without it). On its own in this file:
//! cargo runs test files one at a time, and other tests' bulk traffic would overflow the
//! packet socket's queue.

mod common;

use common::{free_port, Betwixt};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

/// A reply that reaches betwixt together with the backend's FIN leaves it together with a FIN
/// too, in one segment, and so does a request that comes with the client's FIN: betwixt learns
/// of the end of stream from the read that returns the bytes (`TCP_INQ`) and holds them back
/// for the FIN (`MSG_MORE`), as HAProxy merges them. Watched on the wire: a packet socket on
/// the loopback interface sees every segment of the two connections.
#[test]
fn bytes_that_come_with_a_fin_leave_with_a_fin() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root, for a packet socket on the loopback interface");
        return;
    }
    let capture = capture::Capture::open();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = listener.local_addr().unwrap().port();
    let reply = b"a reply that ends the stream".to_vec();
    let backend = thread::spawn({
        let reply = reply.clone();
        move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).unwrap();
            corked_last_write(&mut stream, &reply);
            request
        }
    });
    let port = free_port();
    let backend_line = format!("127.0.0.1:{backend_port}");
    let server = format!(
        "[servers.fin]\nbind = \"127.0.0.1:{port}\"\n[servers.fin.discovery]\nkind = \"static\"\nstatic_list = [\"{backend_line}\"]\n"
    );
    let _betwixt = Betwixt::start(&server, &["--shards", "1"], &[port]);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    let request = b"a request that ends the stream".to_vec();
    corked_last_write(&mut client, &request);
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, reply);
    assert_eq!(backend.join().unwrap(), request);

    let segments = capture.segments(std::time::Duration::from_millis(300));
    let fins = |from: u16, to: u16| -> Vec<usize> {
        segments.iter().filter(|s| s.from == from && s.to == to && s.fin).map(|s| s.payload).collect()
    };
    let ours: Vec<_> = segments
        .iter()
        .filter(|s| [s.from, s.to].iter().any(|p| [port, client_port, backend_port].contains(p)))
        .collect();
    assert_eq!(fins(port, client_port), [reply.len()], "betwixt → client: one FIN, with the reply: {ours:?}");
    let to_backend: Vec<_> = segments
        .iter()
        .filter(|s| s.to == backend_port && s.from != port && s.fin)
        .map(|s| s.payload)
        .collect();
    assert_eq!(to_backend, [request.len()], "betwixt → backend: one FIN, with the request: {ours:?}");
}

/// Writes `bytes` and shuts the sending side: corked, so that they and the FIN go in one segment.
fn corked_last_write(stream: &mut TcpStream, bytes: &[u8]) {
    let socket = socket2::SockRef::from(&*stream);
    socket.set_cork(true).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
}

/// TCP segments seen on the loopback interface.
mod capture {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    #[derive(Debug)]
    pub struct Segment {
        pub from: u16,
        pub to: u16,
        pub fin: bool,
        /// Bytes of data the segment carries.
        pub payload: usize,
    }

    /// A packet socket for IPv4 on `lo`.
    pub struct Capture(OwnedFd);

    impl Capture {
        pub fn open() -> Capture {
            let protocol = (libc::ETH_P_IP as u16).to_be();
            // SAFETY: plain socket creation; the descriptor is owned below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, protocol.into()) };
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            // SAFETY: a fresh descriptor nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: all-zero is a valid sockaddr_ll; the fields used are set.
            let mut place: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            place.sll_family = libc::AF_PACKET as u16;
            place.sll_protocol = protocol;
            // SAFETY: a NUL-terminated name.
            place.sll_ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: binds to the address above, of the size given.
            let r = unsafe { libc::bind(fd.as_raw_fd(), (&place as *const libc::sockaddr_ll).cast(), len) };
            assert_eq!(r, 0, "bind to lo: {}", std::io::Error::last_os_error());
            let capture = Capture(fd);
            // Room for whatever else runs on the machine meanwhile (the kernel caps it).
            socket2::SockRef::from(&capture.0).set_recv_buffer_size(8 << 20).unwrap();
            capture
        }

        /// Every TCP segment received on `lo` since `open`, until none came for `quiet`.
        /// Each segment is seen once, as it arrives (not again as it leaves).
        pub fn segments(&self, quiet: Duration) -> Vec<Segment> {
            let mut segments = Vec::new();
            let mut last = Instant::now();
            let mut packet = [0u8; 65536];
            while last.elapsed() < quiet {
                // SAFETY: all-zero is a valid sockaddr_ll for the kernel to fill in.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: the kernel writes at most the sizes given into `packet` and `from`.
                let n = unsafe {
                    libc::recvfrom(
                        self.0.as_raw_fd(),
                        packet.as_mut_ptr().cast(),
                        packet.len(),
                        libc::MSG_DONTWAIT,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                if n < 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                last = Instant::now();
                if from.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                segments.extend(parse(&packet[..n as usize]));
            }
            segments
        }
    }

    /// An IPv4 packet's TCP segment, if it is one.
    fn parse(ip: &[u8]) -> Option<Segment> {
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != libc::IPPROTO_TCP as u8 {
            return None;
        }
        let header = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = ip.get(header..total)?;
        let offset = usize::from(*tcp.get(12)? >> 4) * 4;
        Some(Segment {
            from: u16::from_be_bytes([tcp[0], tcp[1]]),
            to: u16::from_be_bytes([tcp[2], tcp[3]]),
            fin: tcp[13] & 0x01 != 0,
            payload: tcp.len().checked_sub(offset)?,
        })
    }
}
