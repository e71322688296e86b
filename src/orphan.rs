//! Starting a program as an orphan: its parent is the service manager (PID 1, or the nearest
//! child subreaper), not this process.
//!
//! An upgrade's successor is started this way. systemd accepts `MAINPID=` naming a process that
//! is not its own child, but then treats it as "alien": it cannot wait for it, so
//! `systemctl stop` sends SIGKILL right after SIGTERM, without the drain, and the unit ends
//! `failed` with result `signal` (systemd 252, tests/systemd_real.rs). Started through a
//! short-lived intermediate process, the successor is the manager's child by the time it says
//! `MAINPID=`, and systemd supervises it as it did the first process.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// Starts `command` as an orphan and returns its pid. `command` runs as with `spawn` (an exec
/// failure is this call's error); the intermediate process is reaped here.
pub fn spawn(mut command: Command) -> std::io::Result<i32> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors, which the OwnedFds then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let report = write.as_raw_fd();
    // SAFETY: runs in the forked child before exec, where only async-signal-safe calls are
    // allowed: fork, write and _exit are. The intermediate reports the program's pid and exits
    // at once; the grandchild returns to exec the program (the pipe is close-on-exec).
    unsafe {
        command.pre_exec(move || match libc::fork() {
            -1 => Err(std::io::Error::last_os_error()),
            0 => Ok(()),
            pid => {
                libc::write(report, (&pid as *const libc::pid_t).cast(), std::mem::size_of::<libc::pid_t>());
                libc::_exit(0)
            }
        });
    }
    // Returns once the intermediate has exited and the program has executed (or failed to).
    let mut intermediate = command.spawn()?;
    drop(write);
    let _ = intermediate.wait();
    let mut pid = [0u8; std::mem::size_of::<libc::pid_t>()];
    File::from(read).read_exact(&mut pid)?;
    Ok(libc::pid_t::from_ne_bytes(pid))
}

/// Blocks until the process `pid` (not a child: no exit status) has exited.
pub fn wait_gone(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: a descriptor just returned by pidfd_open, owned by nothing else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        loop {
            let mut poll = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd; a pidfd becomes readable when the process exits.
            if unsafe { libc::poll(&mut poll, 1, -1) } >= 0 {
                return;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    }
    // Kernels before 5.3 (no pidfd_open): look every 200 ms.
    // SAFETY: kill with signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
}
