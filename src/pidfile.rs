//! `-p/--pidfile`: written before the configuration is read, as gobetween does, and refused
//! when it names a process that is still running, so a second instance (which could bind the
//! same `SO_REUSEPORT` ports and split the traffic) does not start by mistake.
//!
//! A pidfile that cannot name a running instance is replaced: an empty one, one naming a dead
//! process, our own pid (a container restarted with the same pid), or a pid whose process
//! started after the file was last written (the pid was reused after a crash or reboot).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Allowance between a process's start time (read in clock ticks since boot) and the pidfile's
/// modification time when deciding which came first.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// The claimed pidfile; removed on drop if it still names this process.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    // EPERM: it exists but belongs to someone else.
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// When `pid` started, from `/proc/PID/stat` (field 22, ticks after boot) and `btime`.
fn started_at(pid: i32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks: u64 = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|&hz| hz > 0)?;
    Some(UNIX_EPOCH + Duration::from_secs(boot) + Duration::from_millis(ticks * 1000 / hz))
}

/// Whether the pidfile's pid is a running process that may have written it.
fn names_running_instance(pid: i32, written: Option<SystemTime>) -> bool {
    if pid == std::process::id() as i32 || !alive(pid) {
        return false;
    }
    match (started_at(pid), written) {
        (Some(started), Some(written)) => started <= written + CLOCK_SLACK,
        // Cannot tell: assume it is the instance that wrote the file.
        _ => true,
    }
}

impl Pidfile {
    pub fn claim(path: &Path) -> Result<Pidfile, String> {
        Pidfile::claim_after(path, None)
    }

    /// Claims a pidfile that may name `predecessor`, the running instance this process has
    /// taken over from (a binary upgrade): it is replaced like a stale one.
    pub fn claim_after(path: &Path, predecessor: Option<i32>) -> Result<Pidfile, String> {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                let pid: i32 = text.trim().parse().ok().filter(|&pid| pid > 0).ok_or_else(|| {
                    format!("cannot write pidfile {shown}: it holds {:?}, not a pid", text.trim())
                })?;
                let written = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if Some(pid) != predecessor && names_running_instance(pid, written) {
                    return Err(format!(
                        "cannot write pidfile {shown}: process with pid {pid} is still running"
                    ));
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read pidfile {shown}: {e}")),
        }
        // 0644 less the umask: writable by betwixt's user alone even under a umask of 0 (some
        // service managers' default), where 0666 would leave it writable by anyone.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)
            .and_then(|mut file| writeln!(file, "{}", std::process::id()))
            .map_err(|e| format!("cannot write pidfile {shown}: {e}"))?;
        Ok(Pidfile { path: path.to_path_buf() })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let ours =
            std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_and_dead_pids_are_not_running_instances() {
        let now = Some(SystemTime::now());
        assert!(!names_running_instance(std::process::id() as i32, now));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id() as i32;
        child.wait().unwrap();
        assert!(!names_running_instance(dead, now));
    }

    #[test]
    fn a_process_started_after_the_file_was_written_did_not_write_it() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(names_running_instance(pid, Some(SystemTime::now())));
        assert!(!names_running_instance(pid, Some(SystemTime::now() - Duration::from_secs(3600))));
        let _ = child.kill();
        let _ = child.wait();
    }
}
