//! Socket system calls glommio does not offer: facts (cookies, `TCP_INFO` fields, queued
//! bytes), reads that tell what is left, and sends that leave the last bytes for the FIN.
//! Kernel forwarding reads the facts; the transfer's abort path reads the unacknowledged count;
//! every plain transfer reads and writes with `read_hinted` and `send_now`.

use std::io;
use std::os::fd::RawFd;

/// `struct tcp_info` offsets (linux/tcp.h, stable ABI).
const LAST_DATA_RECV: usize = 52;
const BYTES_ACKED: usize = 120;
const TCP_INFO_LEN: usize = 136;

fn getsockopt<const N: usize>(fd: RawFd, level: i32, name: i32) -> io::Result<[u8; N]> {
    let mut value = [0u8; N];
    let mut len = N as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    let r = unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The socket's cookie: a number unique to it for the life of the system, the maps' key.
pub fn cookie(fd: RawFd) -> io::Result<u64> {
    getsockopt::<8>(fd, libc::SOL_SOCKET, libc::SO_COOKIE).map(u64::from_ne_bytes)
}

/// The `TCP_INFO` fields used here. Reading them takes the socket's lock, so when it returns,
/// any segment the kernel was processing for the socket has been fully processed (its bytes
/// handed to the verdict program).
pub struct TcpInfo {
    /// Milliseconds since data was last received.
    pub last_data_recv: u32,
    /// Bytes sent and acknowledged by the peer (plus one for the SYN on some paths).
    pub bytes_acked: u64,
}

pub fn tcp_info(fd: RawFd) -> io::Result<TcpInfo> {
    let info = getsockopt::<TCP_INFO_LEN>(fd, libc::IPPROTO_TCP, libc::TCP_INFO)?;
    Ok(TcpInfo { last_data_recv: u32_at(&info, LAST_DATA_RECV), bytes_acked: u64_at(&info, BYTES_ACKED) })
}

/// Bytes in the send queue not yet acknowledged (`SIOCOUTQ`).
pub fn unacknowledged(fd: RawFd) -> io::Result<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(queued.max(0) as u64)
}

/// Every byte ever queued for sending on a socket: acknowledged by the peer, and still in the
/// send queue.
#[derive(Clone, Copy, Debug)]
pub struct Queued {
    pub acknowledged: u64,
    pub unacknowledged: u64,
}

impl Queued {
    pub fn total(&self) -> u64 {
        self.acknowledged + self.unacknowledged
    }
}

/// What the socket ever queued for sending, read so that the total is exact: acknowledgements
/// move bytes from the queue to the acknowledged count between the two reads, so the pair is
/// taken again until the acknowledged count held still around the queue's. Returns the
/// smaller, safe total when the peer keeps acknowledging.
pub fn queued(fd: RawFd) -> io::Result<Queued> {
    let mut acknowledged = tcp_info(fd)?.bytes_acked;
    for _ in 0..4 {
        let unacknowledged = unacknowledged(fd)?;
        let again = tcp_info(fd)?.bytes_acked;
        if again == acknowledged {
            return Ok(Queued { acknowledged, unacknowledged });
        }
        acknowledged = again;
    }
    // Acked read first, then the queue: the sum can only undercount.
    let acknowledged = tcp_info(fd)?.bytes_acked;
    Ok(Queued { acknowledged, unacknowledged: unacknowledged(fd)? })
}

/// `SO_RCVLOWAT = 1`: the kernel checks the receive queue at once and, the socket being in the
/// sockmap now, hands what waits there to the verdict program (otherwise bytes that arrived
/// before the socket was added would wait for the next arrival).
pub fn kick_receive_queue(fd: RawFd) -> io::Result<()> {
    betwixt_control::bind::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, 1)
}

