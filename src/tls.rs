//! The TLS side of a connection: terminating the client's TLS (`protocol = "tls"`), TLS to the
//! backend (`[backends_tls]`), and the byte transfer when either side speaks TLS.
//!
//! rustls runs over glommio's `TcpStream` through `futures-rustls`. The transfer here copies
//! through a buffer per direction (TLS records must pass through user space to be sealed or
//! opened, so the splice of the plain path does not apply); it keeps the plain path's rules:
//! a direction's end of stream is passed on as a half-close (a TLS `close_notify`, then the
//! socket's FIN), idle timeouts are the same `IdleWatch`, and a failed side gets the other
//! reset. Plain tcp servers never come here.

use crate::direction::Fault;
use crate::idle::{IdleWatch, Motion};
use crate::transfer::{failed_side, reset_on_close, End, Ending, Meters, Side};
use betwixt_control::stats::Slot;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::{client, server};
use glommio::net::TcpStream;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{ready, Context, Poll};

/// Bytes one direction reads at a time to begin with: a TLS record's payload at most.
const CHUNK: usize = 16 * 1024;
/// What a direction's buffer grows to once a read fills it (a bulk transfer): the plain side is
/// then read in fewer receives, and the TLS side gets several records per `writev`.
const BULK_CHUNK: usize = 64 * 1024;

/// A socket as rustls reads and writes it: a client's whose TLS betwixt terminates, or a
/// backend's it speaks TLS to.
///
/// Reads: the bytes an earlier step read from the client (a PROXY header's tail) come first;
/// a backend has none. After that, rustls asks for 4 KiB at a time, which would take four
/// receives per 16 KiB record; once a read fills rustls' buffer (more is waiting), the socket
/// is read ahead into `BULK_CHUNK` bytes here, and the buffer is let go again when the socket
/// runs dry, so handshakes and idle connections never hold it.
///
/// Writes: rustls hands over its queued records as a vector, which goes out in one `writev`
/// (glommio's stream would send only the first record per call).
pub struct Rewind {
    ahead: Box<[u8]>,
    start: usize,
    end: usize,
    reading_ahead: bool,
    inner: TcpStream,
}

