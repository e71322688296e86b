//! One running server on the control side: its configuration, its backends' discovery and
//! health state, its shard slots, and the snapshot rebuild that ties them together.

use crate::backend::BackendSpec;
use crate::config::{Server, ServerSettings};
use crate::discovery;
use crate::healthcheck::{self, Tracker};
use crate::plane::ServerSlot;
use crate::snapshot::{Backend, ServerSnapshot};
use crate::stats::Counters;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How often a backend whose host name did not resolve is tried again.
const RESOLVE_RETRY: Duration = Duration::from_secs(5);

/// How often the host names of resolved backends are resolved again, so that new connections
/// and checks follow a name whose addresses change (gobetween resolves at every connection).
const RESOLVE_AGAIN: Duration = Duration::from_secs(5);

/// While a list of names resolves, what resolved so far is installed at least this often.
const INSTALL_EVERY: Duration = Duration::from_secs(1);

/// How long health changes gather before the snapshot is rebuilt for all of them.
const PUBLISH_PAUSE: Duration = Duration::from_millis(10);

/// How discovery is going, for the API.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryStatus {
    /// A round has ended (found backends or failed).
    pub ran: bool,
    /// The last round failed (and rounds are being retried).
    pub failing: bool,
    /// Why the last failed round failed, kept after discovery works again.
    pub last_error: Option<String>,
}

/// A backend and what the control thread knows about it: one discovery reports, or one that
/// left discovery while connections to it were open (kept, as gobetween keeps it, until they end).
#[derive(Debug)]
pub struct BackendState {
    pub spec: BackendSpec,
    pub addrs: Vec<SocketAddr>,
    pub counters: Arc<Counters>,
    pub live: bool,
    /// How many times a healthcheck flipped `live`.
    pub live_changes: u64,
    /// Set through the API: gets no new connection; the open ones go on.
    pub draining: bool,
    /// Discovery reports it; false once it left the list with connections still open.
    pub discovered: bool,
    check: Option<AbortHandle>,
}

impl BackendState {
    /// Takes part in balancing: discovered, healthy, reachable by address and not draining.
    pub fn takes_part(&self) -> bool {
        self.discovered && self.live && !self.addrs.is_empty() && !self.draining
    }

    /// Left discovery and its last connection ended: nothing to show or keep any more.
    fn gone(&self) -> bool {
        !self.discovered && self.counters.totals().active == 0
    }
}

#[derive(Debug)]
pub struct ServerHandle {
    pub name: String,
    /// The server section as given (without `[defaults]` folded in), for `/dump`. A reload
    /// swaps it together with `settings` (see `update`).
    config: ArcSwap<Server>,
    settings: ArcSwap<ServerSettings>,
    pub counters: Arc<Counters>,
    pub slots: Vec<Arc<ServerSlot>>,
    /// Discovery rounds or backend name lookups that failed.
    pub discovery_failures: AtomicU64,
    discovery: Mutex<DiscoveryStatus>,
    /// Wakes the name resolver: backends with names were installed.
    names_to_resolve: Notify,
    backends: Mutex<Vec<BackendState>>,
    tasks: Mutex<Tasks>,
    generation: AtomicU64,
    /// A rebuild is scheduled (`publish_soon`).
    publish_pending: AtomicBool,
}

impl ServerHandle {
    pub fn new(
        name: &str,
        config: Server,
        settings: ServerSettings,
        counters: Arc<Counters>,
        slots: Vec<Arc<ServerSlot>>,
    ) -> Arc<ServerHandle> {
        Arc::new(ServerHandle {
            name: name.to_string(),
            config: ArcSwap::from_pointee(config),
            settings: ArcSwap::from_pointee(settings),
            counters,
            slots,
            discovery_failures: AtomicU64::new(0),
            discovery: Mutex::new(DiscoveryStatus::default()),
            names_to_resolve: Notify::new(),
            backends: Mutex::new(Vec::new()),
            tasks: Mutex::new(Tasks::default()),
            generation: AtomicU64::new(1),
            publish_pending: AtomicBool::new(false),
        })
    }

    /// An empty snapshot for slots created before discovery has run.
    pub fn empty_snapshot(settings: &Arc<ServerSettings>, counters: &Arc<Counters>) -> Arc<ServerSnapshot> {
        Arc::new(ServerSnapshot::build(0, settings.clone(), counters.clone(), Vec::new(), &[]))
    }

