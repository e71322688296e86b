use std::{fmt, io, marker::PhantomData, ptr::NonNull, time::Duration};

use super::{resultify, IoUring, SQEs, SQE};
use crate::uring_sys;

/// The queue of pending IO events.
///
/// Each element is a [`SQE`](crate::sqe::SQE).
/// By default, events are processed in parallel after being submitted.
/// You can modify this behavior for specific events using event
/// [`SubmissionFlags`](crate::sqe::SubmissionFlags).
///
/// # Examples
/// Consider a read event that depends on a successful write beforehand.
///
/// We reify this relationship by using `IO_LINK` to link these events.
pub struct SubmissionQueue<'ring> {
    ring: NonNull<uring_sys::io_uring>,
    _marker: PhantomData<&'ring mut IoUring>,
}

impl<'ring> SubmissionQueue<'ring> {
    pub(crate) fn new(ring: &'ring IoUring) -> SubmissionQueue<'ring> {
        SubmissionQueue {
            ring: NonNull::from(&ring.ring),
            _marker: PhantomData,
        }
    }

    /// Returns new [`SQE`s](crate::sqe::SQE) until the queue size is reached.
    /// After that, will return `None`.
    pub fn prepare_sqe(&mut self) -> Option<SQE<'_>> {
        use std::sync::atomic::{AtomicU32, Ordering};
        // liburing's `io_uring_get_sqe` and `io_uring_prep_nop`, in Rust: two calls into C
        // per request otherwise.
        unsafe {
            let sq = &mut self.ring.as_mut().sq;
            // The kernel moves the head as it takes entries in.
            let head = (*(sq.khead as *const AtomicU32)).load(Ordering::Acquire);
            let next = sq.sqe_tail.wrapping_add(1);
            if next.wrapping_sub(head) > *sq.kring_entries {
                return None;
            }
            let sqe = sq.sqes.add((sq.sqe_tail & *sq.kring_mask) as usize);
            sq.sqe_tail = next;
            // What `io_uring_prep_nop` leaves: every field zero (the no-op's opcode is 0),
            // no descriptor.
            std::ptr::write_bytes(sqe, 0, 1);
            (*sqe).fd = -1;
            debug_assert_eq!((*sqe).opcode, uring_sys::IoRingOp::IORING_OP_NOP as u8);
            Some(SQE::new(&mut *sqe))
        }
    }

    /// Returns the next `count` [`SQE`]s which can be prepared to submit as an
    /// iterator.
    ///
    /// See the [`SQEs`] type for more information about how these multiple SQEs
    /// can be used.
    pub fn prepare_sqes(&mut self, count: u32) -> Option<SQEs<'_>> {
        unsafe {
            if self.space_left() >= count {
                Some(SQEs::new(self.ring.as_mut(), count))
            } else {
                None
            }
        }
    }

    /// Submit all events in the queue. Returns the number of submitted events.
    ///
    /// If this function encounters any IO errors an
    /// [`io::Error`](std::io::Result) variant is returned.
    pub fn submit(&mut self) -> io::Result<u32> {
        resultify(unsafe { uring_sys::io_uring_submit(self.ring.as_ptr()) })
    }

    pub fn submit_and_wait(&mut self, wait_for: u32) -> io::Result<u32> {
        resultify(unsafe { uring_sys::io_uring_submit_and_wait(self.ring.as_ptr(), wait_for as _) })
    }

    pub fn submit_and_wait_with_timeout(
        &mut self,
        wait_for: u32,
        duration: Duration,
    ) -> io::Result<u32> {
        let ts = uring_sys::__kernel_timespec {
            tv_sec: duration.as_secs() as _,
            tv_nsec: duration.subsec_nanos() as _,
        };

        loop {
            if let Some(mut sqe) = self.prepare_sqe() {
                sqe.clear();
                unsafe {
                    sqe.prep_timeout(&ts, 0, crate::iou::sqe::TimeoutFlags::empty());
                    sqe.set_user_data(uring_sys::LIBURING_UDATA_TIMEOUT);
                    return resultify(uring_sys::io_uring_submit_and_wait(
                        self.ring.as_ptr(),
                        wait_for as _,
                    ));
                }
            }

            self.submit()?;
        }
    }

    /// Requests prepared and not yet taken by the kernel: liburing's `io_uring_sq_ready`,
    /// written here so that it inlines (the reactor asks several times per pass).
    #[inline]
    pub fn ready(&self) -> u32 {
        use std::sync::atomic::{AtomicU32, Ordering};
        unsafe {
            let sq = &self.ring.as_ref().sq;
            // The kernel moves the head; the acquire load is what liburing makes under
            // SQPOLL and costs nothing more on x86.
            let head = (*(sq.khead as *const AtomicU32)).load(Ordering::Acquire);
            sq.sqe_tail.wrapping_sub(head)
        }
    }

    pub fn space_left(&self) -> u32 {
        use std::sync::atomic::{AtomicU32, Ordering};
        // liburing's `io_uring_sq_space_left`, in Rust as `prepare_sqe` is (a call into C
        // otherwise): the entries less those prepared and not yet taken in by the kernel.
        unsafe {
            let sq = &self.ring.as_ref().sq;
            let head = (*(sq.khead as *const AtomicU32)).load(Ordering::Acquire);
            *sq.kring_entries - sq.sqe_tail.wrapping_sub(head)
        }
    }
}

impl fmt::Debug for SubmissionQueue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fd = unsafe { self.ring.as_ref().ring_fd };
        f.debug_struct(std::any::type_name::<Self>())
            .field("fd", &fd)
            .finish()
    }
}

unsafe impl<'ring> Send for SubmissionQueue<'ring> {}
unsafe impl<'ring> Sync for SubmissionQueue<'ring> {}
