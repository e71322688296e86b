//! `exec`: runs `exec_command HOST PORT` and reads what it prints. Trimmed output equal to
//! `exec_expected_positive_output` passes, equal to `exec_expected_negative_output` fails, and
//! anything else (or a non-zero exit) fails with a warning, since it means the script is broken
//! rather than the backend down.
//!
//! The command runs in its own process group (`crate::command`); if the check is cancelled (the
//! timeout fires, the server is removed) the whole group is killed.

use crate::command;

/// Output beyond this is not read; expected outputs are short words.
const MAX_OUTPUT: u64 = 64 * 1024;

pub struct Exec<'a> {
    pub command: &'a str,
    pub positive: &'a str,
    pub negative: Option<&'a str>,
}

impl Exec<'_> {
    pub async fn check(&self, host: &str, port: u16) -> bool {
        let finished = match command::run(self.command, [host, &port.to_string()], MAX_OUTPUT).await {
            Ok(finished) => finished,
            Err(e) => {
                log::warn!("healthcheck exec: {e}");
                return false;
            }
        };
        let (status, output) = (finished.status, String::from_utf8_lossy(&finished.stdout));
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
