//! The start of a udp server's drain, told to the task that reads its socket. The task waits
//! for datagrams with nothing else to wake it, so the shard that stops the server (the same
//! thread) wakes it here; from then on it opens no session and ends once its sessions have.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct DrainSignal {
    started: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl DrainSignal {
    /// The server was removed with a drain: its sessions may finish.
    pub fn start(&self) {
        self.started.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    pub fn started(&self) -> bool {
        self.started.get()
    }

    /// Resolves once the drain has started.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            if self.started.get() {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn start_wakes_the_waiting_task() {
        let signal = DrainSignal::default();
        let woken = Arc::new(Woken(AtomicBool::new(false)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(signal.wait());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert!(!signal.started() && !woken.0.load(Ordering::SeqCst));
        signal.start();
        assert!(woken.0.load(Ordering::SeqCst));
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }
}
