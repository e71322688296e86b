//! Moving bytes both ways between client and backend in one task.
//!
//! Each direction reads into a pooled buffer and writes it all out before reading again. A
//! direction whose read returns a bulk-sized chunk carries bulk data; from then on it splices
//! through a pooled pipe instead, so the payload is not copied through user space (see `pipes`).
//! When one reader reaches end of stream while the other direction is still open, the writer's sending
//! side is shut down (half-close) and the other direction carries on alone. When both ends have
//! closed, no shutdown is sent: closing the sockets sends each peer its FIN anyway, and a
//! `shutdown` per side was a fifth of the cost of a short connection. The transfer ends when both
//! directions have finished, or at the first error (including an idle timeout) in either.

use crate::{buffers, pipes};
use betwixt_control::stats::Slot;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use pipes::Pipe;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{ready, Context, Poll};

/// A read at least this large marks a bulk stream. Request/response traffic (small messages)
/// keeps copying: for a few bytes, a pipe round trip costs more than the copy it saves.
const BULK_READ: usize = 64 * 1024;

/// One direction's progress.
struct Direction {
    /// Bytes `start..end` of the buffer are read and not yet written.
    buffer: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// Held only while it has bytes in it (see `pipes`).
    pipe: Option<Pipe>,
    /// This direction carries bulk data: it reads through a pipe from now on.
    splicing: bool,
    read_done: bool,
    shut_down: bool,
}

/// What one direction counts as bytes leave it.
struct Counted<'a> {
    /// The server's and the backend's byte counters.
    bytes: [&'a AtomicU64; 2],
    /// Bytes that went through a pipe.
    spliced: &'a AtomicU64,
}

impl Direction {
    fn new() -> Self {
        Direction {
            buffer: None,
            start: 0,
            end: 0,
            pipe: None,
            splicing: false,
            read_done: false,
            shut_down: false,
        }
    }

    /// Passes the reader's end of stream on to the writer's peer, once.
    fn poll_shut_down(&mut self, cx: &mut Context<'_>, writer: &mut TcpStream) -> Poll<io::Result<()>> {
        if !self.shut_down {
            ready!(Pin::new(writer).poll_close(cx))?;
            self.shut_down = true;
        }
        Poll::Ready(Ok(()))
    }

    fn release(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            buffers::give_back(buffer);
        }
        if let Some(pipe) = self.pipe.take() {
            pipes::give_back(pipe);
        }
    }

    /// Switches to splicing after a bulk-sized read. Splicing needs non-blocking sockets (see
    /// `pipes::set_nonblocking`); if they cannot be made so, the direction keeps copying.
    fn start_splicing(&mut self, reader: &TcpStream, writer: &TcpStream) {
        match pipes::set_nonblocking(reader.as_raw_fd())
            .and_then(|_| pipes::set_nonblocking(writer.as_raw_fd()))
        {
            Ok(()) => self.splicing = true,
            Err(e) => log::debug!("splicing not possible, copying: {e}"),
        }
    }

    /// Writes out everything read so far.
    fn poll_write_held(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut TcpStream,
        counted: &Counted<'_>,
    ) -> Poll<io::Result<()>> {
        while self.start < self.end {
            let buffer = self.buffer.as_ref().expect("pending bytes live in a buffer");
            let n = ready!(Pin::new(&mut *writer).poll_write(cx, &buffer[self.start..self.end]))?;
            self.start += n;
            counted.add(n, false)?;
        }
        if let Some(pipe) = &mut self.pipe {
            while pipe.held > 0 {
                let n = ready!(writer.poll_write_with(cx, |fd| pipe.drain_into(fd)))?;
                counted.add(n, true)?;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what the reader has: into a pipe when splicing and one is available, else into a
    /// buffer. Ready(0) is the reader's end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, reader: &mut TcpStream) -> Poll<io::Result<usize>> {
        if self.splicing && self.pipe.is_none() {
            self.pipe = pipes::take();
        }
        if let Some(pipe) = &mut self.pipe {
            let room = pipe.capacity - pipe.held;
            return reader.poll_read_with(cx, room, |fd| pipe.fill_from(fd));
        }
        let buffer = self.buffer.get_or_insert_with(buffers::take);
        let n = ready!(Pin::new(reader).poll_read(cx, buffer))?;
        self.start = 0;
        self.end = n;
        Poll::Ready(Ok(n))
    }

    /// Copies until the reader would block (Pending) or every byte up to the reader's end of
    /// stream has been written (Ready).
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut TcpStream,
        writer: &mut TcpStream,
        counted: &Counted<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Err(e) = ready!(self.poll_write_held(cx, writer, counted)) {
                self.release();
                return Poll::Ready(Err(e));
            }
            if self.read_done {
                self.release();
                return Poll::Ready(Ok(()));
            }
            match self.poll_read(cx, reader) {
                Poll::Pending => {
                    // Waiting for readiness needs no buffer or pipe: let other connections use them.
                    self.release();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => self.read_done = true,
                Poll::Ready(Ok(n)) => {
                    if !self.splicing && n >= BULK_READ && pipes::enabled() {
                        self.start_splicing(reader, writer);
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.release();
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl Counted<'_> {
    fn add(&self, n: usize, spliced: bool) -> io::Result<()> {
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        for counter in self.bytes {
            Slot::add(counter, n as u64);
        }
        if spliced {
            Slot::add(self.spliced, n as u64);
        }
        Ok(())
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.release();
    }
}

/// Byte counters to bump as data moves: client→backend bytes are `tx`, backend→client `rx`.
pub struct Meters<'a> {
    pub server: &'a Slot,
    pub backend: &'a Slot,
}

/// Runs until both directions are done. Returns the first error, if any.
pub async fn bidirectional(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: Meters<'_>,
) -> io::Result<()> {
    let mut upstream = Direction::new();
    let mut downstream = Direction::new();
    let up = Counted { bytes: [&meters.server.tx, &meters.backend.tx], spliced: &meters.server.spliced };
    let down = Counted { bytes: [&meters.server.rx, &meters.backend.rx], spliced: &meters.server.spliced };
    poll_fn(|cx| {
        let up_done = upstream.poll_copy(cx, client, backend, &up)?;
        let down_done = downstream.poll_copy(cx, backend, client, &down)?;
        match (up_done, down_done) {
            // Both ends closed: dropping the sockets closes them, which sends each its FIN.
            (Poll::Ready(()), Poll::Ready(())) => return Poll::Ready(Ok(())),
            (Poll::Ready(()), Poll::Pending) => ready!(upstream.poll_shut_down(cx, backend))?,
            (Poll::Pending, Poll::Ready(())) => ready!(downstream.poll_shut_down(cx, client))?,
            (Poll::Pending, Poll::Pending) => {}
        }
        Poll::Pending
    })
    .await
}
