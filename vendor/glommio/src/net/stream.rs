// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// This product includes software developed at Datadog (https://www.datadoghq.com/). Copyright 2020 Datadog, Inc.
//
use crate::{
    reactor::Reactor,
    sys::{self, Source, SourceType},
};
use futures_lite::ready;
use nix::sys::socket::MsgFlags;
use std::{
    cell::{Cell, OnceCell},
    io,
    net::Shutdown,
    os::unix::io::{AsRawFd, FromRawFd, RawFd},
    rc::{Rc, Weak},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

type Result<T> = crate::Result<T, ()>;

/// Root trait for socket stream receive buffer
pub trait RxBuf {
    fn read(&mut self, buf: &mut [u8]) -> usize;
    fn peek(&self, buf: &mut [u8]) -> usize;
    fn is_empty(&self) -> bool;
    fn as_bytes(&self) -> &[u8];
    fn consume(&mut self, amt: usize);
    fn buffer_size(&self) -> usize;
    fn handle_result(&mut self, result: usize);
    fn unfilled(&mut self) -> &mut [u8];
}

#[derive(Debug, Default)]
pub struct NonBuffered;

impl RxBuf for NonBuffered {
    fn read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }

    fn peek(&self, _buf: &mut [u8]) -> usize {
        0
    }

    fn is_empty(&self) -> bool {
        true
    }

    fn as_bytes(&self) -> &[u8] {
        &[]
    }

    fn consume(&mut self, _amt: usize) {}

    fn buffer_size(&self) -> usize {
        0
    }

    fn handle_result(&mut self, _result: usize) {}

    fn unfilled(&mut self) -> &mut [u8] {
        &mut []
    }
}

/// Trait for receive buffer implementations
pub trait Buffered: RxBuf {}

/// Non-shared fixed sized receive buffer allocated
/// when buffered stream is created
#[derive(Debug)]
pub struct Preallocated {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    cap: usize,
}

impl Preallocated {
    const DEFAULT_BUFFER_SIZE: usize = 8192;

    /// Creates a fixed sized receive buffer
    pub fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size],
            tail: 0,
            head: 0,
            cap: size,
        }
    }
}

impl Default for Preallocated {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BUFFER_SIZE)
    }
}

impl Preallocated {
    fn len(&self) -> usize {
        self.tail - self.head
    }
}

impl Buffered for Preallocated {}

impl RxBuf for Preallocated {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
            self.head += sz;
        }
        sz
    }

    fn peek(&self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
        }
        sz
    }

    fn is_empty(&self) -> bool {
        self.head >= self.tail
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }

    fn consume(&mut self, amt: usize) {
        self.head += std::cmp::min(self.len(), amt);
    }

    fn buffer_size(&self) -> usize {
        self.cap
    }

    fn handle_result(&mut self, result: usize) {
        self.tail += result;
    }

    fn unfilled(&mut self) -> &mut [u8] {
        if self.len() == 0 {
            self.head = 0;
            self.tail = 0;
        }
        &mut self.buf[self.tail..]
    }
}

/// A stream's read or write timeout. Most streams never get one, so its state is made when
/// one is first set: 8 bytes in every stream instead of 40, and no timer id taken for nothing.
#[derive(Debug, Default)]
struct Timeout(OnceCell<Box<TimeoutState>>);

#[derive(Debug)]
struct TimeoutState {
    id: u64,
    timeout: Cell<Option<Duration>>,
    timer: Cell<Option<Instant>>,
}

impl Timeout {
    fn get(&self) -> Option<Duration> {
        self.0.get().and_then(|state| state.timeout.get())
    }

