//! The hand-over conversation, on a unix `SOCK_SEQPACKET` socket: every message is one record,
//! and the descriptor it carries (`SCM_RIGHTS`) belongs to that record alone.
//!
//! ```text
//! old → new   listener SHARD|- WHAT      one per socket, with its descriptor
//! old → new   end COUNT
//! new → old   taken                     the new process serves on them: stop accepting
//! ```
//!
//! If the connection closes before `taken` (the new process failed, or was killed), the old
//! one has lost nothing: it kept its own copy of every socket and never stopped accepting.
//! Only a process of the same user (or root) is answered, on either side, and every step has a
//! time limit, so a stray client cannot hold the socket or feed the process garbage.

use super::Handed;
use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt::PeerCredentials, ControlMessage, ControlMessageOwned, MsgFlags,
};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest message either side sends (a server's name is part of one).
const MAX_MESSAGE: usize = 1024;

/// More sockets than this is not a betwixt talking.
const MAX_LISTENERS: usize = 1 << 16;

/// Limit on every send and receive of the exchange of sockets.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// The peer's pid, after checking that it runs as this user or as root.
fn trusted_peer(socket: &Socket) -> io::Result<i32> {
    let credentials = getsockopt(socket, PeerCredentials).map_err(errno)?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if credentials.uid() != me && credentials.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("peer runs as uid {}, not as this process's {me}", credentials.uid()),
        ));
    }
    Ok(credentials.pid())
}

fn seqpacket() -> io::Result<Socket> {
    Socket::new(Domain::UNIX, Type::SEQPACKET, None)
}

fn send(socket: &Socket, text: &str, fd: Option<RawFd>) -> io::Result<()> {
    let fds = fd.map(|fd| [fd]);
    let cmsgs: Vec<ControlMessage> =
        fds.as_ref().map(|fds| ControlMessage::ScmRights(fds)).into_iter().collect();
    sendmsg::<()>(socket.as_raw_fd(), &[IoSlice::new(text.as_bytes())], &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(errno)?;
    Ok(())
}

/// One message and the descriptors that came with it; `None` when the peer has closed.
fn receive(socket: &Socket) -> io::Result<Option<(String, Vec<OwnedFd>)>> {
    let mut buffer = [0u8; MAX_MESSAGE];
    let mut control = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buffer)];
    let message = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(errno)?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs() {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this process for us.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let length = message.bytes;
    if message.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
        return Err(invalid("message too long"));
    }
    if length == 0 && fds.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(&buffer[..length]).map_err(|_| invalid("message is not UTF-8"))?;
    Ok(Some((text.to_string(), fds)))
}

/// The running process's offer: a unix socket where a successor can ask for the sockets.
#[derive(Debug)]
pub struct Offer {
    socket: Socket,
    path: PathBuf,
    /// The socket file's identity, to remove it on exit only while it is still ours.
    inode: (u64, u64),
}

