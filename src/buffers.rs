//! The shard's pool of transfer buffers.
//!
//! A connection direction borrows a buffer only while bytes are in flight: glommio's streams wait
//! for readiness without a buffer, so an idle connection holds none. That keeps idle memory per
//! connection small, and reuses a handful of hot buffers instead of allocating per read.

use std::cell::RefCell;

/// Bytes per read. Bulk streams move in chunks this large: each send wakes the receiving side
/// once, and those wake-ups, not the copies, dominate the cost of forwarding on a local network.
/// 256 KiB took one stream from 13 to 22 Gbit/s against 64 KiB (1 MiB bought nothing more).
pub const BUFFER_SIZE: usize = 256 * 1024;

/// Memory kept for reuse; buffers returned beyond it are freed.
const POOL_BYTES: usize = 32 * 1024 * 1024;
const POOL_LIMIT: usize = POOL_BYTES / BUFFER_SIZE;

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
