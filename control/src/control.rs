//! The control plane's state: the running servers and the configuration they came from.
//! Adding or removing a server touches only that server's listeners and tasks.

use crate::acme::AcmeService;
use crate::bind::{bind_tcp, bind_udp, overlaps, resolve_bind};
use crate::config::{
    enforce_strict, refuse_unsupported, validate::validate_server, Config, ConfigError, ConfigWarning,
    GoDuration, Protocol, Server, ServerSettings,
};
use crate::plane::{Listener, Plane, ServerSlot};
use crate::rates::Rates;
use crate::reload::ReloadState;
use crate::server::ServerHandle;
use crate::stats::Counters;
use crate::tls::TlsContexts;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// A shard puts a removal into effect within one inbox poll (20 ms); one that has not after
/// this long is stuck or gone, and its listeners are no longer waited for.
const SHARD_CATCH_UP: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub enum ControlError {
    Exists(String),
    NotFound(String),
    Invalid(ConfigError),
    Bind(String, std::io::Error),
    /// Shutdown has begun: servers are no longer added or removed.
    ShuttingDown,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Exists(name) => write!(f, "server {name:?} already exists"),
            ControlError::NotFound(name) => write!(f, "server {name:?} not found"),
            ControlError::Invalid(e) => write!(f, "{e}"),
            ControlError::Bind(bind, e) => write!(f, "cannot listen on {bind}: {e}"),
            ControlError::ShuttingDown => {
                f.write_str("shutting down: servers can no longer be added or removed")
            }
        }
    }
}

impl std::error::Error for ControlError {}

/// Where the running configuration came from, as `GET /` reports it.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// `file`, `url` or `consul`.
    pub kind: String,
    /// The file's path, the URL, or `HOST/KEY` for Consul (see `consul_parts`).
    pub path: String,
}

impl ConfigSource {
    /// A Consul source's agent address and key, as given on the command line.
    pub fn consul_parts(&self) -> (&str, &str) {
        // The address (`host:port`) holds no `/`; the key may.
        self.path.split_once('/').unwrap_or((&self.path, ""))
    }
}

fn is_udp(settings: &ServerSettings) -> bool {
    settings.protocol == Protocol::Udp
}

/// The error for a bind another server's listener overlaps; `holder` names it
/// (`server "NAME"`, see `Control::listening_on`).
pub(crate) fn taken(bind: &str, holder: &str) -> ControlError {
    let taken = io::Error::new(io::ErrorKind::AddrInUse, format!("{holder} listens there"));
    ControlError::Bind(bind.to_string(), taken)
}

/// The first of `servers` whose address overlaps `bind` (UDP servers among UDP servers, TCP
/// among TCP: the two never share a port).
pub(crate) fn overlapping<'a>(
    servers: impl IntoIterator<Item = (&'a str, &'a ServerSettings)>,
    bind: &str,
    udp: bool,
) -> Option<String> {
    let wanted = resolve_bind(bind).ok()?;
    servers
        .into_iter()
        .filter(|(_, s)| is_udp(s) == udp)
        .find(|(_, s)| resolve_bind(&s.bind).is_ok_and(|a| overlaps(a, wanted)))
        .map(|(name, _)| name.to_string())
}

/// What happens to a removed server's live connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// Closed at once, as gobetween closes them.
    None,
    /// Left to finish for up to this long, then closed; `None` waits for as long as they last.
    For(Option<Duration>),
}

#[derive(Debug)]
pub struct Control {
    pub plane: Arc<Plane>,
    pub started: SystemTime,
    pub source: ConfigSource,
    /// Bytes per second of every server and backend, kept by `rates::spawn_sampler`.
    pub rates: Rates,
    /// Everything but `servers`, which live in `servers` below. A reload replaces its
    /// `[defaults]` (see `reload`).
    base: ArcSwap<Config>,
    servers: Mutex<BTreeMap<String, Arc<ServerHandle>>>,
    /// Removed servers whose connections may still be open; shutdown waits for them too.
    draining: Mutex<Vec<Draining>>,
    shutting_down: AtomicBool,
    /// `[acme]`, once `start_acme` has run.
    acme: OnceLock<Arc<AcmeService>>,
    /// Reloads: the source to read, one at a time, and how the last one went.
    pub reload: ReloadState,
}

/// A server section checked, its settings resolved, its certificates read and (unless it
/// replaces a running server's settings only) its listeners bound: all that can fail before a
/// server serves. Dropped unused, it closes its listeners, so nothing of it was ever seen.
pub(crate) struct Prepared {
    pub name: String,
    pub config: Server,
    pub settings: ServerSettings,
    pub listeners: Vec<Listener>,
    pub warnings: Vec<ConfigWarning>,
}