impl Offer {
    /// Listens on `path` (mode 0600). A socket file nobody answers on is stale and replaced;
    /// one a process answers on belongs to another betwixt and is an error, unless `replace`
    /// (this process has just taken over from the one listening there).
    pub fn listen(path: &Path, replace: bool) -> io::Result<Offer> {
        if !replace && path.exists() {
            let probe = seqpacket()?;
            if probe.connect(&SockAddr::unix(path)?).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process listens there (start the new betwixt with --upgrade-from to take over)",
                ));
            }
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let socket = seqpacket()?;
        socket.bind(&SockAddr::unix(path)?)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        socket.listen(4)?;
        let meta = std::fs::metadata(path)?;
        Ok(Offer { socket, path: path.to_path_buf(), inode: (meta.dev(), meta.ino()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next successor (blocking). A peer of another user is refused here.
    pub fn accept(&self) -> io::Result<Successor> {
        let (socket, _) = self.socket.accept()?;
        let pid = trusted_peer(&socket)?;
        socket.set_read_timeout(Some(STEP_TIMEOUT))?;
        socket.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Successor { socket, pid })
    }

    /// Leaves the socket file to the successor, which listens there next.
    pub fn give_up_path(mut self) {
        self.inode = (0, 0);
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        let ours = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The old process's side of one hand-over.
#[derive(Debug)]
pub struct Successor {
    socket: Socket,
    pub pid: i32,
}

impl Successor {
    /// Sends every socket with its description, then the count.
    pub fn send(&self, handed: &[Handed]) -> io::Result<()> {
        for h in handed {
            let shard = h.shard.map_or("-".to_string(), |s| s.to_string());
            send(&self.socket, &format!("listener {shard} {}", h.what), Some(h.fd.as_raw_fd()))?;
        }
        send(&self.socket, &format!("end {}", handed.len()), None)
    }

    /// Waits up to `limit` for `taken`: true once it came, false if the successor went away
    /// (or sent anything else) without taking over.
    pub fn wait_taken(&self, limit: Duration) -> io::Result<bool> {
        self.socket.set_read_timeout(Some(limit))?;
        match receive(&self.socket) {
            Ok(Some((text, _))) => Ok(text == "taken"),
            Ok(None) => Ok(false),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {limit:?}")))
            }
            Err(e) => Err(e),
        }
    }
}

/// The new process's side of the hand-over.
#[derive(Debug)]
pub struct Predecessor {
    socket: Socket,
    pub pid: i32,
}

impl Predecessor {
    pub fn connect(path: &Path) -> io::Result<Predecessor> {
        let socket = seqpacket()?;
        socket.connect(&SockAddr::unix(path)?)?;
        let pid = trusted_peer(&socket)?;
        socket.set_read_timeout(Some(STEP_TIMEOUT))?;
        socket.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Predecessor { socket, pid })
    }

    /// Receives every socket the predecessor serves on.
    pub fn receive(&self) -> io::Result<Vec<Handed>> {
        let mut handed = Vec::new();
        loop {
            let (text, mut fds) =
                receive(&self.socket)?.ok_or_else(|| invalid("the running betwixt closed the connection"))?;
            if let Some(count) = text.strip_prefix("end ") {
                if count.parse() != Ok(handed.len()) || !fds.is_empty() {
                    return Err(invalid(format!("{text:?} after {} socket(s)", handed.len())));
                }
                return Ok(handed);
            }
            let parsed = text.strip_prefix("listener ").and_then(|rest| rest.split_once(' '));
            let (Some((shard, what)), 1) = (parsed, fds.len()) else {
                return Err(invalid(format!("unexpected message {text:?} with {} descriptor(s)", fds.len())));
            };
            let shard = match shard {
                "-" => None,
                n => Some(n.parse().map_err(|_| invalid(format!("bad shard in {text:?}")))?),
            };
            if handed.len() == MAX_LISTENERS {
                return Err(invalid("too many sockets"));
            }
            handed.push(Handed { what: what.to_string(), shard, fd: fds.remove(0) });
        }
    }

    /// Tells the predecessor to stop accepting: this process serves on every socket now.
    pub fn taken(self) -> io::Result<()> {
        send(&self.socket, "taken", None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("betwixt-wire-{tag}-{}.sock", std::process::id()))
    }

    #[test]
    fn sockets_and_descriptions_cross_over() {
        let path = temp_path("cross");
        let offer = Offer::listen(&path, false).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let old = std::thread::spawn(move || {
            let successor = offer.accept().unwrap();
            assert_eq!(successor.pid, std::process::id() as i32);
            let fd = listener.as_fd().try_clone_to_owned().unwrap();
            successor.send(&[Handed { what: "server a b".into(), shard: Some(3), fd }]).unwrap();
            successor.wait_taken(Duration::from_secs(5)).unwrap()
        });
        let predecessor = Predecessor::connect(&path).unwrap();
        let handed = predecessor.receive().unwrap();
        assert_eq!((handed[0].what.as_str(), handed[0].shard), ("server a b", Some(3)));
        let received: std::net::TcpListener = handed.into_iter().next().unwrap().fd.into();
        assert_eq!(received.local_addr().unwrap(), addr);
        predecessor.taken().unwrap();
        assert!(old.join().unwrap());
        assert!(!path.exists(), "removed with the offer");
    }

    #[test]
    fn a_successor_that_leaves_has_not_taken_over() {
        let path = temp_path("leave");
        let offer = Offer::listen(&path, false).unwrap();
        let old = std::thread::spawn(move || {
            let successor = offer.accept().unwrap();
            successor.send(&[]).unwrap();
            successor.wait_taken(Duration::from_secs(5)).unwrap()
        });
        let predecessor = Predecessor::connect(&path).unwrap();
        assert!(predecessor.receive().unwrap().is_empty());
        drop(predecessor);
        assert!(!old.join().unwrap());
    }

    #[test]
    fn garbage_from_the_old_side_is_refused() {
        let path = temp_path("garbage");
        let offer = Offer::listen(&path, false).unwrap();
        let old = std::thread::spawn(move || {
            let successor = offer.accept().unwrap();
            for text in ["listener 0 no descriptor", "end 7"] {
                let _ = send(&successor.socket, text, None);
            }
            std::thread::sleep(Duration::from_millis(200));
        });
        let e = Predecessor::connect(&path).unwrap().receive().unwrap_err();
        assert!(e.to_string().contains("unexpected message"), "{e}");
        old.join().unwrap();
    }

    #[test]
    fn a_live_offer_is_not_replaced_by_mistake() {
        let path = temp_path("live");
        let _offer = Offer::listen(&path, false).unwrap();
        let e = Offer::listen(&path, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // A stale file (its process gone) is replaced.
        let stale = temp_path("stale");
        drop(std::os::unix::net::UnixDatagram::bind(&stale).unwrap());
        assert!(stale.exists());
        drop(Offer::listen(&stale, false).unwrap());
    }
}