impl Rewind {
    pub fn new(early: Vec<u8>, inner: TcpStream) -> Rewind {
        let end = early.len();
        Rewind { ahead: early.into_boxed_slice(), start: 0, end, reading_ahead: false, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.start == this.end {
            if !this.reading_ahead {
                let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                this.reading_ahead = n == buf.len() && n > 0;
                return Poll::Ready(Ok(n));
            }
            if this.ahead.len() < BULK_CHUNK {
                this.ahead = vec![0; BULK_CHUNK].into_boxed_slice();
            }
            match Pin::new(&mut this.inner).poll_read(cx, &mut this.ahead) {
                Poll::Ready(Ok(n)) => (this.start, this.end) = (0, n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // The client paused: back to reading straight into rustls' buffer.
                    this.ahead = Box::default();
                    this.reading_ahead = false;
                    return Poll::Pending;
                }
            }
        }
        let n = buf.len().min(this.end - this.start);
        buf[..n].copy_from_slice(&this.ahead[this.start..this.start + n]);
        this.start += n;
        if this.start == this.end && !this.reading_ahead {
            this.ahead = Box::default();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_write_with(cx, |fd| send_gathered(fd, bufs))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// One gathered, non-blocking send (`sendmsg` with `MSG_DONTWAIT`: glommio's sockets are in
/// blocking mode); `None` when the socket cannot take more now.
fn send_gathered(fd: std::os::fd::RawFd, bufs: &[io::IoSlice<'_>]) -> Option<io::Result<usize>> {
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec`; sendmsg only reads through the pointer.
    message.msg_iov = bufs.as_ptr().cast::<libc::iovec>().cast_mut();
    message.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: `message` points at `bufs`, which outlive the call.
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let sent = unsafe {
        crate::sock::socket_call(libc::SYS_sendmsg, [fd as _, &raw const message as _, flags as _, 0, 0, 0])
    };
    if sent >= 0 {
        return Some(Ok(sent as usize));
    }
    let e = io::Error::last_os_error();
    (e.kind() != io::ErrorKind::WouldBlock).then_some(Err(e))
}

/// One end of a connection that has TLS on at least one side.
pub enum Stream {
    Plain(TcpStream),
    /// A client whose TLS betwixt terminated.
    Server(Box<server::TlsStream<Rewind>>),
    /// A backend betwixt speaks TLS to.
    Client(Box<client::TlsStream<Rewind>>),
}

impl Stream {
    /// The socket under the TLS.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Server(s) => &s.get_ref().0.inner,
            Stream::Client(s) => &s.get_ref().0.inner,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut *$self {
            Stream::Plain($s) => $e,
            Stream::Server($s) => $e,
            Stream::Client($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_close(cx))
    }
}

/// One direction: read a chunk, write it all, flush (TLS holds written bytes until then), repeat;
/// at the reader's end of stream, close the writer's sending side. The buffer starts at
/// `CHUNK` and grows to `BULK_CHUNK` the first time a read fills it.
struct Half {
    buffer: Box<[u8]>,
    filled: bool,
    start: usize,
    end: usize,
    unflushed: bool,
    read_done: bool,
    finished: bool,
    moves: u64,
}

impl Half {
    fn new() -> Half {
        Half {
            buffer: vec![0; CHUNK].into_boxed_slice(),
            filled: false,
            start: 0,
            end: 0,
            unflushed: false,
            read_done: false,
            finished: false,
            moves: 0,
        }
    }

    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut Stream,
        writer: &mut Stream,
        counted: [&AtomicU64; 3],
    ) -> Poll<Result<(), Fault>> {
        loop {
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            if self.start < self.end {
                let n = ready!(Pin::new(&mut *writer).poll_write(cx, &self.buffer[self.start..self.end]))
                    .map_err(Fault::Writer)?;
                if n == 0 {
                    return Poll::Ready(Err(Fault::Writer(io::ErrorKind::WriteZero.into())));
                }
                self.start += n;
                self.moves += 1;
                counted.iter().for_each(|c| Slot::add(c, n as u64));
                self.unflushed = true;
                continue;
            }
            if self.unflushed {
                ready!(Pin::new(&mut *writer).poll_flush(cx)).map_err(Fault::Writer)?;
                self.unflushed = false;
            }
            if self.read_done {
                ready!(Pin::new(&mut *writer).poll_close(cx)).map_err(Fault::Writer)?;
                self.finished = true;
                continue;
            }
            if self.filled && self.buffer.len() < BULK_CHUNK {
                self.buffer = vec![0; BULK_CHUNK].into_boxed_slice();
            }
            // Take all the reader has at hand, up to the buffer's size: TLS gives out one
            // record (16 KiB at most) per read, and the writer is better off with them in one go.
            let mut end = 0;
            while end < self.buffer.len() {
                match Pin::new(&mut *reader).poll_read(cx, &mut self.buffer[end..]) {
                    Poll::Ready(Ok(0)) => self.read_done = true,
                    Poll::Ready(Ok(n)) => end += n,
                    // A TLS peer that closed its socket without `close_notify`: many clients
                    // do, and HAProxy and nginx take it as the end of the stream too.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => self.read_done = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Reader(e))),
                    Poll::Pending if end == 0 => return Poll::Pending,
                    Poll::Pending => break,
                }
                if self.read_done {
                    break;
                }
            }
            self.moves += 1;
            (self.start, self.end) = (0, end);
            self.filled = end == self.buffer.len();
        }
    }
}

/// Runs until both directions are done (with `ending.half_close` off, until either is), a side
/// fails, or an idle timeout passes (as `transfer::bidirectional` does for two plain sockets).
/// A direction is done once its writer is closed, so the other side has its `close_notify`.
pub async fn bidirectional(
    client: &mut Stream,
    backend: &mut Stream,
    meters: Meters<'_>,
    ending: Ending,
) -> End {
    let (mut up, mut down) = (Half::new(), Half::new());
    let up_counted = meters.bytes(true);
    let down_counted = meters.bytes(false);
    let mut idle = IdleWatch::new(ending.idle);
    let end = poll_fn(|cx| {
        let up_done = match up.poll_copy(cx, client, backend, up_counted) {
            Poll::Ready(Err(fault)) => return Poll::Ready(failed(Side::Client, fault)),
            other => other.is_ready(),
        };
        let down_done = match down.poll_copy(cx, backend, client, down_counted) {
            Poll::Ready(Err(fault)) => return Poll::Ready(failed(Side::Backend, fault)),
            other => other.is_ready(),
        };
        if (up_done && down_done) || ((up_done || down_done) && !ending.half_close) {
            return Poll::Ready(End::Done);
        }
        if let Some(watch) = &mut idle {
            let motion = [&up, &down].map(|d| Motion { moves: d.moves, finished: d.finished });
            if let Poll::Ready(i) = watch.poll_expired(cx, motion) {
                return Poll::Ready(End::Idle(Side::of(i)));
            }
        }
        Poll::Pending
    })
    .await;
    if let End::Failed(side, _) = &end {
        // The survivor sees an abort, not a clean end (see `transfer`).
        let survivor = if *side == Side::Client { &*backend } else { &*client };
        reset_on_close(survivor.socket());
    }
    end
}

/// The transfer's end for a fault of the direction reading from `reader`.
fn failed(reader: Side, fault: Fault) -> End {
    let side = failed_side(reader, &fault);
    let (Fault::Reader(e) | Fault::Writer(e)) = fault;
    End::Failed(side, e)
}
