//! Network namespaces for tests that need more than this host's loopback (wildcard binds,
//! several hosts' addresses): made by the test, with names unique to the process, and deleted
//! on drop, also when the test fails half-way. Creating them needs root.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `ip` with `args`; panics with its message on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().expect("the `ip` tool (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// One network namespace with its loopback interface up (IPv4 and IPv6).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `role` ends the name, to tell a test's namespaces apart in `ip netns`.
    pub fn create(role: &str) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("bxt{}-{}-{role}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let made = Netns { name };
        ip(&["-n", &made.name, "link", "set", "lo", "up"]);
        made
    }

    /// `create`, for a test that needs nothing else of root: without root it says the test is
    /// skipped and gives `None`.
    pub fn create_if_root(role: &str) -> Option<Netns> {
        if !is_root() {
            eprintln!("skipped: needs root, to create a network namespace");
            return None;
        }
        Some(Netns::create(role))
    }

    /// Runs `f` on a thread inside this namespace: sockets it creates, and processes it
    /// starts, live in the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
                    // SAFETY: setns on this thread only, with a namespace file we hold open.
                    let rc =
                        unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {}: {}", self.name, std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
