//! One direction of a proxied connection: read from one socket, write everything read to the
//! other, until the reader's end of stream.
//!
//! A direction reads into a pooled buffer and writes it all out before reading again. A
//! direction whose read returns a bulk-sized chunk carries bulk data; from then on it splices
//! through a pooled pipe instead, so the payload is not copied through user space (see `pipes`).
//!
//! While its write waits on a slow receiver, a direction does not read, so an ordinary read
//! would not notice its reader going away; it watches the reader for a reset instead (see
//! `poll_watch_reader`).
//!
//! A reply followed by the backend's close (HTTP/1.0, `Connection: close`, most one-shot
//! protocols) usually has its FIN in by the time the reply is read. Reads report whether the
//! socket still holds something (`sock::read_hinted`); when it does, the direction reads again
//! before writing, finds the end of stream, and writes the last bytes so that the FIN leaves
//! in the same segment (`sock::send_now`'s `last`): one segment and one acknowledgement fewer
//! per connection, as HAProxy does. The early readiness poll glommio arms after a short read is
//! skipped then too.

use crate::{buffers, pipes, sock};
use betwixt_control::stats::Slot;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use pipes::Pipe;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{ready, Context, Poll};

/// A read at least this large marks a bulk stream. Request/response traffic (small messages)
/// keeps copying: for a few bytes, a pipe round trip costs more than the copy it saves.
const BULK_READ: usize = 64 * 1024;

/// Reads while a direction has moved bytes fewer times than this tell what the reader still
/// holds (`sock::read_hinted`); later reads are plain `recv`s. The hint's `recvmsg` costs more
/// than a `recv` (2.5% more CPU per keep-alive request when every read took it), and it pays
/// only on a connection's last reply, which on most connections comes with their first.
const HINTED_MOVES: u64 = 4;

/// Why a direction stopped.
#[derive(Debug)]
pub enum Fault {
    /// Reading failed, or the reader was found reset while the direction waited on its write.
    Reader(io::Error),
    /// Writing failed.
    Writer(io::Error),
}

/// One direction's progress.
pub struct Direction {
    /// Bytes `start..end` of the buffer are read and not yet written.
    buffer: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// Held only while it has bytes in it (see `pipes`).
    pipe: Option<Pipe>,
    /// This direction carries bulk data: it reads through a pipe from now on.
    splicing: bool,
    read_done: bool,
    /// The reader's clean end of stream has been read: the bytes held are the last.
    ended: bool,
    /// Every byte up to the reader's end of stream has been written.
    pub finished: bool,
    shut_down: bool,
    /// The watch on the reader has fired (its FIN, or a fault): armed again it would fire at
    /// once, so it is not.
    watch_spent: bool,
    /// Counts reads and writes that moved bytes: the idle timeouts and the abort grace compare
    /// it between their checks, so moving bytes costs no clock read.
    pub moves: u64,
}

/// What one direction counts as bytes leave it.
pub struct Counted<'a> {
    /// The server's, the backend's and the connection's byte counters.
    pub bytes: [&'a AtomicU64; 3],
    /// Bytes that went through a pipe.
    pub spliced: &'a AtomicU64,
}

impl Direction {
    pub fn new() -> Self {
        Direction {
            buffer: None,
            start: 0,
            end: 0,
            pipe: None,
            splicing: false,
            read_done: false,
            ended: false,
            finished: false,
            shut_down: false,
            watch_spent: false,
            moves: 0,
        }
    }

    /// The reader's end of stream, or its failure, has been read.
    pub fn read_done(&self) -> bool {
        self.read_done
    }

    /// Nothing read waits to be written, no end of stream has been read, and the direction is
    /// not a spliced bulk stream: the connection may change hands here without reordering.
    pub fn is_quiet(&self) -> bool {
        self.holds_nothing() && !self.splicing && !self.read_done
    }

    /// No bytes read wait in the buffer or a pipe.
    #[inline]
    fn holds_nothing(&self) -> bool {
        self.start == self.end && self.pipe.is_none()
    }

    /// Holds nothing, and a read would only find the readiness poll its last read armed still
    /// waiting: such a read needs no buffer or pipe, and the direction has nothing to write.
    #[inline]
    fn waits_to_read(&self, cx: &mut Context<'_>, reader: &mut TcpStream) -> bool {
        self.holds_nothing() && reader.poll_read_waits(cx)
    }