/// Reads what the socket holds now into `buffer`, without waiting (`Ok(None)` when nothing is
/// there), and says whether it still holds something after this read: more bytes, or the
/// peer's end of stream. That is the kernel's `TCP_INQ` count, which stays at 1 once the FIN is
/// in (`tcp_inq_hint`), so a reader learns of a FIN that came with the data without another
/// wait. Always `false` on a socket without `TCP_INQ` (`betwixt_control::bind::report_remaining`).
pub fn read_hinted(fd: RawFd, buffer: &mut [u8]) -> io::Result<Option<(usize, bool)>> {
    let mut part = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    // Room for one control message holding an int (24 bytes), aligned as a `cmsghdr`.
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid `msghdr` (no name, no parts); the fields used are set below.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut part;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = size_of_val(&control) as _;
    // SAFETY: the kernel writes at most `buffer.len()` bytes into the buffer and at most
    // `msg_controllen` into `control`, both alive for the call.
    let n = unsafe {
        let message = &mut message as *mut libc::msghdr as libc::c_long;
        socket_call(libc::SYS_recvmsg, [fd as _, message, libc::MSG_DONTWAIT as _, 0, 0, 0])
    };
    Ok(now_or_never(n)?.map(|n| (n, n > 0 && remaining(&message) > 0)))
}

/// The `TCP_CM_INQ` count among the control messages `recvmsg` filled in, 0 if absent.
fn remaining(message: &libc::msghdr) -> libc::c_int {
    // SAFETY: the walk stays within `msg_controllen`, which the kernel set to what it wrote.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_TCP && (*header).cmsg_type == libc::TCP_CM_INQ {
                return std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>());
            }
            header = libc::CMSG_NXTHDR(message, header);
        }
    }
    0
}

/// The socket's pending error (`SO_ERROR`, which clears it), if any.
pub fn take_error(fd: RawFd) -> Option<io::Error> {
    match getsockopt::<4>(fd, libc::SOL_SOCKET, libc::SO_ERROR).map(i32::from_ne_bytes) {
        Ok(0) => None,
        Ok(code) => Some(io::Error::from_raw_os_error(code)),
        Err(e) => Some(e),
    }
}

/// Reads what the socket holds now, without waiting, into `buffer`: `Ok(None)` when nothing
/// is there.
pub fn read_now(fd: RawFd, buffer: &mut [u8]) -> io::Result<Option<usize>> {
    let (fd, start, len) = (fd as _, buffer.as_mut_ptr() as _, buffer.len() as _);
    // SAFETY: the kernel writes at most `buffer.len()` bytes into it; no source address.
    let n = unsafe { socket_call(libc::SYS_recvfrom, [fd, start, len, libc::MSG_DONTWAIT as _, 0, 0]) };
    now_or_never(n)
}

/// A socket system call made through `syscall` rather than glibc's wrapper: glibc's `send`,
/// `recv`, `sendmsg`, `recvmmsg` and the like are cancellation points, which a multi-threaded
/// process pays for with two atomic updates around every call, and betwixt never cancels a
/// thread. Every argument is passed a full register wide, as `syscall` reads them.
///
/// # Safety
/// The arguments must be what the system call `number` expects (valid pointers and lengths).
pub unsafe fn socket_call(number: libc::c_long, args: [libc::c_long; 6]) -> isize {
    // SAFETY: as the caller promises.
    unsafe { libc::syscall(number, args[0], args[1], args[2], args[3], args[4], args[5]) as isize }
}

/// Writes what the socket takes now of `bytes`, without waiting: `Ok(None)` when it takes
/// nothing (its send buffer is full). With `last`, the bytes are the last before the FIN, which
/// the caller sends next (`shutdown` or `close`): `MSG_MORE` holds back a short tail so that
/// the FIN goes out in the same segment: a segment fewer, and an acknowledgement fewer.
pub fn send_now(fd: RawFd, bytes: &[u8], last: bool) -> io::Result<Option<usize>> {
    let more = if last { libc::MSG_MORE } else { 0 };
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | more;
    let (fd, start, len, flags) = (fd as _, bytes.as_ptr() as _, bytes.len() as _, flags as _);
    // SAFETY: the kernel reads at most `bytes.len()` bytes from it; no destination address.
    let n = unsafe { socket_call(libc::SYS_sendto, [fd, start, len, flags, 0, 0]) };
    now_or_never(n)
}