    pub fn backends(&self) -> MutexGuard<'_, Vec<BackendState>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server section as given (without `[defaults]` folded in).
    pub fn config(&self) -> Arc<Server> {
        self.config.load_full()
    }

    /// The effective settings the current snapshot is built from.
    pub fn settings(&self) -> Arc<ServerSettings> {
        self.settings.load_full()
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts discovery (and through it the healthchecks) and the resolution of backend host
    /// names. Must run inside the control runtime.
    pub fn start(self: &Arc<Self>) {
        // Discovery first: its first round (a static list) is then the first task to run.
        self.restart_discovery();
        let handle = self.clone();
        let names = tokio::spawn(async move { handle.resolve_names().await });
        self.tasks().names = Some(names.abort_handle());
        self.restart_certificate_watch();
    }

    fn restart_discovery(self: &Arc<Self>) {
        let discovery = discovery::start(self.clone());
        if let Some(old) = self.tasks().discovery.replace(discovery) {
            old.abort();
        }
    }

    fn restart_certificate_watch(self: &Arc<Self>) {
        let files = self.settings().tls.as_ref().and_then(|tls| tls.cert_files.clone());
        let watch =
            files.map(|files| tokio::spawn(watch_certificates(self.name.clone(), files)).abort_handle());
        if let Some(old) = std::mem::replace(&mut self.tasks().certificates, watch) {
            old.abort();
        }
        let acme = self.settings().tls.as_ref().and_then(|tls| tls.acme.clone());
        let acme = acme.map(|certs| tokio::spawn(certs.run()).abort_handle());
        if let Some(old) = std::mem::replace(&mut self.tasks().acme, acme) {
            old.abort();
        }
    }

    /// Stops discovery and healthchecks; the caller closes the slots.
    pub fn stop(&self) {
        self.tasks().abort_all();
        self.stop_checks();
    }

    fn stop_checks(&self) {
        for backend in self.backends().iter_mut() {
            if let Some(check) = backend.check.take() {
                check.abort();
            }
        }
    }

    /// A reload changed this server's section without changing what its listeners are: the
    /// new settings go to the shards in the next snapshot, so connections open now keep the
    /// snapshot they started with and new ones take the new one. Backends keep their counters,
    /// health and drain; discovery restarts only if its section changed, the healthchecks
    /// only if theirs did (a backend keeps its health until a new check decides otherwise), the
    /// certificate watch only if `[tls]` did. Must run inside the control runtime.
    pub fn update(self: &Arc<Self>, config: Server, settings: ServerSettings) {
        let (old_config, old_settings) = (self.config(), self.settings());
        self.config.store(Arc::new(config));
        self.settings.store(Arc::new(settings));
        let (config, settings) = (self.config(), self.settings());
        if old_settings.healthcheck != settings.healthcheck {
            self.stop_checks();
            if settings.healthcheck.is_none() {
                // Nothing checks them any more: every backend is live, as at a start without checks.
                self.backends().iter_mut().for_each(|b| b.live = true);
            }
        }
        if old_config.discovery != config.discovery {
            self.restart_discovery();
        }
        if old_config.tls != config.tls {
            self.restart_certificate_watch();
        }
        self.start_missing_checks();
        self.publish();
    }

    /// What discovery reports, for the API.
    pub fn discovery_status(&self) -> DiscoveryStatus {
        self.discovery.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A discovery round found `specs`: installs them.
    pub fn discovered(self: &Arc<Self>, specs: Vec<BackendSpec>) {
        {
            let mut status = self.discovery.lock().unwrap_or_else(|e| e.into_inner());
            (status.ran, status.failing) = (true, false);
        }
        self.replace_backends(specs);
    }

    /// A discovery round failed: counts it, and with `set_empty` installs no backends.
    pub fn discovery_failed(self: &Arc<Self>, error: String, set_empty: bool) {
        self.discovery_failures.fetch_add(1, Ordering::Relaxed);
        {
            let mut status = self.discovery.lock().unwrap_or_else(|e| e.into_inner());
            (status.ran, status.failing) = (true, true);
            status.last_error = Some(error);
        }
        if set_empty {
            self.replace_backends(Vec::new());
        } else if !self.slots.iter().all(|slot| slot.is_ready()) {
            // The first round failed and keeps nothing: the shards may accept now, to tell
            // clients there is no backend rather than keep them queued.
            self.publish();
        }
    }

    /// Resolves the host names of installed backends until every one has addresses, and every
    /// `RESOLVE_AGAIN` the names of those that have them; between rounds it waits for the next
    /// installation. Results are installed in batches: every installation rebuilds the
    /// snapshot, O(backends), so one per name would be quadratic for a long list. A name that
    /// fails to resolve again keeps the addresses it had.
    async fn resolve_names(self: Arc<Self>) {
        let mut again = tokio::time::Instant::now() + RESOLVE_AGAIN;
        loop {
            let due = tokio::time::Instant::now() >= again;
            if due {
                again = tokio::time::Instant::now() + RESOLVE_AGAIN;
            }
            let names: Vec<(BackendSpec, Vec<SocketAddr>)> = self
                .backends()
                .iter()
                .filter(|b| {
                    b.discovered && (b.addrs.is_empty() || (due && b.spec.host.parse::<IpAddr>().is_err()))
                })
                .map(|b| (b.spec.clone(), b.addrs.clone()))
                .collect();
            if names.is_empty() {
                // A permit stored by an installation made meanwhile is taken at once.
                let _ = tokio::time::timeout_at(again, self.names_to_resolve.notified()).await;
                continue;
            }
            let mut resolved = Vec::new();
            let mut installed = Instant::now();
            for (spec, had) in names {
                let failed = match discovery::resolve(&spec.host, spec.port).await {
                    Ok(addrs) if addrs.is_empty() => Some("resolves to no address".to_string()),
                    Err(e) => Some(format!("cannot be resolved: {e}")),
                    Ok(addrs) if same_addresses(&addrs, &had) => None,
                    Ok(addrs) => {
                        if !had.is_empty() {
                            crate::log_limited!(
                                log::Level::Info,
                                "server {}: backend {} now resolves to {addrs:?}",
                                self.name,
                                spec.address()
                            );
                        }
                        resolved.push((spec.clone(), addrs));
                        None
                    }
                };
                if let Some(failed) = failed {
                    // A name that resolved before keeps the addresses it had.
                    let kept = if had.is_empty() { "" } else { "; its addresses stay" };
                    self.discovery_failures.fetch_add(1, Ordering::Relaxed);
                    crate::log_limited!(
                        log::Level::Warn,
                        "server {}: backend {} {failed}{kept}",
                        self.name,
                        spec.address()
                    );
                }
                // A slow name must not hold back the ones resolved before it for long.
                if installed.elapsed() >= INSTALL_EVERY && !resolved.is_empty() {
                    self.set_addresses(std::mem::take(&mut resolved));
                    installed = Instant::now();
                }
            }
            if !resolved.is_empty() {
                self.set_addresses(resolved);
            }
            // Names that failed are tried again after a while, or at the next installation.
            let wait = RESOLVE_RETRY.min(again.saturating_duration_since(tokio::time::Instant::now()));
            let _ = tokio::time::timeout(wait, self.names_to_resolve.notified()).await;
        }
    }

    /// The addresses backend `host:port` resolves to now; `None` once it is gone.
    fn addresses_of(&self, key: (&str, u16)) -> Option<Vec<SocketAddr>> {
        self.backends().iter().find(|b| b.spec.key() == key).map(|b| b.addrs.clone())
    }

    /// Installs a new backend list: kept backends keep their counters and health. A backend
    /// left out drains: the snapshots its open connections hold keep it until they end, and
    /// while any is open it stays listed as not discovered (gobetween's `discovered: false`).
    pub fn replace_backends(self: &Arc<Self>, specs: Vec<BackendSpec>) {
        let names = {
            let mut backends = self.backends();
            let published = self.generation.load(Ordering::Relaxed) > 1;
            if published
                && backends.len() == specs.len()
                && backends.iter().zip(&specs).all(|(b, s)| b.discovered && b.spec == *s)
            {
                // The same list again (every round of a stable source): nothing to rebuild. A
                // backend kept only for its open connections (`discovered` false) is not in the
                // list: finding it again must install it again.
                return;
            }
            let mut old: HashMap<(String, u16), BackendState> = std::mem::take(&mut *backends)
                .into_iter()
                .map(|b| ((b.spec.host.clone(), b.spec.port), b))
                .collect();
            for spec in specs {
                let state = match old.remove(&(spec.host.clone(), spec.port)) {
                    Some(mut kept) => {
                        kept.spec = spec;
                        kept.discovered = true;
                        kept
                    }
                    None => BackendState {
                        live: self.settings().healthcheck.as_ref().is_none_or(|c| c.initially_healthy),
                        addrs: spec
                            .host
                            .parse()
                            .map(|ip| vec![SocketAddr::new(ip, spec.port)])
                            .unwrap_or_default(),
                        spec,
                        counters: Arc::new(Counters::new(self.counters.shard_count())),
                        live_changes: 0,
                        draining: false,
                        discovered: true,
                        check: None,
                    },
                };
                backends.push(state);
            }
            for mut left in old.into_values() {
                if let Some(check) = left.check.take() {
                    check.abort();
                }
                left.discovered = false;
                if !left.gone() {
                    backends.push(left);
                }
            }
            backends.iter().any(|b| b.discovered && b.addrs.is_empty())
        };
        if names {
            self.names_to_resolve.notify_one();
        }
        self.start_missing_checks();
        self.publish();
    }

    fn set_addresses(self: &Arc<Self>, resolved: Vec<(BackendSpec, Vec<SocketAddr>)>) {
        {
            let mut wanted: HashMap<(String, u16), Vec<SocketAddr>> =
                resolved.into_iter().map(|(spec, addrs)| ((spec.host, spec.port), addrs)).collect();
            for b in self.backends().iter_mut() {
                if let Some(addrs) = wanted.remove(&(b.spec.host.clone(), b.spec.port)) {
                    b.addrs = addrs;
                }
            }
        }
        self.start_missing_checks();
        self.publish();
    }

    fn start_missing_checks(self: &Arc<Self>) {
        let Some(settings) = self.settings().healthcheck.clone() else { return };
        for backend in
            self.backends().iter_mut().filter(|b| b.discovered && b.check.is_none() && !b.addrs.is_empty())
        {
            let handle = Arc::downgrade(self);
            let settings = settings.clone();
            let mut target = healthcheck::Target {
                host: backend.spec.host.clone(),
                port: backend.spec.port,
                addrs: backend.addrs.clone(),
            };
            let mut tracker = Tracker::new(&settings);
            let (server, address) = (self.name.clone(), backend.spec.address());
            let task = tokio::spawn(async move {
                let mut ticker = tokio::time::interval(settings.interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    // The addresses the name resolves to now (see `resolve_names`).
                    let Some(addrs) =
                        handle.upgrade().and_then(|h| h.addresses_of((&target.host, target.port)))
                    else {
                        return;
                    };
                    target.addrs = addrs;
                    let Some(result) = healthcheck::check(&settings, &target).await else { continue };
                    if let Err(why) = &result {
                        log::debug!("server {server}: backend {address}: healthcheck failed: {why}");
                    }
                    if tracker.observe(result.is_ok()).is_some() {
                        let Some(handle) = handle.upgrade() else { return };
                        handle.set_live((&target.host, target.port), result);
                    }
                }
            });
            backend.check = Some(task.abort_handle());
        }
    }

    /// `check`: the result of the check that changed the state; a failure's reason goes into
    /// the log line, so that an operator sees why without turning debug logging on.
    fn set_live(self: &Arc<Self>, key: (&str, u16), check: healthcheck::CheckResult) {
        let live = check.is_ok();
        if let Some(b) = self.backends().iter_mut().find(|b| b.spec.key() == key) {
            let why = check.err().map(|why| format!(": {why}")).unwrap_or_default();
            // A flapping backend, or many failing at once, must not flood the log.
            crate::log_limited!(
                log::Level::Info,
                "server {}: backend {} is now {}{why}",
                self.name,
                b.spec.address(),
                if live { "live" } else { "down" }
            );
            b.live = live;
            b.live_changes += 1;
        }
        self.publish_soon();
    }

    /// Drains the backend `host:port` (no new connections; open ones go on), or ends its drain.
    /// False when no such backend is discovered. A backend keeps its drain while discovery
    /// keeps reporting it.
    pub fn set_draining(&self, key: (&str, u16), draining: bool) -> bool {
        let changed = {
            let mut backends = self.backends();
            let Some(b) = backends.iter_mut().find(|b| b.spec.key() == key) else { return false };
            log::info!(
                "server {}: backend {} {}",
                self.name,
                b.spec.address(),
                if draining { "draining: no new connections" } else { "takes new connections again" }
            );
            std::mem::replace(&mut b.draining, draining) != draining
        };
        if changed {
            self.publish();
        }
        true
    }

    /// Publishes after a short pause, once for all the changes made meanwhile: when many
    /// backends change health together, the snapshot (O(backends) to build) is built a few
    /// times rather than once per backend.
    fn publish_soon(self: &Arc<Self>) {
        if self.publish_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let handle = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(PUBLISH_PAUSE).await;
            if let Some(handle) = handle.upgrade() {
                handle.publish_pending.store(false, Ordering::Release);
                handle.publish();
            }
        });
    }

