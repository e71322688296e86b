//! The shard's pool of transfer buffers.
//!
//! A connection direction borrows a buffer only while bytes are in flight: glommio's streams wait
//! for readiness without a buffer, so an idle connection holds none. That keeps idle memory per
//! connection small, and reuses a handful of hot buffers instead of allocating per read.

use std::cell::RefCell;

/// Bytes per read. Large enough for bulk streams to need few system calls.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Buffers kept for reuse; more than this are freed when returned.
const POOL_LIMIT: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

pub fn take() -> Box<[u8]> {
    POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_else(|| vec![0u8; BUFFER_SIZE].into_boxed_slice())
}

pub fn give_back(buffer: Box<[u8]>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_LIMIT {
            pool.push(buffer);
        }
    });
}
