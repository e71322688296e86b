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

/// Runs one check against a backend; true when it passed. Never takes longer than the timeout;
/// a check still running then counts as failed (and an exec command is killed).
pub async fn check(settings: &CheckSettings, target: &Target) -> bool {
    let attempt = async {
        match settings.kind {
            HealthcheckKind::None => true,
            HealthcheckKind::Ping => ping::check(&target.addrs).await,
            HealthcheckKind::Probe => match &settings.probe {
                Some(probe) => probe.check(&target.host, &target.addrs).await,
                None => false, // the section was invalid; validation reports it
            },
            HealthcheckKind::Exec => {
                let raw = &settings.raw;
                let (Some(command), Some(positive)) = (&raw.exec_command, &raw.exec_expected_positive_output)
                else {
                    return false;
                };
                let exec =
                    exec::Exec { command, positive, negative: raw.exec_expected_negative_output.as_deref() };
                exec.check(&target.host, target.port).await
            }
        }
    };
    tokio::time::timeout(settings.timeout, attempt).await.unwrap_or(false)
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
    fn initially_unhealthy() {
        let mut t = Tracker::new(&settings(1, 1, false));
        assert!(!t.live);
        assert_eq!(t.observe(true), Some(true));
    }
}
