//! `exec`: runs `exec_command HOST PORT` and reads what it prints. As in gobetween, output
//! equal to `exec_expected_positive_output` passes, equal to `exec_expected_negative_output`
//! fails, and a command that cannot run, exits non-zero or is killed at the timeout fails;
//! output that is neither gives no verdict (the backend stays as it is), with a warning, since
//! it means the script is broken rather than the backend down. betwixt also matches when the
//! two differ only in surrounding whitespace, so `echo 1` answers `"1"` as it answers `"1\n"`.
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
    /// Unset is `""`, as in gobetween: a command that prints nothing fails (unless `""` is
    /// the positive output too).
    pub negative: &'a str,
}

impl Exec<'_> {
    /// A broken command (it fails to run, exits non-zero or prints neither output) is also
    /// logged as a warning here: that is the script's fault, not the backend's. The warnings
    /// are rate-limited: a broken script fails for every backend at every interval. `None`: no
    /// verdict.
    pub async fn check(&self, host: &str, port: u16) -> Option<Result<(), Failure>> {
        let broken = |why: String| {
            crate::log_limited!(log::Level::Warn, "healthcheck exec: {why}");
            why
        };
        let finished = match command::run(self.command, [host, &port.to_string()], MAX_OUTPUT).await {
            Ok(finished) => finished,
            Err(e) => return Some(Err(broken(e.to_string()))),
        };
        let status = finished.status;
        if !status.success() {
            return Some(Err(broken(format!("{:?} {host} {port} exited with {status}", self.command))));
        }
        let output = String::from_utf8_lossy(&finished.stdout);
        if matches(&output, self.positive) {
            Some(Ok(()))
        } else if matches(&output, self.negative) {
            Some(Err(format!(
                "{:?} {host} {port} printed the negative output {}",
                self.command,
                shown(output.as_bytes())
            )))
        } else {
            broken(format!(
                "{:?} {host} {port} printed {}, expected {:?} or {:?}; no verdict",
                self.command,
                shown(output.as_bytes()),
                self.positive,
                self.negative
            ));
            None
        }
    }
}

/// gobetween's exact comparison, or the same words with whitespace around them.
fn matches(output: &str, expected: &str) -> bool {
    output == expected || output.trim() == expected.trim()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn outputs_match_exactly_or_but_for_surrounding_whitespace() {
        assert!(matches("1\n", "1\n") && matches("1\n", "1") && matches(" 1 ", "1\n"));
        assert!(matches("", "") && matches("\n", ""));
        assert!(!matches("1\n", "0") && !matches("11", "1") && !matches("1 1", "11"));
    }
}
