//! A slab of task wakers on one shard: a task takes a place with its waker, gives it back when
//! it no longer wants waking, and whoever holds the slab wakes every task in it at once. Taking
//! and giving back a place are a vector push or pop, with no allocation once the slab has
//! grown to its peak.

use std::cell::RefCell;
use std::task::Waker;

#[derive(Default)]
pub struct WakerSlab {
    /// One waker per place; `None` where it was given back.
    wakers: RefCell<Vec<Option<Waker>>>,
    /// Places given back, taken first.
    free: RefCell<Vec<usize>>,
}

impl WakerSlab {
    /// Keeps `waker` until `leave` or `wake_all`; its place.
    pub fn enter(&self, waker: &Waker) -> usize {
        let mut wakers = self.wakers.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(place) => {
                wakers[place] = Some(waker.clone());
                place
            }
            None => {
                wakers.push(Some(waker.clone()));
                wakers.len() - 1
            }
        }
    }

    /// Gives a place back. Not for a place `wake_all` has emptied since it was taken: the slab
    /// may have handed it to another task by then (the callers know by a flag or a count).
    pub fn leave(&self, place: usize) {
        if let Some(slot) = self.wakers.borrow_mut().get_mut(place) {
            if slot.take().is_some() {
                self.free.borrow_mut().push(place);
            }
        }
    }

    /// Empties the slab and wakes every task it held; how many.
    pub fn wake_all(&self) -> usize {
        // Taken out first: a task woken here may take a place at once.
        let mut wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        self.free.borrow_mut().clear();
        let mut woken = 0;
        for waker in wakers.drain(..).flatten() {
            waker.wake();
            woken += 1;
        }
        // The emptied vector keeps its room for the next tasks, unless one came meanwhile.
        let mut slab = self.wakers.borrow_mut();
        if slab.is_empty() {
            *slab = wakers;
        }
        woken
    }

    /// How many tasks are in the slab.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.wakers.borrow().iter().flatten().count()
    }
}
