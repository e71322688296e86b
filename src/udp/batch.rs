//! `recvmmsg` and `sendmmsg`: many datagrams per system call, from the server socket and a
//! session's, and to them. The only unsafe code of the UDP path is here.

use crate::sock::socket_call;
use socket2::SockAddr;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// The largest UDP payload (IPv6 jumbograms aside): a datagram is never cut short.
pub const MAX_DATAGRAM: usize = 65_536;

/// Receive slots of `MAX_DATAGRAM` bytes each. The buffer is allocated zeroed, so the kernel
/// maps its pages lazily: only the pages datagrams were written into are ever resident.
pub struct RecvBatch {
    buffers: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(slots: usize) -> RecvBatch {
        let mut batch = RecvBatch {
            buffers: vec![0; slots * MAX_DATAGRAM],
            // SAFETY: all-zero is a valid (empty) value of these plain C structs.
            addrs: vec![unsafe { std::mem::zeroed() }; slots],
            iovecs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; slots],
            headers: vec![unsafe { std::mem::zeroed() }; slots],
        };
        // The headers point into the vectors' heap blocks, which never move (the vectors are
        // never resized), so they are set up once; `recv` only resets what the kernel writes.
        let base = batch.buffers.as_mut_ptr();
        for i in 0..slots {
            // SAFETY: slot `i` lies within `buffers` (slots * MAX_DATAGRAM bytes).
            batch.iovecs[i] =
                libc::iovec { iov_base: unsafe { base.add(i * MAX_DATAGRAM) }.cast(), iov_len: MAX_DATAGRAM };
            let header = &mut batch.headers[i].msg_hdr;
            header.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
            header.msg_iov = &mut batch.iovecs[i];
            header.msg_iovlen = 1;
        }
        batch
    }

    /// Receives the datagrams queued on `fd` (up to the number of slots) without waiting.
    /// `Ok(0)`: none is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let slots = self.headers.len();
        for header in &mut self.headers {
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points into buffers owned by `self`, alive for the call.
        let n = unsafe {
            let headers = self.headers.as_mut_ptr() as _;
            socket_call(libc::SYS_recvmmsg, [fd as _, headers, slots as _, libc::MSG_DONTWAIT as _, 0, 0])
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        }
    }

    /// The payload of datagram `i` of the last `recv`.
    pub fn payload(&self, i: usize) -> &[u8] {
        let len = (self.headers[i].msg_len as usize).min(MAX_DATAGRAM);
        let start = i * MAX_DATAGRAM;
        &self.buffers[start..start + len]
    }

    /// Datagram `i` of the last `recv` and its sender (`None` for a sender that is no IP
    /// address, which a UDP socket never reports).
    pub fn datagram(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        // SAFETY: the kernel filled `msg_namelen` bytes of this `sockaddr_storage`.
        let addr = unsafe { SockAddr::new(self.addrs[i], self.headers[i].msg_hdr.msg_namelen) };
        (self.payload(i), addr.as_socket())
    }
}

/// Sends up to this many datagrams per call of [`send`].
pub const SEND_SLOTS: usize = 32;

/// Sends `datagrams` through `fd` with `sendmmsg`, to `to` (`None`: the socket's connected
/// peer), and tells `each` how each one went, in order: the bytes sent or the error. A
/// datagram the kernel refuses is passed over and the rest still go; once the socket's
/// buffer is full (`WouldBlock`) the remaining ones are reported so without more calls.
pub fn send(fd: RawFd, datagrams: &[&[u8]], to: Option<&SockAddr>, mut each: impl FnMut(io::Result<usize>)) {
    let datagrams = match send_segmented(fd, datagrams, to, &mut each) {
        Some(rest) => rest,
        None => return,
    };
    for chunk in datagrams.chunks(SEND_SLOTS) {
        let mut iovecs = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; SEND_SLOTS];
        // SAFETY: all-zero is a valid (empty) value of this plain C struct.
        let mut headers: [libc::mmsghdr; SEND_SLOTS] = unsafe { std::mem::zeroed() };
        for (i, data) in chunk.iter().enumerate() {
            // The kernel only reads through `iov_base` for a send.
            iovecs[i] = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
            let header = &mut headers[i].msg_hdr;
            if let Some(to) = to {
                header.msg_name = to.as_ptr().cast_mut().cast();
                header.msg_namelen = to.len();
            }
            header.msg_iov = &mut iovecs[i];
            header.msg_iovlen = 1;
        }
        let mut start = 0;
        while start < chunk.len() {
            // SAFETY: headers `start..chunk.len()` point at `iovecs`, `chunk`'s slices and `to`,
            // all alive for the call; the kernel writes only `msg_len`.
            let n = unsafe {
                let (pending, count) = (headers[start..].as_mut_ptr() as _, (chunk.len() - start) as _);
                socket_call(libc::SYS_sendmmsg, [fd as _, pending, count, libc::MSG_DONTWAIT as _, 0, 0])
            };
            if n > 0 {
                for header in &headers[start..start + n as usize] {
                    each(Ok(header.msg_len as usize));
                }
                start += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                for _ in start..chunk.len() {
                    each(Err(io::ErrorKind::WouldBlock.into()));
                }
                break;
            }
            each(Err(e));
            start += 1;
        }
    }
}

/// `UDP_SEGMENT` (linux/udp.h; not in the libc crate for glibc targets).
const UDP_SEGMENT: libc::c_int = 103;

/// The kernel's cap on segments per GSO send (`UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;

/// The largest payload of one GSO send: the datagrams together must fit one IP packet.
const MAX_SEGMENTED_PAYLOAD: usize = 65_507 - 8;

