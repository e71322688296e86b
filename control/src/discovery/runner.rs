//! The one discovery loop, gobetween's `Discovery.Start`: fetch; on success install the list
//! and, with an `interval`, fetch again after it (without one, stop: `"0"` is "once"); on
//! failure apply the failpolicy (`keeplast` keeps the installed list, `setempty` installs an
//! empty one) and try again after the kind's retry wait — also when `interval` is `"0"`.
//!
//! Each fetch is bounded by `timeout` (the kind's default when unset or `"0"`), and each server
//! has its own task, so a source that hangs delays nothing but its own next round.

use super::{kind_name, Found, SectionError, Source};
use crate::config::{Discovery, GoDuration};
use crate::server::ServerHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::AbortHandle;

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

/// Spawns the loop for `source`; a source whose settings did not read (which validation
/// refuses before a server starts) leaves the server without backends and says why.
pub fn spawn<S: Source>(server: Arc<ServerHandle>, source: Result<S, SectionError>) -> AbortHandle {
    let plan = Plan::of::<S>(&server.config.discovery);
    let task = tokio::spawn(async move {
        match source {
            Ok(source) => run(&server, &source, &plan).await,
            Err(e) => server.discovery_failed(format!("discovery.{}: {}", e.field, e.message), true),
        }
    });
    task.abort_handle()
}

async fn run<S: Source>(server: &Arc<ServerHandle>, source: &S, plan: &Plan) {
    let kind = kind_name(server.config.discovery.kind);
    let mut failing = false;
    loop {
        let outcome = match tokio::time::timeout(plan.timeout, source.fetch()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {}", GoDuration(plan.timeout))),
        };
        match outcome {
            Ok(Found { backends, notes }) => {
                for note in notes {
                    // A source can send a million bad lines every round.
                    crate::log_limited!(log::Level::Warn, "server {}: {kind} discovery: {note}", server.name);
                }
                if std::mem::take(&mut failing) {
                    log::info!(
                        "server {}: {kind} discovery works again: {} backends",
                        server.name,
                        backends.len()
                    );
                } else {
                    log::debug!("server {}: {kind} discovery found {} backends", server.name, backends.len());
                }
                server.discovered(backends);
                match plan.interval {
                    Some(interval) => tokio::time::sleep(interval).await,
                    None => return,
                }
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    log::warn!(
                        "server {}: {kind} discovery failed: {error}; {}, trying again every {} until it works",
                        server.name,
                        if plan.set_empty { "no backends meanwhile (setempty)" } else { "keeping the last backends (keeplast)" },
                        GoDuration(plan.retry)
                    );
                }
                server.discovery_failed(error, plan.set_empty);
                tokio::time::sleep(plan.retry).await;
            }
        }
    }
}
