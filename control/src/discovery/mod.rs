//! Discovery: turning a server's `[discovery]` section into backend specs, and resolving the
//! specs' host names to addresses.
//!
//! Each kind is a [`Source`] in a file of its own, with typed settings read from the section;
//! `runner` is the one loop around them all (interval, timeout, failpolicy, retry), as
//! gobetween's `discovery.go` is around its fetch functions.

pub mod consul;
pub mod docker;
pub mod exec;
pub mod http;
pub mod json;
pub mod kubernetes;
pub mod lines;
pub mod lxd;
pub mod own_tls;
pub mod plaintext;
pub mod runner;
pub mod srv;
pub mod static_list;

use crate::backend::BackendSpec;
use crate::config::{Discovery, DiscoveryKind};
use crate::server::ServerHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::AbortHandle;

/// What one fetch found: the backends, and what was odd about the source's answer (lines
/// skipped, values read loosely), to be logged.
#[derive(Debug, Default, PartialEq)]
pub struct Found {
    pub backends: Vec<BackendSpec>,
    pub notes: Vec<String>,
}

/// One discovery kind: fetches the whole backend list once. The runner bounds each fetch in
/// time (dropping the future cancels it, so a fetch must hold nothing that outlives a drop).
///
/// A source that can wait for its list to change (a Consul blocking query, Docker's event
/// stream, a Kubernetes watch) sets `WATCHES` and implements `fetch_changed`; it keeps what it
/// needs between fetches (the last index, an open stream) behind interior mutability, since
/// the runner holds it as `&self` and calls it from one task, one call at a time.
pub trait Source: Send + Sync + 'static {
    /// gobetween's bound on one fetch of this kind, used when `timeout` is unset or `"0"`.
    const DEFAULT_TIMEOUT: Duration;
    /// gobetween's wait before trying again after a failed fetch.
    const RETRY_WAIT: Duration;
    /// `false`: the runner sleeps `interval` between fetches. `true`: after a successful fetch
    /// the runner calls `fetch_changed` at once, and again as soon as that returns.
    const WATCHES: bool = false;

    /// The whole list, answered promptly: the first fetch, and each one after a failure (a
    /// watching source starts afresh here: no index, a new stream).
    fn fetch(&self) -> impl Future<Output = Result<Found, String>> + Send;

    /// For a source that `WATCHES`, the fetch after a successful one: returns the list once it
    /// may have changed, or after `wait` (the `interval`) at the latest. `timeout` is for the
    /// steps that must answer promptly (connecting, an answer's head), which the source bounds
    /// itself; the runner bounds the whole call by `wait` plus twice `timeout`.
    fn fetch_changed(
        &self,
        wait: Duration,
        timeout: Duration,
    ) -> impl Future<Output = Result<Found, String>> + Send {
        let _ = (wait, timeout);
        self.fetch()
    }
}

/// A key of the discovery section that cannot work, and why.
#[derive(Debug, PartialEq)]
pub struct SectionError {
    pub field: &'static str,
    pub message: String,
}

impl SectionError {
    pub fn new(field: &'static str, message: impl Into<String>) -> SectionError {
        SectionError { field, message: message.into() }
    }
}

/// Checks the kind-specific keys of a section (required keys, endpoints, patterns), as the
/// kind's source will read them. Kinds not built yet are refused elsewhere (`config::support`).
pub fn check_section(discovery: &Discovery) -> Result<(), SectionError> {
    match discovery.kind {
        DiscoveryKind::Exec => exec::Exec::from_section(discovery).map(drop),
        DiscoveryKind::Plaintext => plaintext::Plaintext::from_section(discovery).map(drop),
        DiscoveryKind::Json => json::Json::from_section(discovery).map(drop),
        DiscoveryKind::Srv => srv::Srv::from_section(discovery).map(drop),
        DiscoveryKind::Docker => docker::Docker::from_section(discovery).map(drop),
        DiscoveryKind::Lxd => lxd::Lxd::from_section(discovery).map(drop),
        DiscoveryKind::Consul => consul::Consul::from_section(discovery).map(drop),
        DiscoveryKind::Kubernetes => kubernetes::Kubernetes::from_section(discovery).map(drop),
        _ => Ok(()),
    }
}

/// Starts the discovery loop of `server` on the control runtime.
pub fn start(server: Arc<ServerHandle>) -> AbortHandle {
    let discovery = server.config.discovery.clone();
    match discovery.kind {
        DiscoveryKind::Exec => runner::spawn(server, exec::Exec::from_section(&discovery)),
        DiscoveryKind::Plaintext => runner::spawn(server, plaintext::Plaintext::from_section(&discovery)),
        DiscoveryKind::Json => runner::spawn(server, json::Json::from_section(&discovery)),
        DiscoveryKind::Srv => runner::spawn(server, srv::Srv::from_section(&discovery)),
        DiscoveryKind::Docker => runner::spawn(server, docker::Docker::from_section(&discovery)),
        DiscoveryKind::Lxd => runner::spawn(server, lxd::Lxd::from_section(&discovery)),
        DiscoveryKind::Consul => runner::spawn(server, consul::Consul::from_section(&discovery)),
        DiscoveryKind::Kubernetes => runner::spawn(server, kubernetes::Kubernetes::from_section(&discovery)),
        // Every other kind is refused before a server starts; static is the fallback.
        _ => runner::spawn(server, Ok(static_list::StaticList::from_section(&discovery))),
    }
}

/// The kind's name as configured.
pub fn kind_name(kind: DiscoveryKind) -> &'static str {
    match kind {
        DiscoveryKind::Static => "static",
        DiscoveryKind::Srv => "srv",
        DiscoveryKind::Docker => "docker",
        DiscoveryKind::Json => "json",
        DiscoveryKind::Exec => "exec",
        DiscoveryKind::Plaintext => "plaintext",
        DiscoveryKind::Consul => "consul",
        DiscoveryKind::Lxd => "lxd",
        DiscoveryKind::Kubernetes => "kubernetes",
    }
}

/// Resolves a backend host; IPv4 addresses first, as gobetween's dialer prefers them.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.dedup();
    Ok(addrs)
}
