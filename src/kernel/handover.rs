//! When a connection goes to the kernel. Every connection starts in user space (the splicing
//! transfer); once betwixt has read from it `kernel_forwarding_after_reads` times (both
//! directions together) and everything read is written, the transfer stops (`End::Quiet`) and
//! the sockets are attached. A connection that ends sooner (one request, as most short
//! connections) never pays the attach, about 16 system calls, which it would not earn back; a
//! bulk stream, which the transfer splices, is never handed over: splice moves it faster than
//! the kernel's redirect queue.

use super::{forward, Kernel};
use crate::transfer::{self, End, Ending, Meters};
use glommio::net::TcpStream;

impl Kernel {
    /// The transfer's `quiet_after` for this setting: a read and its write are two of its moves.
    pub fn quiet_after(&self) -> u64 {
        self.after_reads.saturating_mul(2)
    }
}

/// Carries on a connection whose transfer stopped quiet: under kernel forwarding, or in user
/// space again where the kernel refuses it.
pub async fn take_over(
    kernel: &'static Kernel,
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: Meters<'_>,
    ending: Ending,
) -> End {
    match forward::forward(kernel, client, backend, &meters, ending).await {
        Some(end) => end,
        None => transfer::bidirectional(client, backend, meters, ending, 0).await,
    }
}
