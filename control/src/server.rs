//! One running server on the control side: its configuration, its backends' discovery and
//! health state, its shard slots, and the snapshot rebuild that ties them together.

use crate::backend::BackendSpec;
use crate::config::{Server, ServerSettings};
use crate::discovery;
use crate::healthcheck::{self, Tracker};
use crate::plane::ServerSlot;
use crate::snapshot::{Backend, ServerSnapshot};
use crate::stats::Counters;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

/// How often a backend whose host name did not resolve is tried again.
const RESOLVE_RETRY: Duration = Duration::from_secs(5);

/// While a list of names resolves, what resolved so far is installed at least this often.
const INSTALL_EVERY: Duration = Duration::from_secs(1);

/// How long health changes gather before the snapshot is rebuilt for all of them.
const PUBLISH_PAUSE: Duration = Duration::from_millis(10);

/// A discovered backend and what the control thread knows about it.
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
    check: Option<AbortHandle>,
}

impl BackendState {
    /// Takes part in balancing: healthy, reachable by address and not draining.
    pub fn takes_part(&self) -> bool {
        self.live && !self.addrs.is_empty() && !self.draining
    }
}

#[derive(Debug)]
pub struct ServerHandle {
    pub name: String,
    /// The server section as given (without `[defaults]` folded in), for `/dump`.
    pub config: Server,
    pub settings: Arc<ServerSettings>,
    pub counters: Arc<Counters>,
    pub slots: Vec<Arc<ServerSlot>>,
    /// Discovery rounds or backend name lookups that failed.
    pub discovery_failures: AtomicU64,
    backends: Mutex<Vec<BackendState>>,
    tasks: Mutex<Vec<AbortHandle>>,
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
            config,
            settings: Arc::new(settings),
            counters,
            slots,
            discovery_failures: AtomicU64::new(0),
            backends: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
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

    /// Starts discovery (and through it the healthchecks). Must run inside the control runtime.
    pub fn start(self: &Arc<Self>) {
        let handle = self.clone();
        let task = tokio::spawn(async move { handle.discover().await });
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(task.abort_handle());
        if let Some(files) = self.settings.tls.as_ref().and_then(|tls| tls.cert_files.clone()) {
            tasks.push(tokio::spawn(watch_certificates(self.name.clone(), files)).abort_handle());
        }
    }

    /// Stops discovery and healthchecks; the caller closes the slots.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
        for backend in self.backends().iter_mut() {
            if let Some(check) = backend.check.take() {
                check.abort();
            }
        }
    }

    async fn discover(self: Arc<Self>) {
        let specs = discovery::static_list::backends(&self.config.discovery);
        self.replace_backends(specs);
        // Resolve names until every backend has addresses. Results are installed in batches:
        // every installation rebuilds the snapshot, O(backends), so one per name would be
        // quadratic for a long list of names.
        loop {
            let unresolved: Vec<BackendSpec> =
                self.backends().iter().filter(|b| b.addrs.is_empty()).map(|b| b.spec.clone()).collect();
            if unresolved.is_empty() {
                return;
            }
            let mut resolved = Vec::new();
            let mut installed = Instant::now();
            for spec in unresolved {
                match discovery::resolve(&spec.host, spec.port).await {
                    Ok(addrs) if !addrs.is_empty() => resolved.push((spec, addrs)),
                    Ok(_) => {
                        self.discovery_failures.fetch_add(1, Ordering::Relaxed);
                        log::warn!("server {}: backend {} resolves to no address", self.name, spec.address())
                    }
                    Err(e) => {
                        self.discovery_failures.fetch_add(1, Ordering::Relaxed);
                        log::warn!("server {}: cannot resolve backend {}: {e}", self.name, spec.address())
                    }
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
            tokio::time::sleep(RESOLVE_RETRY).await;
        }
    }

    /// Installs a new backend list: kept backends keep their counters and health.
    pub fn replace_backends(self: &Arc<Self>, specs: Vec<BackendSpec>) {
        {
            let mut backends = self.backends();
            let mut old: HashMap<(String, u16), BackendState> = std::mem::take(&mut *backends)
                .into_iter()
                .map(|b| ((b.spec.host.clone(), b.spec.port), b))
                .collect();
            for spec in specs {
                let state = match old.remove(&(spec.host.clone(), spec.port)) {
                    Some(mut kept) => {
                        kept.spec = spec;
                        kept
                    }
                    None => BackendState {
                        live: self.settings.healthcheck.as_ref().is_none_or(|c| c.initially_healthy),
                        addrs: spec
                            .host
                            .parse()
                            .map(|ip| vec![SocketAddr::new(ip, spec.port)])
                            .unwrap_or_default(),
                        spec,
                        counters: Arc::new(Counters::new(self.counters.shard_count())),
                        live_changes: 0,
                        draining: false,
                        check: None,
                    },
                };
                backends.push(state);
            }
            for gone in old.into_values() {
                if let Some(check) = gone.check {
                    check.abort();
                }
            }
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
        let Some(settings) = self.settings.healthcheck.clone() else { return };
        for backend in self.backends().iter_mut().filter(|b| b.check.is_none() && !b.addrs.is_empty()) {
            let handle = Arc::downgrade(self);
            let settings = settings.clone();
            let target = healthcheck::Target {
                host: backend.spec.host.clone(),
                port: backend.spec.port,
                addrs: backend.addrs.clone(),
            };
            let mut tracker = Tracker::new(&settings);
            let task = tokio::spawn(async move {
                let mut ticker = tokio::time::interval(settings.interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let passed = healthcheck::check(&settings, &target).await;
                    if let Some(live) = tracker.observe(passed) {
                        let Some(handle) = handle.upgrade() else { return };
                        handle.set_live((&target.host, target.port), live);
                    }
                }
            });
            backend.check = Some(task.abort_handle());
        }
    }

    fn set_live(self: &Arc<Self>, key: (&str, u16), live: bool) {
        if let Some(b) = self.backends().iter_mut().find(|b| b.spec.key() == key) {
            // A flapping backend, or many failing at once, must not flood the log.
            crate::log_limited!(
                log::Level::Info,
                "server {}: backend {} is now {}",
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
            let down = states.iter().filter(|b| !b.takes_part()).map(|b| b.spec.clone()).collect();
            (live, down)
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot = Arc::new(ServerSnapshot::build(
            generation,
            self.settings.clone(),
            self.counters.clone(),
            backends,
            &down,
        ));
        for slot in &self.slots {
            slot.publish(snapshot.clone());
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
