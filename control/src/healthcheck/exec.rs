//! `exec`: runs `exec_command HOST PORT` and reads what it prints. Trimmed output equal to
//! `exec_expected_positive_output` passes, equal to `exec_expected_negative_output` fails, and
//! anything else (or a non-zero exit) fails with a warning, since it means the script is broken
//! rather than the backend down.
//!
//! The command runs in its own process group (`crate::command`); if the check is cancelled (the
//! timeout fires, the server is removed) the whole group is killed.

use super::{shown, Failure};
use crate::command;

/// Output beyond this is not read; expected outputs are short words.
const MAX_OUTPUT: u64 = 64 * 1024;

pub struct Exec<'a> {
    pub command: &'a str,
    pub positive: &'a str,
    pub negative: Option<&'a str>,
}

impl Exec<'_> {
    /// A broken command (it fails to run, exits non-zero or prints neither output) is also
    /// logged as a warning here: that is the script's fault, not the backend's.
    pub async fn check(&self, host: &str, port: u16) -> Result<(), Failure> {
        let broken = |why: String| {
            log::warn!("healthcheck exec: {why}");
            Err(why)
        };
        let finished = match command::run(self.command, [host, &port.to_string()], MAX_OUTPUT).await {
            Ok(finished) => finished,
            Err(e) => return broken(e.to_string()),
        };
        let status = finished.status;
        let output = String::from_utf8_lossy(&finished.stdout);
        let output = output.trim();
        if !status.success() {
            return broken(format!("{:?} {host} {port} exited with {status}", self.command));
        }
        if output == self.positive {
            Ok(())
        } else if Some(output) == self.negative {
            Err(format!("{:?} {host} {port} printed the negative output {:?}", self.command, output))
        } else {
            broken(format!(
                "{:?} {host} {port} printed {}, expected {:?} or {:?}",
                self.command,
                shown(output.as_bytes()),
                self.positive,
                self.negative.unwrap_or_default()
            ))
        }
    }
}
