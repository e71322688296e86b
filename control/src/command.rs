//! Outside commands (exec healthchecks, exec discovery): each runs in a process group of its own
//! with its standard output read up to a bound. When the run is cancelled (a timeout fires, the
//! server is removed) or prints more than the bound, the whole group is killed, so a hanging or
//! runaway script cannot leave children behind or fill the control thread's memory.

use std::ffi::OsStr;
use std::io;
use std::process::{ExitStatus, Stdio};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
}

/// Runs `program args...` with no input and standard error discarded, and reads its standard
/// output to the end. More than `limit` bytes of output is an error (the group is killed).
pub async fn run<I, S>(program: &str, args: I, limit: u64) -> io::Result<Finished>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = spawn(&mut command)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program:?}: {e}")))?;
    let mut group = GroupKiller(child.id());
    let mut stdout = Vec::new();
    if let Some(out) = child.stdout.take() {
        out.take(limit + 1)
            .read_to_end(&mut stdout)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("reading the output of {program:?}: {e}")))?;
    }
    if stdout.len() as u64 > limit {
        // `group` kills it on return: it may never stop writing.
        return Err(io::Error::other(format!("{program:?} printed more than {limit} bytes")));
    }
    let status =
        child.wait().await.map_err(|e| io::Error::new(e.kind(), format!("waiting for {program:?}: {e}")))?;
    // Reaped: its id may be reused from now on, so it must not be signalled.
    group.0 = None;
    Ok(Finished { status, stdout })
}

/// How often a start refused with "text file busy" is tried again, and the pause between.
const BUSY_TRIES: u32 = 5;
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Starts `command`. A script that is being written while it starts (a deployment replacing
/// it, or any process forked at that moment holding it open for writing until its own exec)
/// makes exec fail with ETXTBSY for a moment: that is tried again a few times, without
/// blocking the control thread, before it counts as a failure.
async fn spawn(command: &mut Command) -> io::Result<tokio::process::Child> {
    let mut tries = 1;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < BUSY_TRIES => {
                tries += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            result => return result,
        }
    }
}

/// Kills the command's process group when dropped before the command was reaped. Until it is
/// reaped the leader's id, which names the group, cannot be reused by another process.
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_read_and_bounded() {
        let done = run("/bin/sh", ["-c", "echo hi; exit 3"], 100).await.unwrap();
        assert_eq!((done.stdout.as_slice(), done.status.code()), (&b"hi\n"[..], Some(3)));
        // Endless output: an error at the bound, not a hang or a heap filled.
        let e = run("/bin/sh", ["-c", "while :; do echo 0123456789; done"], 10_000).await.unwrap_err();
        assert!(e.to_string().contains("more than 10000 bytes"), "{e}");
        assert!(run("/nonexistent/program", [""; 0], 100).await.is_err());
    }

    /// A script still open for writing cannot be executed (ETXTBSY); one that is closed a
    /// moment later runs. Without the retry this start failed, as exec checks did in a test
    /// run while another thread had just forked with the script's write descriptor.
    #[tokio::test]
    async fn a_script_busy_being_written_runs_once_it_is_closed() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir().join(format!("betwixt-busy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("check.sh");
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&path)
            .unwrap();
        writer.write_all(b"#!/bin/sh\necho up\n").unwrap();
        let program = path.display().to_string();
        let closer = tokio::spawn(async move {
            tokio::time::sleep(BUSY_PAUSE).await;
            drop(writer);
        });
        let done = run(&program, [""; 0], 100).await.unwrap();
        assert_eq!(done.stdout, b"up\n");
        closer.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
