//! Binary upgrade, the process side (the sockets and the conversation are
//! `betwixt_control::upgrade`; the whole story is in `docs/upgrade.md`).
//!
//! The running process (`Offering`) waits on its upgrade socket for a successor, hands it a
//! duplicate of every listening socket and, once told `taken`, stops accepting and drains as on
//! SIGTERM. On SIGUSR2 it starts that successor itself: its own command line again, with
//! `BETWIXT_UPGRADE_FROM` naming the socket.
//!
//! The successor (`Takeover`) receives the sockets before it binds anything, so that binding
//! takes them instead; once its shards serve on them it claims the pidfile, tells systemd its
//! pid, and sends `taken`. Until then the old process has not stopped accepting, so whatever
//! happens to the successor (a bad configuration, a crash, a kill) leaves the old one serving.

use crate::pidfile::Pidfile;
use betwixt_control::control::Control;
use betwixt_control::plane::Plane;
use betwixt_control::upgrade::{self, wire};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Set by a process that starts its successor: the socket the successor takes over from.
/// Read (and removed) at startup, and equivalent to `--upgrade-from`, which it overrides.
pub const UPGRADE_FROM_ENV: &str = "BETWIXT_UPGRADE_FROM";

/// How long the old process waits for `taken` once the sockets are sent: the successor binds
/// what it did not inherit, loads certificates and starts its shards in that time.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(60);

/// How long the successor waits for its shards to serve on the sockets before it says `taken`.
/// The kernel queues connections meanwhile, so waiting longer only delays the old one's drain.
const SHARDS_READY_LIMIT: Duration = Duration::from_secs(5);

