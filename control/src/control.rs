//! The control plane's state: the running servers and the configuration they came from.
//! Adding or removing a server touches only that server's listeners and tasks.

use crate::bind::{bind_tcp, resolve_bind};
use crate::config::{
    enforce_strict, refuse_unsupported, validate::validate_server, Config, ConfigError, ConfigWarning, Server,
};
use crate::plane::{Plane, ServerSlot};
use crate::rates::Rates;
use crate::server::ServerHandle;
use crate::stats::Counters;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

#[derive(Debug)]
pub enum ControlError {
    Exists(String),
    NotFound(String),
    Invalid(ConfigError),
    Bind(String, std::io::Error),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Exists(name) => write!(f, "server {name:?} already exists"),
            ControlError::NotFound(name) => write!(f, "server {name:?} not found"),
            ControlError::Invalid(e) => write!(f, "{e}"),
            ControlError::Bind(bind, e) => write!(f, "cannot listen on {bind}: {e}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// Where the running configuration came from, as `GET /` reports it.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub kind: String,
    pub path: String,
}

#[derive(Debug)]
pub struct Control {
    pub plane: Arc<Plane>,
    pub started: SystemTime,
    pub source: ConfigSource,
    /// Bytes per second of every server and backend, kept by `rates::spawn_sampler`.
    pub rates: Rates,
    /// Everything but `servers`, which live in `servers` below.
    base: Config,
    servers: Mutex<BTreeMap<String, Arc<ServerHandle>>>,
}

impl Control {
    pub fn new(plane: Arc<Plane>, config: &Config, source: ConfigSource) -> Arc<Control> {
        let base = Config { servers: BTreeMap::new(), ..config.clone() };
        Arc::new(Control {
            plane,
            started: SystemTime::now(),
            source,
            rates: Rates::default(),
            base,
            servers: Mutex::new(BTreeMap::new()),
        })
    }

    fn servers_lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<ServerHandle>>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn base_config(&self) -> &Config {
        &self.base
    }

    /// Strict mode (`[runtime] strict`): what gobetween tolerates is refused.
    pub fn strict(&self) -> bool {
        self.base.runtime.as_ref().and_then(|r| r.strict).unwrap_or(false)
    }

    /// Validates, binds on every shard and starts discovery. Must run inside the control runtime.
    /// Returns the warnings about values read loosely (in strict mode they refuse the server).
    pub fn add_server(
        &self,
        name: &str,
        server: Server,
    ) -> Result<(Arc<ServerHandle>, Vec<ConfigWarning>), ControlError> {
        if self.servers_lock().contains_key(name) {
            return Err(ControlError::Exists(name.to_string()));
        }
        validate_server(name, &server).map_err(ControlError::Invalid)?;
        let mut single = Config { servers: BTreeMap::new(), ..Config::default() };
        single.servers.insert(name.to_string(), server.clone());
        refuse_unsupported(&single).map_err(ControlError::Invalid)?;

        let (settings, warnings) = server.resolve(name, self.base.defaults.as_ref());
        enforce_strict(&warnings, self.strict()).map_err(ControlError::Invalid)?;
        if let Some(other) = self.listening_on(&settings.bind) {
            let taken = io::Error::new(io::ErrorKind::AddrInUse, format!("server {other:?} listens there"));
            return Err(ControlError::Bind(settings.bind.clone(), taken));
        }
        let shards = self.plane.shard_count();
        let listeners =
            bind_tcp(&settings.bind, shards).map_err(|e| ControlError::Bind(settings.bind.clone(), e))?;
        let counters = Arc::new(Counters::new(shards));
        let settings_arc = Arc::new(settings.clone());
        let empty = ServerHandle::empty_snapshot(&settings_arc, &counters);
        let slots: Vec<Arc<ServerSlot>> =
            listeners.into_iter().map(|l| ServerSlot::new(name, l, empty.clone())).collect();
        let handle = ServerHandle::new(name, server, settings, counters, slots);

        let mut servers = self.servers_lock();
        if servers.contains_key(name) {
            return Err(ControlError::Exists(name.to_string()));
        }
        handle.start();
        self.plane.add_server(&handle.slots);
        servers.insert(name.to_string(), handle.clone());
        log::info!("server {name}: listening on {}", handle.settings.bind);
        Ok((handle, warnings))
    }

    /// Stops accepting on every shard; live connections finish on their own.
    pub fn remove_server(&self, name: &str) -> Result<(), ControlError> {
        let handle =
            self.servers_lock().remove(name).ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        handle.stop();
        self.plane.remove_server(&handle.slots);
        log::info!("server {name}: removed");
        Ok(())
    }

    /// The running server whose address overlaps `bind`. `SO_REUSEPORT` would let both bind and
    /// silently split the connections between them, so the overlap is refused here.
    fn listening_on(&self, bind: &str) -> Option<String> {
        let wanted = resolve_bind(bind).ok()?;
        let overlaps = |a: SocketAddr| {
            a.port() != 0
                && a.port() == wanted.port()
                && (a.ip() == wanted.ip() || a.ip().is_unspecified() || wanted.ip().is_unspecified())
        };
        let servers = self.servers_lock();
        servers.values().find(|h| resolve_bind(&h.settings.bind).is_ok_and(overlaps)).map(|h| h.name.clone())
    }

    pub fn server(&self, name: &str) -> Option<Arc<ServerHandle>> {
        self.servers_lock().get(name).cloned()
    }

    pub fn servers(&self) -> Vec<Arc<ServerHandle>> {
        self.servers_lock().values().cloned().collect()
    }

    /// The running configuration: feeding it back to betwixt reproduces the running servers.
    pub fn dump(&self) -> Config {
        let mut config = self.base.clone();
        config.servers = self.servers_lock().iter().map(|(n, h)| (n.clone(), h.config.clone())).collect();
        config
    }

    /// Stops accepting everywhere (shutdown). Returns the handles so their counters stay readable.
    pub fn stop_accepting(&self) -> Vec<Arc<ServerHandle>> {
        let handles: Vec<Arc<ServerHandle>> =
            std::mem::take(&mut *self.servers_lock()).into_values().collect();
        for handle in &handles {
            handle.stop();
            self.plane.remove_server(&handle.slots);
        }
        handles
    }
}