    fn set(&self, reactor: &Reactor, dur: Option<Duration>) -> Result<()> {
        if let Some(dur) = dur.as_ref() {
            if dur.as_nanos() == 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL).into());
            }
        }
        if dur.is_some() || self.0.get().is_some() {
            let state = self.0.get_or_init(|| {
                Box::new(TimeoutState {
                    id: reactor.register_timer(),
                    timeout: Cell::new(None),
                    timer: Cell::new(None),
                })
            });
            state.timeout.set(dur);
        }
        Ok(())
    }

    fn maybe_set_timer(&self, reactor: &Reactor, waker: &Waker) {
        let Some(state) = self.0.get() else { return };
        if let Some(timeout) = state.timeout.get() {
            if state.timer.get().is_none() {
                let deadline = Instant::now() + timeout;
                reactor.insert_timer(state.id, deadline, waker.clone());
                state.timer.set(Some(deadline));
            }
        }
    }

    fn cancel_timer(&self, reactor: &Reactor) {
        let Some(state) = self.0.get() else { return };
        if state.timer.take().is_some() {
            reactor.remove_timer(state.id);
        }
    }

    fn check(&self, reactor: &Reactor) -> io::Result<()> {
        let Some(state) = self.0.get() else { return Ok(()) };
        if let Some(deadline) = state.timer.get() {
            if !reactor.timer_exists(&(deadline, state.id)) {
                reactor.remove_timer(state.id);
                state.timer.take();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "Operation timed out",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct NonBufferedStream<S> {
    reactor: Weak<Reactor>,
    stream: S,
    source_tx: Option<Source>,
    source_rx: Option<Source>,
    /// The hang-up watch of `poll_hangup`, armed until it fires.
    source_hup: Option<Source>,
    write_timeout: Timeout,
    read_timeout: Timeout,
}

impl<S: AsRawFd> NonBufferedStream<S> {
    pub(crate) fn try_peek(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        super::yolo_peek(self.stream.as_raw_fd(), buf)
    }

    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let source = self.reactor.upgrade().unwrap().recv(
            self.stream.as_raw_fd(),
            buf.len(),
            MsgFlags::MSG_PEEK,
        );

        let sz = source.collect_rw().await?;
        match source.extract_source_type() {
            SourceType::SockRecv(mut src) => {
                buf[0..sz].copy_from_slice(&src.take().unwrap().as_bytes()[0..sz]);
            }
            _ => unreachable!(),
        }
        Ok(sz)
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.poll_read_with(cx, len, |fd| super::yolo_recv(fd, buf))
    }

    /// `poll_read` with the non-blocking attempt supplied by the caller (for example a
    /// `splice` out of the socket): `attempt` gets the socket's descriptor and returns `None`
    /// when the socket has nothing to read. `len` is how much the attempt asks for.
    pub(crate) fn poll_read_with(
        &mut self,
        cx: &Context<'_>,
        len: usize,
        attempt: impl FnOnce(RawFd) -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        self.poll_read_hinted(cx, len, |fd| attempt(fd).map(|r| r.map(|n| (n, false))))
            .map_ok(|(n, _)| n)
    }

    /// `poll_read_with` whose attempt also says whether the socket still holds something to
    /// read (more bytes, or its end of stream) after it: then no early poll is started, as the
    /// caller will read again at once.
    pub(crate) fn poll_read_hinted(
        &mut self,
        cx: &Context<'_>,
        len: usize,
        attempt: impl FnOnce(RawFd) -> Option<io::Result<(usize, bool)>>,
    ) -> Poll<io::Result<(usize, bool)>> {
        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();

        let no_pending_poll = self
            .source_rx
            .as_ref()
            .map(|src| src.has_result())
            .unwrap_or(true);

        if no_pending_poll {
            if let Some(result) = attempt(self.stream.as_raw_fd()) {
                let spent = self.source_rx.take();
                self.read_timeout.cancel_timer(reactor);
                let (result, more) = poll_err!(result);
                // Start an early poll if the buffer is not fully filled. So when
                // the next time `poll_read` is called, it will be known immediately
                // whether the underlying stream is ready for reading.
                if result > 0 && result < len && !more {
                    let fd = self.stream.as_raw_fd();
                    self.source_rx = Some(reactor.poll_read_ready_reusing(fd, spent));
                    // The `rush_dispatch`s here and after could be removed to
                    // improve performance if #458 is handled appropriately.
                    // reactor.rush_dispatch(self.source_rx.as_ref().unwrap());
                }
                return Poll::Ready(Ok((result, more)));
            }
        }

        poll_err!(self.read_timeout.check(reactor));

        if no_pending_poll {
            let spent = self.source_rx.take();
            self.source_rx = Some(reactor.poll_read_ready_reusing(self.stream.as_raw_fd(), spent));
            // reactor.rush_dispatch(self.source_rx.as_ref().unwrap());
        }

        let source = self.source_rx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.read_timeout.maybe_set_timer(reactor, cx.waker());
        Poll::Pending
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| super::yolo_send(fd, buf))
    }

    /// `poll_write` with the non-blocking attempt supplied by the caller (for example a
    /// `splice` into the socket): `attempt` returns `None` when the socket cannot take more.
    pub(crate) fn poll_write_with(
        &mut self,
        cx: &Context<'_>,
        attempt: impl FnOnce(RawFd) -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        // On the write path, we always start with calling `yolo_send`, because
        // it is very likely to success. It could be a waste if it already timed
        // out since the last `poll_write`, but it would not cost much more to
        // give it one last chance in this case.
        if let Some(result) = attempt(self.stream.as_raw_fd()) {
            let reactor = self.reactor.upgrade().unwrap();
            self.write_timeout.cancel_timer(reactor.as_ref());
            self.source_tx.take();
            return Poll::Ready(result);
        }

        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();
        poll_err!(self.write_timeout.check(reactor));

        let no_pending_poll = self
            .source_tx
            .as_ref()
            .map(|src| src.has_result())
            .unwrap_or(true);

        if no_pending_poll {
            let spent = self.source_tx.take();
            self.source_tx = Some(reactor.poll_write_ready_reusing(self.stream.as_raw_fd(), spent));
        }

        let source = self.source_tx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.write_timeout.maybe_set_timer(reactor, cx.waker());
        Poll::Pending
    }

    /// Whether a read would only wait: the readiness poll an earlier read armed has not
    /// completed. Then the task's waker is registered on it, as that read would, and `true`
    /// is returned; the caller can skip setting up a read attempt. With a read timeout set,
    /// `false`, so that the read itself checks and arms the timeout.
    pub(crate) fn poll_read_waits(&mut self, cx: &Context<'_>) -> bool {
        if self.read_timeout.0.get().is_some() {
            return false;
        }
        match &self.source_rx {
            Some(source) if !source.has_result() => {
                source.add_waiter_single(cx.waker());
                true
            }
            _ => false,
        }
    }

    /// Waits, without reading, for the peer to go away: resolves with the poll events seen,
    /// among `POLLERR`, `POLLHUP` and `POLLRDHUP`. One io_uring poll stays armed however often
    /// this is called, until it fires; the call after that arms a new one.
    pub(crate) fn poll_hangup(&mut self, cx: &Context<'_>) -> Poll<io::Result<u32>> {
        match &self.source_hup {
            Some(source) => {
                if let Some(result) = source.result() {
                    self.source_hup.take();
                    return Poll::Ready(result.map(|events| events as u32));
                }
            }
            None => {
                let reactor = self.reactor.upgrade().unwrap();
                self.source_hup = Some(reactor.poll_hangup(self.stream.as_raw_fd()));
            }
        }
        self.source_hup.as_ref().unwrap().add_waiter_single(cx.waker());
        Poll::Pending
    }

    pub(crate) fn poll_close(&mut self, _: &Context<'_>) -> Poll<io::Result<()>> {
        self.source_tx.take();
        Poll::Ready(sys::shutdown(self.stream.as_raw_fd(), Shutdown::Write))
    }

    /// io_uring has support for shutdown now, but it is not in any released
    /// kernel. Even with my "let's use latest" policy it would be crazy to
    /// mandate a kernel that doesn't even exist. So in preparation for that
    /// we'll sync-emulate this but already on an async wrapper
    pub(crate) fn poll_shutdown(
        &self,
        _cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(sys::shutdown(self.stream.as_raw_fd(), how))
    }
}

#[derive(Debug)]
pub(crate) struct GlommioStream<S, B> {
    stream: NonBufferedStream<S>,
    rx_buf: B,
    rx_done: Cell<bool>,
}

impl<S> From<socket2::Socket> for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + From<socket2::Socket> + Unpin,
{
    fn from(socket: socket2::Socket) -> Self {
        let reactor = crate::executor().reactor();
        let fd = socket.as_raw_fd();
        let mut stream = Self::unpolled_on(&reactor, socket);
        stream.stream.source_rx = Some(reactor.poll_read_ready(fd));
        stream
    }
}

impl<S> GlommioStream<S, NonBuffered>
where
    S: AsRawFd + From<socket2::Socket> + Unpin,
{
    /// A stream whose first read is tried at once, with no readiness poll armed beforehand:
    /// for an accepted socket, whose first bytes are as a rule already there by the time they
    /// are read, a poll armed up front would complete as soon as it is submitted, a round
    /// through the ring for nothing. (`from` arms one, which suits a socket just connected:
    /// its peer speaks only once spoken to, and the first read then costs no failed attempt.)
    pub(crate) fn unpolled(socket: socket2::Socket) -> Self {
        Self::unpolled_on(&crate::executor().reactor(), socket)
    }

    fn unpolled_on(reactor: &Rc<Reactor>, socket: socket2::Socket) -> Self {
        GlommioStream {
            stream: NonBufferedStream {
                reactor: Rc::downgrade(reactor),
                stream: socket.into(),
                source_tx: None,
                source_rx: None,
                source_hup: None,
                write_timeout: Timeout::default(),
                read_timeout: Timeout::default(),
            },
            rx_buf: NonBuffered,
            rx_done: Cell::new(false),
        }
    }
}

impl<S: AsRawFd> AsRawFd for GlommioStream<S, NonBuffered> {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.stream.as_raw_fd()
    }
}

