//! Moving bytes both ways between client and backend in one task.
//!
//! Each direction reads into a pooled buffer and writes it all out before reading again. When one
//! reader reaches end of stream while the other direction is still open, the writer's sending
//! side is shut down (half-close) and the other direction carries on alone. When both ends have
//! closed, no shutdown is sent: closing the sockets sends each peer its FIN anyway, and a
//! `shutdown` per side was a fifth of the cost of a short connection. The transfer ends when both
//! directions have finished, or at the first error (including an idle timeout) in either.

use crate::buffers;
use betwixt_control::stats::Slot;
use futures_lite::io::{AsyncRead, AsyncWrite};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{ready, Context, Poll};

/// One direction's progress.
struct Direction {
    buffer: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    read_done: bool,
    shut_down: bool,
}

impl Direction {
    fn new() -> Self {
        Direction { buffer: None, start: 0, end: 0, read_done: false, shut_down: false }
    }

    /// Passes the reader's end of stream on to the writer's peer, once.
    fn poll_shut_down<W: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        writer: Pin<&mut W>,
    ) -> Poll<io::Result<()>> {
        if !self.shut_down {
            ready!(writer.poll_close(cx))?;
            self.shut_down = true;
        }
        Poll::Ready(Ok(()))
    }

    fn release_buffer(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            buffers::give_back(buffer);
        }
    }

    /// Copies until the reader would block (Pending) or every byte up to the reader's end of
    /// stream has been written (Ready). `counted` receive the number of bytes written, as they
    /// are written.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        counted: [&AtomicU64; 2],
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            while self.start < self.end {
                let buffer = self.buffer.as_ref().expect("pending bytes live in a buffer");
                let n = ready!(writer.as_mut().poll_write(cx, &buffer[self.start..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.start += n;
                for counter in counted {
                    Slot::add(counter, n as u64);
                }
            }
            if self.read_done {
                self.release_buffer();
                return Poll::Ready(Ok(()));
            }
            let buffer = self.buffer.get_or_insert_with(buffers::take);
            match reader.as_mut().poll_read(cx, buffer) {
                Poll::Pending => {
                    // Waiting for readiness needs no buffer: let other connections use it.
                    self.release_buffer();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => self.read_done = true,
                Poll::Ready(Ok(n)) => {
                    self.start = 0;
                    self.end = n;
                }
                Poll::Ready(Err(e)) => {
                    self.release_buffer();
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.release_buffer();
    }
}

/// Byte counters to bump as data moves: client→backend bytes are `tx`, backend→client `rx`.
pub struct Meters<'a> {
    pub server: &'a Slot,
    pub backend: &'a Slot,
}

/// Runs until both directions are done. Returns the first error, if any.
pub async fn bidirectional<C, B>(client: &mut C, backend: &mut B, meters: Meters<'_>) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut upstream = Direction::new();
    let mut downstream = Direction::new();
    let up_counters = [&meters.server.tx, &meters.backend.tx];
    let down_counters = [&meters.server.rx, &meters.backend.rx];
    poll_fn(|cx| {
        let up = upstream.poll_copy(cx, Pin::new(&mut *client), Pin::new(&mut *backend), up_counters)?;
        let down =
            downstream.poll_copy(cx, Pin::new(&mut *backend), Pin::new(&mut *client), down_counters)?;
        match (up, down) {
            // Both ends closed: dropping the sockets closes them, which sends each its FIN.
            (Poll::Ready(()), Poll::Ready(())) => return Poll::Ready(Ok(())),
            (Poll::Ready(()), Poll::Pending) => ready!(upstream.poll_shut_down(cx, Pin::new(&mut *backend)))?,
            (Poll::Pending, Poll::Ready(())) => {
                ready!(downstream.poll_shut_down(cx, Pin::new(&mut *client)))?
            }
            (Poll::Pending, Poll::Pending) => {}
        }
        Poll::Pending
    })
    .await
}
