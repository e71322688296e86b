//! The one discovery loop, gobetween's `Discovery.Start`: fetch; on success install the list
//! and, with an `interval`, fetch again after it (without one, stop: `"0"` is "once"); on
//! failure apply the failpolicy (`keeplast` keeps the installed list, `setempty` installs an
//! empty one) and try again after the kind's retry wait — also when `interval` is `"0"`.
//!
//! Each fetch is bounded by `timeout` (the kind's default when unset or `"0"`), and each server
//! has its own task, so a source that hangs delays nothing but its own next round.
//!
//! A watching source (`Source::WATCHES`) is not slept for: after a successful fetch the runner
//! asks it at once for the list after the next change (`fetch_changed`, which may wait up to
//! `interval` for one, bounded by `interval` plus twice `timeout`), and installs each answer
//! as it comes; rounds still start at least `MIN_INTERVAL` apart. Failures are handled as for
//! any source, and the round after one is a plain `fetch`.

use super::{kind_name, Found, SectionError, Source};
use crate::backend::BackendSpec;
use crate::config::{Discovery, GoDuration};
use crate::server::ServerHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Rounds closer together than this would only load the control thread and the source.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// When to fetch and what to do on failure, from the section's common keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// `None`: fetch until one fetch succeeds, then stop.
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub retry: Duration,
    /// `failpolicy = "setempty"`.
    pub set_empty: bool,
}

impl Plan {
    pub fn of<S: Source>(discovery: &Discovery) -> Plan {
        Plan {
            interval: discovery.interval.as_ref().and_then(|d| d.as_limit()).map(|i| i.max(MIN_INTERVAL)),
            timeout: discovery.timeout.as_ref().and_then(|d| d.as_limit()).unwrap_or(S::DEFAULT_TIMEOUT),
            retry: S::RETRY_WAIT,
            set_empty: discovery.failpolicy.as_deref() == Some("setempty"),
        }
    }
}

/// Where the loop's outcomes go: the server's backend list.
pub trait Report: Send + Sync + 'static {
    fn discovered(&self, backends: Vec<BackendSpec>);
    fn failed(&self, error: String, set_empty: bool);
}

impl Report for Arc<ServerHandle> {
    fn discovered(&self, backends: Vec<BackendSpec>) {
        ServerHandle::discovered(self, backends);
    }

    fn failed(&self, error: String, set_empty: bool) {
        self.discovery_failed(error, set_empty);
    }
}

/// Spawns the loop for `source`; a source whose settings did not read (which validation
/// refuses before a server starts) leaves the server without backends and says why.
pub fn spawn<S: Source>(server: Arc<ServerHandle>, source: Result<S, SectionError>) -> AbortHandle {
    let plan = Plan::of::<S>(&server.config().discovery);
    let task = tokio::spawn(async move {
        match source {
            Ok(source) => {
                let about = format!(
                    "server {}: {} discovery",
                    server.name,
                    kind_name(server.config().discovery.kind)
                );
                run(&about, &server, &source, &plan).await
            }
            Err(e) => server.discovery_failed(format!("discovery.{}: {}", e.field, e.message), true),
        }
    });
    task.abort_handle()
}

/// The loop; `about` starts its log lines.
async fn run<S: Source>(about: &str, report: &impl Report, source: &S, plan: &Plan) {
    let mut failing = false;
    // Set after a successful round of a watching source: the next one waits for a change.
    let mut watching = false;
    loop {
        let started = Instant::now();
        let outcome = match (watching, plan.interval) {
            (true, Some(wait)) => {
                let bound = wait + plan.timeout * 2;
                bounded(bound, source.fetch_changed(wait, plan.timeout)).await
            }
            _ => bounded(plan.timeout, source.fetch()).await,
        };
        match outcome {
            Ok(Found { backends, notes }) => {
                for note in notes {
                    // A source can send a million bad lines every round.
                    crate::log_limited!(log::Level::Warn, "{about}: {note}");
                }
                if std::mem::take(&mut failing) {
                    log::info!("{about} works again: {} backends", backends.len());
                } else {
                    log::debug!("{about} found {} backends", backends.len());
                }
                report.discovered(backends);
                match plan.interval {
                    Some(_) if S::WATCHES => {
                        watching = true;
                        // A source that answers "changed" at once, every time, must not spin.
                        tokio::time::sleep_until(started + MIN_INTERVAL).await;
                    }
                    Some(interval) => tokio::time::sleep(interval).await,
                    None => return,
                }
            }
            Err(error) => {
                watching = false;
                if !std::mem::replace(&mut failing, true) {
                    log::warn!(
                        "{about} failed: {error}; {}, trying again every {} until it works",
                        if plan.set_empty {
                            "no backends meanwhile (setempty)"
                        } else {
                            "keeping the last backends (keeplast)"
                        },
                        GoDuration(plan.retry)
                    );
                }
                report.failed(error, plan.set_empty);
                tokio::time::sleep(plan.retry).await;
            }
        }
    }
}

/// `fetch` bounded by `limit`.
async fn bounded(
    limit: Duration,
    fetch: impl std::future::Future<Output = Result<Found, String>>,
) -> Result<Found, String> {
    match tokio::time::timeout(limit, fetch).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {}", GoDuration(limit))),
    }
}

#[cfg(test)]
mod tests;