/// A removed server, kept until its last connection has closed.
#[derive(Debug)]
struct Draining {
    handle: Arc<ServerHandle>,
    /// The shards' inbox generations right after the removal (see `Plane::applied`).
    marks: Vec<u64>,
    since: Instant,
}

impl Control {
    pub fn new(plane: Arc<Plane>, config: &Config, source: ConfigSource) -> Arc<Control> {
        let base = Config { servers: BTreeMap::new(), ..config.clone() };
        Arc::new(Control {
            plane,
            started: SystemTime::now(),
            source,
            rates: Rates::default(),
            base: ArcSwap::from_pointee(base),
            servers: Mutex::new(BTreeMap::new()),
            draining: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            acme: OnceLock::new(),
            reload: ReloadState::default(),
        })
    }

    /// With an `[acme]` section: checks `cache_dir`, listens on `http_bind` for HTTP-01, and
    /// makes the service servers with `acme_hosts` get their certificates from. Must run
    /// inside the control runtime, before those servers are added.
    pub fn start_acme(&self) -> Result<(), String> {
        if let Some(section) = &self.base.load().acme {
            let service = AcmeService::start(section)?;
            let _ = self.acme.set(service);
        }
        Ok(())
    }

    /// `betwixt check`: what a start reads before it serves, in a start's order and with its
    /// words, but without binding a port, creating a directory or starting a task: `[acme]`'s
    /// cache directory and CA bundle, every server as `add_server` prepares it (its section,
    /// certificates and keys), the access log's output, then `[api.tls]`.
    pub fn check_start(config: &Config) -> Result<(), String> {
        let control = Control::new(Plane::new(1), config, ConfigSource::default());
        if let Some(section) = &config.acme {
            let _ = control.acme.set(AcmeService::check(section)?);
        }
        let defaults = config.defaults.as_ref();
        // Held to the end: a server's ACME hosts stay claimed while it lives, as at start, so
        // two servers claiming one host fail here too.
        let mut prepared = Vec::with_capacity(config.servers.len());
        for (name, server) in &config.servers {
            let server = control.prepare(name, server.clone(), defaults, None);
            prepared.push(server.map_err(|e| format!("server {name}: {e}"))?);
        }
        crate::access_log::check(config.access_log.as_ref())?;
        crate::api::check(config)
    }

    /// The ACME service, when `[acme]` is configured and started.
    pub fn acme(&self) -> Option<&Arc<AcmeService>> {
        self.acme.get()
    }

    fn servers_lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<ServerHandle>>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn base_config(&self) -> Arc<Config> {
        self.base.load_full()
    }

    pub(crate) fn set_base(&self, base: Config) {
        self.base.store(Arc::new(Config { servers: BTreeMap::new(), ..base }));
    }

    /// Strict mode (`[runtime] strict`): what gobetween tolerates is refused.
    pub fn strict(&self) -> bool {
        self.base_config().runtime.as_ref().and_then(|r| r.strict).unwrap_or(false)
    }

    /// Validates, binds on every shard and starts discovery. Must run inside the control runtime.
    /// Returns the warnings about values read loosely (in strict mode they refuse the server).
    pub fn add_server(
        &self,
        name: &str,
        server: Server,
    ) -> Result<(Arc<ServerHandle>, Vec<ConfigWarning>), ControlError> {
        if self.is_shutting_down() {
            return Err(ControlError::ShuttingDown);
        }
        if self.servers_lock().contains_key(name) {
            return Err(ControlError::Exists(name.to_string()));
        }
        let defaults = self.base_config().defaults.clone();
        let mut prepared = self.prepare(name, server, defaults.as_ref(), None)?;
        if let Some(other) = self.listening_on(&prepared.settings.bind, is_udp(&prepared.settings), &[]) {
            return Err(taken(&prepared.settings.bind, &other));
        }
        self.bind(&mut prepared)?;
        let warnings = std::mem::take(&mut prepared.warnings);
        Ok((self.install(prepared)?, warnings))
    }