/// A non-blocking transfer's result: the bytes moved, or `None` when it would have waited.
fn now_or_never(n: isize) -> io::Result<Option<usize>> {
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn queued_counts_every_byte_written() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut b, _) = listener.accept().unwrap();
        let start = queued(a.as_raw_fd()).unwrap().total();
        a.write_all(&[7; 5000]).unwrap();
        assert_eq!(queued(a.as_raw_fd()).unwrap().total() - start, 5000);
        let mut got = vec![0; 5000];
        b.read_exact(&mut got).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(queued(a.as_raw_fd()).unwrap().total() - start, 5000);
        assert_ne!(cookie(a.as_raw_fd()).unwrap(), cookie(b.as_raw_fd()).unwrap());
        assert!(take_error(a.as_raw_fd()).is_none());
        assert!(tcp_info(b.as_raw_fd()).unwrap().last_data_recv < 10_000);
    }

    /// `tcpi_segs_out` (linux/tcp.h): segments the socket has sent.
    fn segments_sent(fd: RawFd) -> u32 {
        u32_at(&getsockopt::<144>(fd, libc::IPPROTO_TCP, libc::TCP_INFO).unwrap(), 136)
    }

    fn pair(hinted: bool) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        if hinted {
            betwixt_control::bind::report_remaining(listener.as_raw_fd()).unwrap();
        }
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        a.set_nodelay(true).unwrap();
        (a, b)
    }

    /// Waits until `fd` has something to read (the test's peers are on loopback: at once).
    fn readable(fd: RawFd) {
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, alive for the call.
        assert_eq!(unsafe { libc::poll(&mut poll, 1, 5_000) }, 1);
    }

    #[test]
    fn reads_tell_of_bytes_and_an_end_of_stream_still_held() {
        let (mut a, b) = pair(true);
        a.write_all(b"hello").unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
        readable(b.as_raw_fd());
        let mut buffer = [0u8; 3];
        assert_eq!(read_hinted(b.as_raw_fd(), &mut buffer).unwrap(), Some((3, true)), "two bytes left");
        // The end of stream alone still counts: the FIN came in with the bytes.
        assert_eq!(read_hinted(b.as_raw_fd(), &mut buffer).unwrap(), Some((2, true)), "the FIN left");
        assert_eq!(read_hinted(b.as_raw_fd(), &mut buffer).unwrap(), Some((0, false)));

        // Inherited from the listener; nothing left, no FIN: false, and an empty socket is None.
        let (mut a, b) = pair(true);
        a.write_all(b"hi").unwrap();
        readable(b.as_raw_fd());
        assert_eq!(read_hinted(b.as_raw_fd(), &mut buffer).unwrap(), Some((2, false)));
        assert_eq!(read_hinted(b.as_raw_fd(), &mut buffer).unwrap(), None);

        // Without `TCP_INQ`, never a hint.
        let (mut a, b) = pair(false);
        a.write_all(b"hello").unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
        readable(b.as_raw_fd());
        assert_eq!(read_hinted(b.as_raw_fd(), &mut buffer).unwrap(), Some((3, false)));
    }

    #[test]
    fn the_last_bytes_leave_with_the_fin() {
        for (last, segments) in [(false, 2), (true, 1)] {
            let (a, mut b) = pair(false);
            let before = segments_sent(a.as_raw_fd());
            assert_eq!(send_now(a.as_raw_fd(), b"reply", last).unwrap(), Some(5));
            a.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"reply");
            assert_eq!(segments_sent(a.as_raw_fd()) - before, segments, "last = {last}");
        }
    }
}
