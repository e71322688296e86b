//! `exec`: runs `exec_command HOST PORT` and reads what it prints. Trimmed output equal to
//! `exec_expected_positive_output` passes, equal to `exec_expected_negative_output` fails, and
//! anything else (or a non-zero exit) fails with a warning, since it means the script is broken
//! rather than the backend down.
//!
//! The command runs in its own process group; if the check is cancelled (the timeout fires, the
//! server is removed) the whole group is killed, so a hanging script cannot leave children behind.

use std::process::Stdio;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Output beyond this is not read; expected outputs are short words.
const MAX_OUTPUT: u64 = 64 * 1024;

pub struct Exec<'a> {
    pub command: &'a str,
    pub positive: &'a str,
    pub negative: Option<&'a str>,
}

impl Exec<'_> {
    pub async fn check(&self, host: &str, port: u16) -> bool {
        let mut child = match Command::new(self.command)
            .arg(host)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                log::warn!("healthcheck exec: cannot run {:?}: {e}", self.command);
                return false;
            }
        };
        let mut group = GroupKiller(child.id());
        let mut output = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            if let Err(e) = stdout.take(MAX_OUTPUT).read_to_end(&mut output).await {
                log::warn!("healthcheck exec: reading output of {:?}: {e}", self.command);
                return false;
            }
        }
        let status = match child.wait().await {
            Ok(status) => {
                // Reaped: its id may be reused from now on, so it must not be signalled.
                group.0 = None;
                status
            }
            Err(e) => {
                log::warn!("healthcheck exec: waiting for {:?}: {e}", self.command);
                return false;
            }
        };
        let output = String::from_utf8_lossy(&output);
        let output = output.trim();
        if !status.success() {
            log::warn!("healthcheck exec: {:?} {host} {port} exited with {status}", self.command);
            return false;
        }
        if output == self.positive {
            true
        } else if Some(output) == self.negative {
            false
        } else {
            log::warn!(
                "healthcheck exec: {:?} {host} {port} printed {output:?}, expected {:?} or {:?}",
                self.command,
                self.positive,
                self.negative.unwrap_or_default()
            );
            false
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
