//! Closing a server's live connections on one shard, all at once: when a server is deleted (as
//! gobetween does), or when its drain time is over.
//!
//! Each shard keeps one `Connections` per server it serves; every connection task of that server
//! runs under `until_aborted` and holds an `Rc` of it. `abort` wakes them all, and each task then
//! drops its connection future: the sockets close and the counters' drop guards give back their
//! places, as on any other exit. Nothing here is shared between shards; a connection costs one
//! waker clone and one slot in a vector, taken on its first poll and given back when it ends.

use crate::wakers::WakerSlab;
use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::Poll;

/// The live connections of one server on one shard.
#[derive(Default)]
pub struct Connections {
    aborted: Cell<bool>,
    /// The task of every connection that has been polled, until it ends.
    tasks: WakerSlab,
}

impl Connections {
    /// Ends every connection under `until_aborted` (those not polled yet end on their first
    /// poll), now and from now on.
    pub fn abort(&self) {
        self.aborted.set(true);
        self.tasks.wake_all();
    }

    /// Whether any connection task still holds `connections`, besides the caller's own handle.
    pub fn in_use(connections: &Rc<Connections>) -> bool {
        Rc::strong_count(connections) > 1
    }
}

/// Gives a registered place back when the connection task ends, however it ends.
struct Registration {
    connections: Rc<Connections>,
    place: Option<usize>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // After `abort` the slab was emptied, and no task takes a place again.
        if let (Some(place), false) = (self.place, self.connections.aborted.get()) {
            self.connections.tasks.leave(place);
        }
    }
}

/// Runs `work` until it completes or `connections` is aborted, whichever comes first; on abort
/// `work` is dropped where it stands.
///
/// A plain function, not an `async fn`: an async fn keeps its arguments in its future apart
/// from the futures it awaits, so `work` (the whole connection) would be stored twice over in
/// every connection task, idle or not.
pub fn until_aborted(
    connections: Rc<Connections>,
    work: impl Future<Output = ()>,
) -> impl Future<Output = ()> {
    let mut registration = Registration { connections, place: None };
    let aborted = poll_fn(move |cx| {
        let connections = &registration.connections;
        if connections.aborted.get() {
            return Poll::Ready(());
        }
        // A task's waker stays valid for the task's life: registering once is enough.
        if registration.place.is_none() {
            registration.place = Some(connections.tasks.enter(cx.waker()));
        }
        Poll::Pending
    });
    // The abort is looked at first, so an aborted connection takes no further step.
    futures_lite::future::or(aborted, work)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::pending;

    #[test]
    fn abort_ends_pending_work_and_places_are_reused() {
        glommio::LocalExecutor::default().run(async {
            let connections = Rc::new(Connections::default());
            let finished = Rc::new(Cell::new(0));
            let spawn = |work: std::pin::Pin<Box<dyn Future<Output = ()>>>| {
                let finished = finished.clone();
                let connections = connections.clone();
                glommio::spawn_local(async move {
                    until_aborted(connections, work).await;
                    finished.set(finished.get() + 1);
                })
                .detach();
            };
            // One ends by itself: its place is given back and taken by the next.
            spawn(Box::pin(async {}));
            for _ in 0..3 {
                spawn(Box::pin(pending()));
            }
            glommio::yield_if_needed().await;
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(finished.get(), 1);
            assert!(Connections::in_use(&connections));
            assert_eq!(connections.tasks.len(), 3);
            connections.abort();
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(finished.get(), 4);
            assert!(!Connections::in_use(&connections));
            // A task first polled after the abort ends at once.
            spawn(Box::pin(pending()));
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(finished.get(), 5);
        });
    }
}