    /// Builds a snapshot of the backends that take part and hands it to every shard.
    pub fn publish(&self) {
        let (backends, down): (Vec<Arc<Backend>>, Vec<BackendSpec>) = {
            let states = self.backends();
            let live = states
                .iter()
                .filter(|b| b.takes_part())
                .map(|b| {
                    Arc::new(Backend {
                        spec: b.spec.clone(),
                        addrs: b.addrs.clone(),
                        counters: b.counters.clone(),
                    })
                })
                .collect();
            let down =
                states.iter().filter(|b| b.discovered && !b.takes_part()).map(|b| b.spec.clone()).collect();
            (live, down)
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot = Arc::new(ServerSnapshot::build(
            generation,
            self.settings(),
            self.counters.clone(),
            backends,
            &down,
        ));
        let ran = self.discovery.lock().unwrap_or_else(|e| e.into_inner()).ran;
        for slot in &self.slots {
            slot.publish(snapshot.clone());
            if ran {
                slot.mark_ready();
            }
        }
    }
}

/// A server's background tasks besides the healthchecks (which each backend holds).
#[derive(Debug, Default)]
struct Tasks {
    discovery: Option<AbortHandle>,
    names: Option<AbortHandle>,
    certificates: Option<AbortHandle>,
    /// Obtaining and renewing the certificates of `acme_hosts`.
    acme: Option<AbortHandle>,
}

impl Tasks {
    fn abort_all(&mut self) {
        let all = [self.discovery.take(), self.names.take(), self.certificates.take(), self.acme.take()];
        for task in all.into_iter().flatten() {
            task.abort();
        }
    }
}

/// Reloads a tls server's certificate when its files change (see `tls::CertFiles`). A pair
/// that does not load is reported once per change of the files and tried again.
async fn watch_certificates(name: String, files: Arc<crate::tls::CertFiles>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(crate::tls::RELOAD_CHECK).await;
        // Small files, read at most every few seconds: blocking here is shorter than a task hop.
        match files.reload_if_changed() {
            Ok(true) => {
                failing = false;
                log::info!("server {name}: certificate reloaded from {files:?}")
            }
            Ok(false) => {}
            Err(e) if !failing => {
                failing = true;
                log::warn!("server {name}: tls.{}: {}; serving the previous certificate", e.field, e.message)
            }
            Err(_) => {}
        }
    }
}

/// Whether two lookups of a name gave the same addresses, in any order (a DNS server may
/// rotate them).
fn same_addresses(a: &[SocketAddr], b: &[SocketAddr]) -> bool {
    let sorted = |list: &[SocketAddr]| {
        let mut list = list.to_vec();
        list.sort();
        list
    };
    a.len() == b.len() && sorted(a) == sorted(b)
}

#[cfg(test)]
mod tests {
    use super::same_addresses;

    #[test]
    fn addresses_are_the_same_in_any_order() {
        let (a, b) = ("127.0.0.1:1".parse().unwrap(), "[::1]:1".parse().unwrap());
        assert!(same_addresses(&[a, b], &[b, a]));
        assert!(!same_addresses(&[a], &[a, b]) && !same_addresses(&[a], &[b]) && !same_addresses(&[], &[a]));
    }
}
