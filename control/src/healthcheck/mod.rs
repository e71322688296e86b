//! Healthchecks: one task per backend on the control thread's runtime, so hundreds of checks
//! run concurrently and none can hold up another. A `Tracker` turns single results into the
//! live/dead state with gobetween's `fails` / `passes` thresholds.

pub mod escapes;
mod exec;
mod ping;
mod probe;

pub use probe::{Probe, ProbeError};

use crate::config::{CheckSettings, HealthcheckKind};
use std::net::SocketAddr;

/// The backend a check looks at: its name as discovered (what `exec` is given and what TLS
/// probes send as SNI) and its resolved addresses (what the network checks connect to).
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
}

/// Why a check failed, in words for the log: `connect to 127.0.0.1:1: Connection refused ...`.
pub type Failure = String;

/// A check's outcome: passed, or failed and why.
pub type CheckResult = Result<(), Failure>;

/// Runs one check against a backend: `Ok` when it passed, else why not; `None` when it gave no
/// verdict (an `exec` command that printed neither expected output), which leaves the backend
/// as it is. Never takes longer than the timeout; a check still running then fails (and an
/// exec command is killed).
pub async fn check(settings: &CheckSettings, target: &Target) -> Option<CheckResult> {
    let attempt = async {
        match settings.kind {
            HealthcheckKind::None => Some(Ok(())),
            HealthcheckKind::Ping => Some(ping::check(&target.addrs).await),
            HealthcheckKind::Probe => Some(match &settings.probe {
                Some(probe) => probe.check(&target.host, &target.addrs).await,
                // The section was invalid; validation reports it.
                None => Err("invalid probe settings".to_string()),
            }),
            HealthcheckKind::Exec => {
                let raw = &settings.raw;
                // Both unset run as gobetween runs them: no command fails to start, and no
                // positive output is the empty one.
                let exec = exec::Exec {
                    command: raw.exec_command.as_deref().unwrap_or_default(),
                    positive: raw.exec_expected_positive_output.as_deref().unwrap_or_default(),
                    negative: raw.exec_expected_negative_output.as_deref().unwrap_or_default(),
                };
                exec.check(&target.host, target.port).await
            }
        }
    };
    match tokio::time::timeout(settings.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Some(Err(format!("no result within the timeout ({:?})", settings.timeout))),
    }
}

/// Bytes a backend or a command sent, for the log: quoted, non-printable bytes escaped (so a
/// peer cannot forge log lines) and at most `SHOWN` of them.
pub(crate) fn shown(bytes: &[u8]) -> String {
    const SHOWN: usize = 64;
    let escaped = bytes[..bytes.len().min(SHOWN)].escape_ascii();
    match bytes.len() > SHOWN {
        true => format!("\"{escaped}\"... ({} bytes)", bytes.len()),
        false => format!("\"{escaped}\""),
    }
}

/// Consecutive-result state machine for one backend.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub live: bool,
    fails: u32,
    passes: u32,
    streak: u32,
}

impl Tracker {
    pub fn new(settings: &CheckSettings) -> Tracker {
        Tracker {
            live: settings.initially_healthy,
            fails: settings.fails,
            passes: settings.passes,
            streak: 0,
        }
    }

    /// Records a result; returns the new state when it changed.
    pub fn observe(&mut self, passed: bool) -> Option<bool> {
        if passed == self.live {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.live { self.fails } else { self.passes };
        if self.streak >= needed {
            self.live = passed;
            self.streak = 0;
            Some(passed)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Healthcheck;

    mod exec_scripts;
    mod probes;

    fn settings(fails: u32, passes: u32, healthy: bool) -> CheckSettings {
        let raw = Healthcheck {
            kind: HealthcheckKind::Ping,
            fails: Some(fails.into()),
            passes: Some(passes.into()),
            ..Default::default()
        };
        let mut s = CheckSettings::from_section(&raw).unwrap();
        s.initially_healthy = healthy;
        s
    }

    #[test]
    fn thresholds() {
        let mut t = Tracker::new(&settings(2, 3, true));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
    }

    #[test]
    fn shown_escapes_and_bounds_what_a_peer_sent() {
        assert_eq!(shown(b"-ERR\r\n"), r#""-ERR\r\n""#);
        assert_eq!(shown(b"\x1b[2J\0\"\xff"), r#""\x1b[2J\x00\"\xff""#);
        let long = shown(&[b'a'; 1000]);
        assert_eq!(long, format!("\"{}\"... (1000 bytes)", "a".repeat(64)));
    }

    #[test]
    fn initially_unhealthy() {
        let mut t = Tracker::new(&settings(1, 1, false));
        assert!(!t.live);
        assert_eq!(t.observe(true), Some(true));
    }
}
