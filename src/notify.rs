//! The systemd notify protocol (`sd_notify(3)`): one datagram of `KEY=value` lines to the unix
//! socket named by `NOTIFY_SOCKET` (a path, or an abstract name when it starts with '@').
//! Without the variable every call does nothing, so betwixt runs the same outside systemd.
//! `docs/systemd.md` tells what is sent when.

use betwixt_control::plane::Plane;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sends `message` (newline-separated `KEY=value` lines) to `NOTIFY_SOCKET`, if set. A failure is
/// logged and otherwise ignored: systemd not listening must not stop betwixt.
pub fn send(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else { return };
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&socket)),
    };
    // A datagram socket never blocks long on a local send, but a full receive queue would:
    // a stalled listener must not stall the control thread.
    let sent = addr.and_then(|addr| {
        let datagram = UnixDatagram::unbound()?;
        datagram.set_nonblocking(true)?;
        datagram.send_to_addr(message.as_bytes(), &addr)
    });
    // Logged once per run of failures: a full queue fails every ping until systemd reads again.
    static FAILING: AtomicBool = AtomicBool::new(false);
    match sent {
        Err(e) if !FAILING.swap(true, Ordering::Relaxed) => {
            log::warn!("cannot notify systemd at {}: {e}", socket.to_string_lossy())
        }
        Err(_) => {}
        Ok(_) => FAILING.store(false, Ordering::Relaxed),
    }
}

/// Every listener is bound and every shard serves.
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A reload begins; `ready` ends it. systemd ≥ 253 wants the monotonic clock with it, to tell
/// this reload's READY=1 from an earlier one.
pub fn reloading() {
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading", monotonic_usec()));
}

/// The shutdown begins (live connections drain from here on).
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining");
}

/// This process is the service's main process now (a successor that took over).
pub fn main_pid() {
    send(&format!("MAINPID={}", std::process::id()));
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write to; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`), when it is meant for this process
/// (`WATCHDOG_PID` unset or ours).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok().filter(|&u| u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.trim().parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

/// When systemd asks for a watchdog: sends WATCHDOG=1 every half interval, as long as every
/// shard answers — each ping needs every shard to have acknowledged the inbox generation asked
/// for at the previous one, and a stuck shard withholds the pings, so systemd restarts the
/// service. (A shard answers about 20 ms after its doorbell rings: `WatchdogSec` is meant in
/// seconds.) Must run inside the control runtime. The pings stop when the returned
/// handle is aborted: at shutdown, when systemd no longer watches, and at an upgrade's handover,
/// when the successor pings instead.
pub fn start_watchdog(plane: Arc<Plane>) -> Option<tokio::task::AbortHandle> {
    let interval = watchdog_interval()?;
    let half = interval / 2;
    log::info!("systemd watchdog: pinging every {half:?} while every shard answers");
    let pings = tokio::spawn(async move {
        let mut marks = plane.poke();
        let mut stuck = false;
        loop {
            tokio::time::sleep(half).await;
            // Not answered yet: no ping, and the same question stays open, so a shard slow
            // rather than stuck is pinged for as soon as it answers.
            if !plane.applied(&marks) {
                if !std::mem::replace(&mut stuck, true) {
                    log::error!(
                        "systemd watchdog: a shard has not answered for {half:?}; no ping until it does"
                    );
                }
                continue;
            }
            if std::mem::replace(&mut stuck, false) {
                log::info!("systemd watchdog: every shard answers again");
            }
            send("WATCHDOG=1");
            marks = plane.poke();
        }
    });
    Some(pings.abort_handle())
}