impl<S> FromRawFd for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + FromRawFd + From<socket2::Socket> + Unpin,
{
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        let socket = socket2::Socket::from_raw_fd(fd);
        GlommioStream::from(socket)
    }
}

impl<S: AsRawFd> GlommioStream<S, NonBuffered> {
    pub(crate) fn poll_read_with(
        &mut self,
        cx: &Context<'_>,
        len: usize,
        attempt: impl FnOnce(RawFd) -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_read_with(cx, len, attempt)
    }

    pub(crate) fn poll_read_hinted(
        &mut self,
        cx: &Context<'_>,
        len: usize,
        attempt: impl FnOnce(RawFd) -> Option<io::Result<(usize, bool)>>,
    ) -> Poll<io::Result<(usize, bool)>> {
        self.stream.poll_read_hinted(cx, len, attempt)
    }

    pub(crate) fn poll_write_with(
        &mut self,
        cx: &Context<'_>,
        attempt: impl FnOnce(RawFd) -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_write_with(cx, attempt)
    }

    pub(crate) fn poll_hangup(&mut self, cx: &Context<'_>) -> Poll<io::Result<u32>> {
        self.stream.poll_hangup(cx)
    }

    pub(crate) fn poll_read_waits(&mut self, cx: &Context<'_>) -> bool {
        self.stream.poll_read_waits(cx)
    }
}