/// The socket to take over from: `BETWIXT_UPGRADE_FROM`, else `--upgrade-from`. The variable
/// is removed so that programs betwixt runs (exec healthchecks) do not see it.
pub fn upgrade_from(flag: Option<&Path>) -> Option<PathBuf> {
    let from_env = std::env::var_os(UPGRADE_FROM_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    std::env::remove_var(UPGRADE_FROM_ENV);
    from_env.or_else(|| flag.map(Path::to_path_buf))
}

/// The successor's side, from before anything is bound until the old process lets go.
pub struct Takeover {
    predecessor: wire::Predecessor,
    path: PathBuf,
}

impl Takeover {
    /// Connects to the running betwixt and files every socket it serves on, for binding to take.
    pub fn begin(path: &Path) -> Result<Takeover, String> {
        let failed = |e: std::io::Error| format!("upgrade from {}: {e}", path.display());
        let predecessor = wire::Predecessor::connect(path).map_err(failed)?;
        let handed = predecessor.receive().map_err(failed)?;
        let count = upgrade::inherit(handed).map_err(|e| format!("upgrade from {}: {e}", path.display()))?;
        log::info!("upgrade: received {count} listening socket(s) from pid {}", predecessor.pid);
        Ok(Takeover { predecessor, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Once everything is bound and the shards run: waits for the shards to serve on the
    /// sockets, claims the pidfile, tells systemd, and tells the old process to stop accepting.
    /// An error (the pidfile names another running instance) leaves the old one serving.
    pub async fn complete(self, plane: &Plane, pidfile: Option<&Path>) -> Result<Option<Pidfile>, String> {
        shards_serving(plane).await;
        for unused in upgrade::release_unused() {
            log::info!("upgrade: {unused} is not in this configuration: closed");
        }
        let pid = self.predecessor.pid;
        let claimed = pidfile.map(|path| Pidfile::claim_after(path, Some(pid))).transpose()?;
        // With `NotifyAccess=all`, systemd follows this process at once; without it, `PIDFile=`
        // does the same when the old process exits.
        crate::notify::main_pid();
        match self.predecessor.taken() {
            Ok(()) => log::info!("upgrade: serving; pid {pid} stops accepting and drains"),
            // It died or gave up waiting: this process serves either way.
            Err(e) => log::warn!("upgrade: could not tell pid {pid} to stop accepting: {e}"),
        }
        Ok(claimed)
    }
}

/// Waits (at most `SHARDS_READY_LIMIT`) until every shard has put into effect what the plane
/// holds now: the servers added so far are served.
pub async fn shards_serving(plane: &Plane) {
    let marks = plane.generations();
    let deadline = Instant::now() + SHARDS_READY_LIMIT;
    while !plane.applied(&marks) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The running process's side: the upgrade socket, SIGUSR2, and the news that a successor
/// has taken over.
pub struct Offering {
    taken: mpsc::Receiver<i32>,
}

impl Offering {
    /// Listens on `path` for a successor (replacing the predecessor's socket file when this
    /// process has just taken over from it) and starts a successor on SIGUSR2. Must run inside
    /// the control runtime.
    pub fn start(path: &Path, control: Arc<Control>, replace: bool) -> Result<Offering, String> {
        let offer = wire::Offer::listen(path, replace)
            .map_err(|e| format!("--upgrade-socket {}: {e}", path.display()))?;
        log::info!("upgrade: offering the listening sockets on {}", path.display());
        let (tell, taken) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("upgrade".into())
            .spawn(move || serve_successors(offer, control, tell))
            .map_err(|e| format!("cannot start the upgrade thread: {e}"))?;
        let usr2 = signal(SignalKind::user_defined2()).map_err(|e| format!("cannot handle SIGUSR2: {e}"))?;
        tokio::spawn(start_successors(usr2, path.to_path_buf()));
        Ok(Offering { taken })
    }

    /// Waits until a successor has taken over, then stops accepting everywhere (leaving the
    /// sockets to it), and names the successor for the log.
    pub async fn taken_over(&mut self, control: &Control) -> String {
        let Some(pid) = self.taken.recv().await else { return std::future::pending().await };
        upgrade::hand_over(control);
        format!("taken over by pid {pid}")
    }
}

/// Waits for `offering` when there is one, for ever otherwise.
pub async fn taken_over(offering: &mut Option<Offering>, control: &Control) -> String {
    match offering {
        Some(offering) => offering.taken_over(control).await,
        None => std::future::pending().await,
    }
}

/// The upgrade thread: one successor at a time, until one takes over.
fn serve_successors(offer: wire::Offer, control: Arc<Control>, taken: mpsc::Sender<i32>) {
    loop {
        let successor = match offer.accept() {
            Ok(successor) => successor,
            Err(e) => {
                log::warn!("upgrade: {}: {e}", offer.path().display());
                // A refused peer, or a failing accept (EMFILE): do not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let pid = successor.pid;
        log::info!("upgrade: pid {pid} asks for the listening sockets");
        let outcome = upgrade::listeners(&control)
            .and_then(|handed| successor.send(&handed).map(|()| handed.len()))
            .and_then(|sent| {
                log::info!("upgrade: handed {sent} socket(s) to pid {pid}; still accepting until it serves");
                successor.wait_taken(TAKEOVER_LIMIT)
            });
        match outcome {
            Ok(true) => {
                let _ = taken.blocking_send(pid);
                // The successor listens on this path now.
                offer.give_up_path();
                return;
            }
            Ok(false) => log::warn!("upgrade: pid {pid} went away without taking over; still serving"),
            Err(e) => log::warn!("upgrade: pid {pid}: {e}; still serving"),
        }
    }
}

/// SIGUSR2: start this program again, with the same arguments and environment, to take over.
/// Its output goes where this process's goes; if it exits before taking over, that is logged
/// and this process goes on serving.
async fn start_successors(mut usr2: tokio::signal::unix::Signal, path: PathBuf) {
    // A successor started and not exited yet: a second SIGUSR2 would only race it.
    let busy = Arc::new(AtomicBool::new(false));
    while usr2.recv().await.is_some() {
        if busy.load(Ordering::Acquire) {
            log::warn!("SIGUSR2: an upgrade is already under way; ignoring");
            continue;
        }
        let mut args = std::env::args_os();
        let Some(program) = args.next() else { continue };
        let mut command = std::process::Command::new(&program);
        command
            .args(args)
            .env(UPGRADE_FROM_ENV, &path)
            // systemd's watchdog names this process; the successor pings once it is the main one.
            .env_remove("WATCHDOG_PID")
            .stdin(std::process::Stdio::null());
        // An orphan, so that the service manager supervises it as its own child (src/orphan.rs).
        match crate::orphan::spawn(command) {
            Ok(pid) => {
                log::info!("SIGUSR2: started {} (pid {pid}) to take over", program.to_string_lossy());
                busy.store(true, Ordering::Release);
                let done = busy.clone();
                let watched = std::thread::Builder::new().name("successor".into()).spawn(move || {
                    crate::orphan::wait_gone(pid);
                    log::warn!("upgrade: new process {pid} exited");
                    done.store(false, Ordering::Release);
                });
                if let Err(e) = watched {
                    log::warn!("upgrade: cannot watch pid {pid}: {e}");
                    busy.store(false, Ordering::Release);
                }
            }
            Err(e) => log::error!("SIGUSR2: cannot start {}: {e}", program.to_string_lossy()),
        }
    }
}