thread_local! {
    /// The largest segment size worth trying: lowered below a size the kernel refused (a
    /// segment must fit the path's MTU, and a device may lack checksum offload), zero when it
    /// has no UDP GSO at all, so a refused send is not tried again on every batch.
    static SEGMENT_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// UDP GSO: datagrams of one size (the last may be shorter) leave in one `sendmsg`, the
/// kernel cutting them apart, so the stack is walked once for all of them. Returns the
/// datagrams still to send (all of them when GSO does not apply, the rest after a datagram the
/// kernel refused), or `None` when every one has been reported to `each`.
fn send_segmented<'d>(
    fd: RawFd,
    datagrams: &'d [&'d [u8]],
    to: Option<&SockAddr>,
    each: &mut impl FnMut(io::Result<usize>),
) -> Option<&'d [&'d [u8]]> {
    let size = datagrams.first().map_or(0, |d| d.len());
    let (last, whole) = datagrams.split_last()?;
    let applies = datagrams.len() >= 2
        && datagrams.len() <= MAX_SEGMENTS
        && size > 0
        && whole.iter().all(|d| d.len() == size)
        && last.len() <= size
        && datagrams.iter().map(|d| d.len()).sum::<usize>() <= MAX_SEGMENTED_PAYLOAD
        && size <= SEGMENT_LIMIT.get();
    if !applies {
        return Some(datagrams);
    }
    let mut iovecs = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_SEGMENTS];
    for (iovec, data) in iovecs.iter_mut().zip(datagrams) {
        // The kernel only reads through `iov_base` for a send.
        *iovec = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
    }
    // One cmsg carrying the segment size as a u16, in a buffer aligned for `cmsghdr`.
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid (empty) value of this plain C struct.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(to) = to {
        header.msg_name = to.as_ptr().cast_mut().cast();
        header.msg_namelen = to.len();
    }
    header.msg_iov = iovecs.as_mut_ptr();
    header.msg_iovlen = datagrams.len();
    header.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    header.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: `control` is 32 bytes, aligned, and CMSG_SPACE(2) is at most that; the first
    // cmsg header and its 2 data bytes lie within it.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
        // Every pointer in `header` is to memory alive for the call.
        socket_call(libc::SYS_sendmsg, [fd as _, &raw const header as _, libc::MSG_DONTWAIT as _, 0, 0, 0])
    };
    if sent >= 0 {
        for data in datagrams {
            each(Ok(data.len()));
        }
        return None;
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => {
            for _ in datagrams {
                each(Err(io::ErrorKind::WouldBlock.into()));
            }
            None
        }
        // No UDP GSO on this kernel: plain batches from now on.
        Some(libc::ENOPROTOOPT | libc::EOPNOTSUPP) => {
            SEGMENT_LIMIT.set(0);
            Some(datagrams)
        }
        // Segments this large do not fit the path (or the device cannot checksum them).
        Some(libc::EINVAL | libc::EIO) => {
            SEGMENT_LIMIT.set(size - 1);
            Some(datagrams)
        }
        // An error the socket held (an ICMP report) is the first datagram's, as with one
        // send each; the others still go.
        _ => {
            each(Err(e));
            Some(&datagrams[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_several_datagrams_with_their_senders() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new(4);
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 0);
        let big = vec![7u8; 60_000];
        for payload in [&b"one"[..], b"", &big] {
            client.send_to(payload, server.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 3);
        let from = Some(client.local_addr().unwrap());
        assert_eq!(batch.datagram(0), (&b"one"[..], from));
        assert_eq!(batch.datagram(1), (&b""[..], from));
        assert_eq!(batch.datagram(2), (&big[..], from));
    }

    #[test]
    fn sends_several_datagrams_in_order_and_reports_each() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![9u8; 50_000];
        let many: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10]).collect();
        // Equal sizes and a shorter last one: one segmented send.
        let segmented: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; if i == 4 { 700 } else { 1_400 }]).collect();
        let mut results = Vec::new();
        let to = SockAddr::from(server.local_addr().unwrap());
        let segments: Vec<&[u8]> = segmented.iter().map(Vec::as_slice).collect();
        send(client.as_raw_fd(), &segments, Some(&to), |r| results.push(r.unwrap()));
        assert_eq!(results, vec![1_400, 1_400, 1_400, 1_400, 700]);
        let mut buffer = vec![0; 65_536];
        for expected in &segments {
            let (n, from) = server.recv_from(&mut buffer).unwrap();
            assert_eq!((&buffer[..n], from), (*expected, client.local_addr().unwrap()));
        }
        let mut datagrams: Vec<&[u8]> = vec![b"a", b"", &big];
        datagrams.extend(many.iter().map(Vec::as_slice));
        let mut results = Vec::new();
        send(client.as_raw_fd(), &datagrams, Some(&to), |r| results.push(r.unwrap()));
        assert_eq!(results, datagrams.iter().map(|d| d.len()).collect::<Vec<_>>());
        for expected in &datagrams {
            let (n, from) = server.recv_from(&mut buffer).unwrap();
            assert_eq!((&buffer[..n], from), (*expected, client.local_addr().unwrap()));
        }
    }

    #[test]
    fn a_refused_datagram_is_reported_and_the_rest_still_go() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let too_big = vec![0u8; 70_000];
        let mut results = Vec::new();
        send(client.as_raw_fd(), &[b"one", &too_big, b"three"], None, |r| {
            results.push(r.map_err(|e| e.kind()))
        });
        assert_eq!(results[0], Ok(3));
        assert!(results[1].is_err());
        assert_eq!(results[2], Ok(5));
        let mut buffer = [0; 16];
        assert_eq!(server.recv(&mut buffer).unwrap(), 3);
        assert_eq!(server.recv(&mut buffer).unwrap(), 5);
    }
}
