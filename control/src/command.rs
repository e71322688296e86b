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
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
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
}