    /// Everything `add_server` checks and loads, without binding: validation, settings, strict
    /// mode, transparent UDP, certificates. `keep_tls` are the TLS contexts of a running server
    /// whose `[tls]` and `[backends_tls]` did not change: they are kept rather than read again,
    /// so its certificate watch stays attached to them.
    pub(crate) fn prepare(
        &self,
        name: &str,
        server: Server,
        defaults: Option<&crate::config::ConnectionOptions>,
        keep_tls: Option<TlsContexts>,
    ) -> Result<Prepared, ControlError> {
        validate_server(name, &server).map_err(ControlError::Invalid)?;
        let mut single = Config { servers: BTreeMap::new(), ..Config::default() };
        single.servers.insert(name.to_string(), server.clone());
        refuse_unsupported(&single).map_err(ControlError::Invalid)?;

        let (mut settings, warnings) = server.resolve(name, defaults);
        let warnings = warnings.finish();
        enforce_strict(&warnings, self.strict()).map_err(ControlError::Invalid)?;
        if settings.protocol == Protocol::Udp && settings.udp.transparent {
            crate::bind::check_transparent().map_err(|message| {
                ControlError::Invalid(ConfigError::at_key(format!("servers.{name}.udp.transparent"), message))
            })?;
        }
        let invalid = |field: &str, message: String| {
            ControlError::Invalid(ConfigError::at_key(format!("servers.{name}.{field}"), message))
        };
        if keep_tls.is_some() {
            settings.tls = keep_tls;
        } else if settings.protocol != Protocol::Udp
            && (server.tls.is_some() || server.backends_tls.is_some())
        {
            let acme = match server.tls.as_ref().and_then(crate::tls::acme_hosts) {
                Some(hosts) => {
                    let service = self
                        .acme()
                        .ok_or_else(|| invalid("tls.acme_hosts", "needs the [acme] section".to_string()))?;
                    Some(service.certs_for(name, hosts).map_err(|e| invalid("tls.acme_hosts", e))?)
                }
                None => None,
            };
            let contexts = TlsContexts::load(server.tls.as_ref(), server.backends_tls.as_ref(), acme)
                .map_err(|(field, message)| invalid(&field, message))?;
            settings.tls = Some(contexts);
        }
        Ok(Prepared { name: name.to_string(), config: server, settings, listeners: Vec::new(), warnings })
    }

    /// Binds a prepared server's listeners, one per shard.
    pub(crate) fn bind(&self, prepared: &mut Prepared) -> Result<(), ControlError> {
        let settings = &prepared.settings;
        let bind = if is_udp(settings) { bind_udp } else { bind_tcp };
        prepared.listeners = bind(&settings.bind, self.plane.shard_count())
            .map_err(|e| ControlError::Bind(settings.bind.clone(), e))?;
        Ok(())
    }

    /// Hands a prepared and bound server to the shards and starts its discovery.
    pub(crate) fn install(&self, prepared: Prepared) -> Result<Arc<ServerHandle>, ControlError> {
        let Prepared { name, config, settings, listeners, .. } = prepared;
        let name = name.as_str();
        let counters = Arc::new(Counters::new(self.plane.shard_count()));
        let settings_arc = Arc::new(settings.clone());
        let empty = ServerHandle::empty_snapshot(&settings_arc, &counters);
        let slots: Vec<Arc<ServerSlot>> =
            listeners.into_iter().map(|l| ServerSlot::new(name, l, empty.clone())).collect();
        let handle = ServerHandle::new(name, config, settings, counters, slots);

        let mut servers = self.servers_lock();
        // Checked again under the lock `shut_down` takes: a server added during the drain
        // would listen and then be cut off at exit. Its listeners close as `handle` drops.
        if self.is_shutting_down() {
            return Err(ControlError::ShuttingDown);
        }
        if servers.contains_key(name) {
            return Err(ControlError::Exists(name.to_string()));
        }
        handle.start();
        self.plane.add_server(&handle.slots);
        servers.insert(name.to_string(), handle.clone());
        log::info!("server {name}: listening on {}", handle.settings().bind);
        Ok(handle)
    }

