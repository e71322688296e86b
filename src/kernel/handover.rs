//! When a connection goes to the kernel. Every connection starts in user space (the splicing
//! transfer); once betwixt has read from it `kernel_forwarding_after_reads` times (both
//! directions together) and everything read is written, the transfer stops and the sockets
//! are attached. A connection that ends sooner (one request, as most short connections) never
//! pays the attach, about 16 system calls, which it would not earn back; a bulk stream, which
//! the transfer splices, is never handed over: splice moves it faster than the kernel's
//! redirect queue.

use super::{forward, Kernel};
use crate::transfer::{self, End, Meters};
use glommio::net::TcpStream;
use std::time::Duration;

/// Runs a plain TCP connection to its end under kernel forwarding, as
/// `transfer::bidirectional` would.
pub async fn serve(
    kernel: &'static Kernel,
    client: &mut TcpStream,
    backend: &mut TcpStream,
    meters: Meters<'_>,
    idle: [Option<Duration>; 2],
) -> End {
    if kernel.after_reads > 0 {
        // A read and its write are two moves of the transfer's count.
        let quiet_after = kernel.after_reads.saturating_mul(2);
        match transfer::bidirectional(client, backend, meters, idle, Some(quiet_after)).await {
            End::Quiet => {}
            end => return end,
        }
    }
    match forward::forward(kernel, client, backend, &meters, idle).await {
        Some(end) => end,
        None => transfer::bidirectional(client, backend, meters, idle, None).await,
    }
}