    /// Passes the reader's end of stream on to the writer's peer, once.
    pub fn poll_shut_down(&mut self, cx: &mut Context<'_>, writer: &mut TcpStream) -> Poll<io::Result<()>> {
        if !self.shut_down {
            ready!(Pin::new(writer).poll_close(cx))?;
            self.shut_down = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Gives back the buffer and pipe, with any bytes still in them (a pipe that holds bytes is
    /// closed rather than pooled).
    pub fn release(&mut self) {
        (self.start, self.end) = (0, 0);
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
            let held = &buffer[self.start..self.end];
            let last = self.ended;
            let n = ready!(writer.poll_write_with(cx, |fd| sock::send_now(fd, held, last).transpose()))?;
            self.start += n;
            self.moves += 1;
            counted.add(n, false)?;
        }
        if let Some(pipe) = &mut self.pipe {
            while pipe.held > 0 {
                let n = ready!(writer.poll_write_with(cx, |fd| pipe.drain_into(fd)))?;
                self.moves += 1;
                counted.add(n, true)?;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what the reader has: into a pipe when splicing and one is available, else into a
    /// buffer, after the bytes it holds. Ready(0) is the reader's end of stream; with bytes,
    /// also whether the reader said it holds more (bytes, or its end of stream) after them.
    fn poll_read(&mut self, cx: &mut Context<'_>, reader: &mut TcpStream) -> Poll<io::Result<(usize, bool)>> {
        if self.waits_to_read(cx, reader) {
            return Poll::Pending;
        }
        if self.splicing && self.pipe.is_none() {
            self.pipe = pipes::take();
        }
        if let Some(pipe) = &mut self.pipe {
            let room = pipe.capacity - pipe.held;
            return reader.poll_read_with(cx, room, |fd| pipe.fill_from(fd)).map_ok(|n| (n, false));
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        let buffer = self.buffer.get_or_insert_with(buffers::take);
        let room = &mut buffer[self.end..];
        let (n, more) = match self.moves < HINTED_MOVES {
            true => {
                ready!(reader.poll_read_hinted(cx, room.len(), |fd| sock::read_hinted(fd, room).transpose()))?
            }
            false => (ready!(Pin::new(reader).poll_read(cx, room))?, false),
        };
        self.end += n;
        Poll::Ready(Ok((n, more && self.end < buffer.len())))
    }

    /// While the write waits, watches the reader for a reset, which nothing else would notice:
    /// the reader is not being read, and the other direction only writes to it when it has
    /// something to send. The watch is one io_uring poll for error and hang-up events, armed
    /// the first time a write of this direction blocks and left armed until it fires, so it
    /// costs no system call, and nothing at all on connections whose writes never block (small
    /// requests and replies). A FIN is no fault: the direction carries on (half-close), and the
    /// reader's end of stream is read once the bytes before it have gone out.
    fn poll_watch_reader(&mut self, cx: &mut Context<'_>, reader: &mut TcpStream) -> Poll<Result<(), Fault>> {
        if self.read_done || self.watch_spent {
            return Poll::Pending;
        }
        let events = match ready!(reader.poll_hangup(cx)) {
            Ok(events) => events,
            Err(e) => return Poll::Ready(Err(Fault::Reader(e))),
        };
        self.watch_spent = true;
        if events & libc::POLLERR as u32 == 0 {
            return Poll::Pending;
        }
        // `SO_ERROR` says which error (and clears it: reads then see the end of stream).
        match crate::transfer::with_socket(reader, |s| s.take_error()) {
            Ok(Some(e)) | Err(e) => Poll::Ready(Err(Fault::Reader(e))),
            Ok(None) => Poll::Pending,
        }
    }

    /// Copies until the reader would block (Pending) or every byte up to the reader's end of
    /// stream has been written (Ready). A `Fault::Reader` found by the watch leaves the
    /// direction able to go on: the bytes the reader sent before failing can still be passed
    /// on by polling it again.
    ///
    /// The task polls both directions whenever either socket wakes it, and the other one
    /// usually holds nothing and waits on its reader's armed poll. That case is answered here,
    /// inlined into the caller, without entering the copy loop, a call that saves and restores
    /// most registers (bench/README.md, "What each change bought", has what that saved).
    #[inline]
    pub fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut TcpStream,
        writer: &mut TcpStream,
        counted: &Counted<'_>,
    ) -> Poll<Result<(), Fault>> {
        if !self.read_done && self.waits_to_read(cx, reader) {
            return Poll::Pending;
        }
        self.poll_copy_loop(cx, reader, writer, counted)
    }

    /// `poll_copy`'s loop: write what is held, then read, until one of them waits.
    #[inline(never)]
    fn poll_copy_loop(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut TcpStream,
        writer: &mut TcpStream,
        counted: &Counted<'_>,
    ) -> Poll<Result<(), Fault>> {
        // The last read left more in the reader, with room for it in the buffer: read it before
        // writing.
        let mut read_first = false;
        loop {
            if !read_first {
                match self.poll_write_held(cx, writer, counted) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        self.release();
                        return Poll::Ready(Err(Fault::Writer(e)));
                    }
                    Poll::Pending => return self.poll_watch_reader(cx, reader),
                }
                if self.read_done {
                    self.release();
                    self.finished = true;
                    return Poll::Ready(Ok(()));
                }
            }
            read_first = false;
            match self.poll_read(cx, reader) {
                // What was read before still goes out (the read's readiness poll stays armed).
                Poll::Pending if self.start < self.end => {}
                Poll::Pending => {
                    // Waiting for readiness needs no buffer or pipe: let other connections use them.
                    self.release();
                    return Poll::Pending;
                }
                Poll::Ready(Ok((0, _))) => (self.read_done, self.ended) = (true, true),
                Poll::Ready(Ok((n, more))) => {
                    read_first = more;
                    self.moves += 1;
                    if !self.splicing && n >= BULK_READ && pipes::enabled() {
                        self.start_splicing(reader, writer);
                    }
                }
                Poll::Ready(Err(e)) => {
                    // Bytes read before the failure are still passed on (see `transfer`).
                    if self.start == self.end {
                        self.release();
                    }
                    self.read_done = true;
                    return Poll::Ready(Err(Fault::Reader(e)));
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