    /// Stops accepting on every shard; live connections are closed at once or after `drain`.
    /// Must run inside the control runtime.
    pub fn remove_server(&self, name: &str, drain: Drain) -> Result<(), ControlError> {
        let handle = {
            let mut servers = self.servers_lock();
            if self.is_shutting_down() {
                return Err(ControlError::ShuttingDown);
            }
            servers.remove(name).ok_or_else(|| ControlError::NotFound(name.to_string()))?
        };
        let slots = handle.slots.clone();
        if drain != Drain::None {
            slots.iter().for_each(|slot| slot.let_sessions_finish());
        }
        self.retire(handle);
        match drain {
            Drain::None => {
                slots.iter().for_each(|slot| slot.abort());
                log::info!("server {name}: removed; its connections are closed");
            }
            Drain::For(None) => log::info!("server {name}: removed; its connections may finish"),
            Drain::For(Some(limit)) => {
                log::info!("server {name}: removed; its connections may finish within {}", GoDuration(limit));
                let name = name.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    let open: u64 = slots.first().map_or(0, |s| s.snapshot().counters.totals().active);
                    if open > 0 {
                        log::info!("server {name}: drain time over: closing {open} connection(s)");
                    }
                    slots.iter().for_each(|slot| slot.abort());
                });
            }
        }
        Ok(())
    }

    /// A server a reload rebinds: the old listeners close, its connections may finish.
    pub(crate) fn retire_draining(&self, handle: Arc<ServerHandle>) {
        log::info!("server {}: listeners replaced; its connections may finish", handle.name);
        self.retire(handle);
    }

    /// Stops a server's listeners and discovery, and keeps it among the draining until its
    /// last connection has closed.
    fn retire(&self, handle: Arc<ServerHandle>) {
        handle.stop();
        self.plane.remove_server(&handle.slots);
        let marks = self.plane.generations();
        let mut draining = self.draining_lock();
        draining.retain(|d| !self.finished(d));
        draining.push(Draining { handle, marks, since: Instant::now() });
    }

    fn draining_lock(&self) -> MutexGuard<'_, Vec<Draining>> {
        self.draining.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No connection is left, and no shard can accept a new one: every shard has shut the
    /// server's listeners (or failed to within `SHARD_CATCH_UP`) and let go of its udp socket.
    fn finished(&self, d: &Draining) -> bool {
        d.handle.counters.totals().active == 0
            && (self.plane.applied(&d.marks) || d.since.elapsed() >= SHARD_CATCH_UP)
            && !d.handle.slots.iter().any(|slot| slot.holds_socket())
    }

    /// The server whose address overlaps `bind` (UDP servers among UDP servers, TCP among
    /// TCP: the two never share a port), as `server "NAME"`: a running one, or a removed udp
    /// server whose sessions drain on its socket. `SO_REUSEPORT` would let both bind and
    /// silently split the clients between them, so the overlap is refused here.
    /// `except` names servers a reload is about to remove or rebind.
    pub(crate) fn listening_on(&self, bind: &str, udp: bool, except: &[String]) -> Option<String> {
        let servers = self.servers_lock();
        let running = servers
            .values()
            .filter(|h| !except.contains(&h.name))
            .map(|h| (h.name.as_str(), h.settings()))
            .collect::<Vec<_>>();
        if let Some(name) = overlapping(running.iter().map(|(name, s)| (*name, s.as_ref())), bind, udp) {
            return Some(format!("server {name:?}"));
        }
        let draining = self.draining_lock();
        let holding = draining
            .iter()
            .filter(|d| d.handle.slots.iter().any(|slot| slot.holds_socket()))
            .map(|d| (d.handle.name.as_str(), d.handle.settings()))
            .collect::<Vec<_>>();
        let name = overlapping(holding.iter().map(|(name, s)| (*name, s.as_ref())), bind, udp)?;
        Some(format!("server {name:?} (removed; its sessions drain until they end)"))
    }

    /// Takes a running server out of the table (a reload replacing it), then retires it as
    /// `remove_server` does, its connections left to finish.
    pub(crate) fn take_server(&self, name: &str) -> Option<Arc<ServerHandle>> {
        self.servers_lock().remove(name)
    }

    pub fn server(&self, name: &str) -> Option<Arc<ServerHandle>> {
        self.servers_lock().get(name).cloned()
    }

    pub fn servers(&self) -> Vec<Arc<ServerHandle>> {
        self.servers_lock().values().cloned().collect()
    }

    /// Begins shutdown: refuses further changes and stops accepting everywhere. `drained` then
    /// tells when the last connection, on any server removed before or now, has closed.
    pub fn shut_down(&self) {
        let handles: Vec<Arc<ServerHandle>> = {
            let mut servers = self.servers_lock();
            self.shutting_down.store(true, Ordering::Release);
            std::mem::take(&mut *servers).into_values().collect()
        };
        for handle in handles {
            self.retire(handle);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Every removed server has finished: no connection open, no listener left on any shard.
    pub fn drained(&self) -> bool {
        let mut draining = self.draining_lock();
        draining.retain(|d| !self.finished(d));
        draining.is_empty()
    }

    /// Connections still open on removed servers.
    pub fn draining_connections(&self) -> u64 {
        self.draining_lock().iter().map(|d| d.handle.counters.totals().active).sum()
    }
}