impl<S> GlommioStream<S, NonBuffered> {
    pub(crate) fn buffered_with<B: Buffered>(self, rx_buf: B) -> GlommioStream<S, B> {
        GlommioStream {
            stream: self.stream,
            rx_buf,
            rx_done: self.rx_done,
        }
    }
}

impl<S: AsRawFd, B: RxBuf> GlommioStream<S, B> {
    /// Receives data on the socket from the remote address to which it is
    /// connected, without removing that data from the queue.
    ///
    /// On success, returns the number of bytes peeked.
    /// Successive calls return the same data. This is accomplished by passing
    /// `MSG_PEEK` as a flag to the underlying `recv` system call.
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pos = self.rx_buf.peek(buf);
        if pos < buf.len() && !self.rx_done.get() {
            if let Some(result) = self.stream.try_peek(&mut buf[pos..]) {
                match result {
                    Err(e) => return Err(e),
                    Ok(len) => {
                        pos += len;
                        if len == 0 {
                            self.rx_done.set(true);
                        }
                    }
                }
            }
        }
        if pos > 0 || self.rx_done.get() {
            return Ok(pos);
        }
        self.stream.peek(buf).await
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.rx_buf.is_empty() {
            if buf.len() >= self.rx_buf.buffer_size() {
                return self.stream.poll_read(cx, buf);
            }
            if !self.rx_done.get() {
                poll_err!(ready!(self.poll_replenish_buffer(cx)));
            }
        }
        Poll::Ready(Ok(self.rx_buf.read(buf)))
    }

    fn poll_replenish_buffer(&mut self, cx: &Context<'_>) -> Poll<io::Result<usize>> {
        let result = poll_err!(ready!(self.stream.poll_read(cx, self.rx_buf.unfilled())));
        self.rx_buf.handle_result(result);
        if result == 0 {
            self.rx_done.set(true);
        }
        Poll::Ready(Ok(result))
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write(cx, buf)
    }

    pub(crate) fn poll_flush(&self, _cx: &Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_close(&mut self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_close(cx)
    }

    pub(crate) fn poll_shutdown(
        &self,
        cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        self.stream.poll_shutdown(cx, how)
    }

    pub(crate) fn set_write_timeout(&self, dur: Option<Duration>) -> Result<()> {
        let reactor = self.stream.reactor.upgrade().unwrap();
        self.stream.write_timeout.set(&reactor, dur)
    }

    pub(crate) fn set_read_timeout(&self, dur: Option<Duration>) -> Result<()> {
        let reactor = self.stream.reactor.upgrade().unwrap();
        self.stream.read_timeout.set(&reactor, dur)
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.stream.write_timeout.get()
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.stream.read_timeout.get()
    }

    pub(crate) fn stream(&self) -> &S {
        &self.stream.stream
    }
}

impl<S: AsRawFd, B: Buffered> GlommioStream<S, B> {
    pub(crate) fn poll_fill_buf(&mut self, cx: &Context<'_>) -> Poll<io::Result<&[u8]>> {
        if self.rx_buf.is_empty() {
            poll_err!(ready!(self.poll_replenish_buffer(cx)));
        }
        Poll::Ready(Ok(self.rx_buf.as_bytes()))
    }

    pub(crate) fn consume(&mut self, amt: usize) {
        self.rx_buf.consume(amt);
    }
}
