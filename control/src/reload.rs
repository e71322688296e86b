//! Reload: a new configuration, read in full and checked first, applied as a diff of the
//! running one. Servers that did not change are not touched; a changed server whose listeners
//! can stay gets its new settings in its next snapshot; one whose listeners cannot (another
//! `bind`, or between UDP and TCP) is bound anew and the old one drained; removed servers drain
//! as `DELETE /servers/NAME?drain=0` drains them; added servers bind as `POST` binds them.
//!
//! Everything that can fail (validation, strict mode, certificates, binding) happens before
//! anything changes: a rejected configuration leaves the running one serving as it was.

use crate::config::{
    enforce_strict, refuse_unsupported, Config, ConfigError, ConfigWarning, Format, Protocol, Server,
    ServerSettings,
};
use crate::control::{overlapping, taken, Control, ControlError, Drain, Prepared};
use crate::server::ServerHandle;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

/// Reads the configuration again from where the process got it (file, URL or Consul key).
/// Implemented by the binary, which knows the command line (`-f`, `-e`, the source).
pub trait ConfigLoader: Send + Sync {
    /// Reads and parses the source. Blocking (file or network): called off the control thread.
    fn load(&self) -> Result<(Config, Vec<ConfigWarning>), ConfigError>;
}

/// What a reload did, by server name (sorted), as `POST /reload` answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: Vec<String>,
    /// Settings or backends swapped; listeners kept.
    pub changed: Vec<String>,
    /// `bind` changed, or between UDP and TCP: new listeners, the old server drained.
    pub rebound: Vec<String>,
    /// Drained: no new connections, the open ones finish.
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Sections that changed but are only read at start (`api`, `metrics`, ...).
    pub restart_required: Vec<&'static str>,
}

/// One reload's result, for `GET /`.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub at: SystemTime,
    /// What asked for it: `SIGHUP`, `api`, `watch`.
    pub trigger: String,
    pub result: Result<Summary, String>,
}

/// The reload machinery's state inside `Control`.
#[derive(Default)]
pub struct ReloadState {
    loader: OnceLock<Arc<dyn ConfigLoader>>,
    /// One reload at a time: a signal, the API and a watch may ask at once.
    one_at_a_time: tokio::sync::Mutex<()>,
    last: Mutex<Option<Outcome>>,
    last_success: Mutex<Option<SystemTime>>,
    pub ok: AtomicU64,
    pub rejected: AtomicU64,
}

impl std::fmt::Debug for ReloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadState").field("last", &self.last()).finish_non_exhaustive()
    }
}

impl ReloadState {
    pub fn set_loader(&self, loader: Arc<dyn ConfigLoader>) {
        let _ = self.loader.set(loader);
    }

    fn loader(&self) -> Result<Arc<dyn ConfigLoader>, String> {
        self.loader.get().cloned().ok_or_else(|| "no configuration source to reload from".to_string())
    }

    pub fn last(&self) -> Option<Outcome> {
        lock(&self.last).clone()
    }

    pub fn last_success(&self) -> Option<SystemTime> {
        *lock(&self.last_success)
    }

    fn record(&self, trigger: &str, result: &Result<Summary, String>) {
        let at = SystemTime::now();
        match result {
            Ok(summary) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_success) = Some(at);
                log::info!("reload ({trigger}): {}", summary.describe());
                if !summary.restart_required.is_empty() {
                    log::warn!(
                        "reload ({trigger}): changes to [{}] take effect at the next start",
                        summary.restart_required.join("], [")
                    );
                }
            }
            Err(reason) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                log::error!("reload ({trigger}) rejected, the running configuration stays: {reason}");
            }
        }
        *lock(&self.last) = Some(Outcome { at, trigger: trigger.to_string(), result: result.clone() });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Summary {
    fn describe(&self) -> String {
        let part = |what: &str, names: &[String]| {
            if names.is_empty() {
                None
            } else {
                Some(format!("{what} {}", names.join(", ")))
            }
        };
        let parts: Vec<String> = [
            part("added", &self.added),
            part("changed", &self.changed),
            part("rebound", &self.rebound),
            part("removed", &self.removed),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            format!("no server changed ({} unchanged)", self.unchanged.len())
        } else {
            format!("{}; {} unchanged", parts.join("; "), self.unchanged.len())
        }
    }
}

/// What a reload does to one server.
enum Plan {
    Add,
    Change(Arc<ServerHandle>),
    Rebind,
}

/// Whether a server's shard listeners can serve `new`: same address, and the same kind of
/// socket. UDP shards also read the session limits and timeouts when they start serving
/// (`udp::serve`), so a change there needs new sockets too; TCP and TLS servers read
/// everything else per connection from the snapshot.
fn keeps_listeners(old: &ServerSettings, new: &ServerSettings) -> bool {
    let udp = |s: &ServerSettings| s.protocol == Protocol::Udp;
    old.bind == new.bind
        && udp(old) == udp(new)
        && (!udp(new)
            || (old.udp == new.udp
                && old.client_idle_timeout == new.client_idle_timeout
                && old.backend_idle_timeout == new.backend_idle_timeout))
}

impl Control {
    /// Reads the configuration source again and applies it. `trigger` names the cause in the
    /// log and in `GET /`.
    pub async fn reload_from_source(&self, trigger: &str) -> Result<Summary, String> {
        let _one = self.reload.one_at_a_time.lock().await;
        crate::system_roots::read_again();
        let result = match self.reload.loader() {
            Ok(loader) => match tokio::task::spawn_blocking(move || loader.load()).await {
                Ok(Ok((config, warnings))) => self.apply(config, &warnings),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("reading the configuration failed: {e}")),
            },
            Err(e) => Err(e),
        };
        self.reload.record(trigger, &result);
        result
    }

    /// Applies a whole configuration sent to the API (`PUT /config`). `check` sees the parsed
    /// configuration first and may refuse it (the API's `allow_exec` rule).
    pub async fn reload_from_text(
        &self,
        text: &str,
        format: Format,
        check: impl FnOnce(&Config, &[Arc<ServerHandle>]) -> Result<(), String>,
    ) -> Result<Summary, String> {
        let _one = self.reload.one_at_a_time.lock().await;
        crate::system_roots::read_again();
        // Without `-e`'s substitution: an API caller must not read the process's environment
        // (through `GET /dump`, or an error message quoting a value).
        let result = crate::config::parse_text(text, format, false).map_err(|e| e.to_string()).and_then(
            |(config, warnings)| {
                check(&config, &self.servers())?;
                self.apply(config, &warnings)
            },
        );
        self.reload.record("api", &result);
        result
    }

    /// Checks `config` in full, then applies it as a diff. Must run inside the control runtime.
    fn apply(&self, config: Config, warnings: &[ConfigWarning]) -> Result<Summary, String> {
        if self.is_shutting_down() {
            return Err(ControlError::ShuttingDown.to_string());
        }
        let strict = self.strict() || config.runtime.as_ref().and_then(|r| r.strict).unwrap_or(false);
        enforce_strict(warnings, strict).map_err(|e| e.to_string())?;
        refuse_unsupported(&config).map_err(|e| e.to_string())?;

        let base = self.base_config();
        let running: BTreeMap<String, Arc<ServerHandle>> =
            self.servers().into_iter().map(|h| (h.name.clone(), h)).collect();
        let (old_defaults, new_defaults) = (base.defaults.as_ref(), config.defaults.as_ref());
        let mut summary = Summary::default();
        let mut plans: Vec<(Plan, Prepared)> = Vec::new();
        for (name, server) in &config.servers {
            let old = running.get(name);
            let unchanged = old.is_some_and(|h| {
                let current = h.config();
                *current == *server
                    && current.with_defaults(old_defaults) == server.with_defaults(new_defaults)
            });
            if unchanged {
                summary.unchanged.push(name.clone());
                continue;
            }
            // Certificates unchanged: the running contexts (and their watch) are kept.
            let keep_tls = old.and_then(|h| {
                let current = h.config();
                (current.tls == server.tls && current.backends_tls == server.backends_tls)
                    .then(|| h.settings().tls.clone())
                    .flatten()
            });
            let prepared = self
                .prepare(name, server.clone(), new_defaults, keep_tls)
                .map_err(|e| format!("server {name}: {e}"))?;
            let plan = match old {
                None => Plan::Add,
                Some(h) if keeps_listeners(&h.settings(), &prepared.settings) => Plan::Change(h.clone()),
                Some(_) => Plan::Rebind,
            };
            plans.push((plan, prepared));
        }
        let leaving: Vec<String> = running
            .keys()
            .filter(|name| !config.servers.contains_key(*name))
            .cloned()
            .chain(plans.iter().filter(|(p, _)| matches!(p, Plan::Rebind)).map(|(_, p)| p.name.clone()))
            .collect();
        self.bind_new(&mut plans, &leaving)?;

        // Nothing can fail from here on: the new configuration goes into effect.
        for (name, handle) in running.iter().filter(|(name, _)| !config.servers.contains_key(*name)) {
            // A udp server's sessions end with it, as gobetween ends them: drained, its socket
            // would keep the port beside the one a server of this reload may have bound there,
            // and `SO_REUSEPORT` would split the clients between the two.
            let drain = match handle.settings().protocol {
                Protocol::Udp => Drain::None,
                _ => Drain::For(None),
            };
            // A server that went meanwhile (`DELETE` through the API) is simply gone.
            let _ = self.remove_server(name, drain);
            summary.removed.push(name.clone());
        }
        for (plan, prepared) in plans {
            let name = prepared.name.clone();
            for warning in &prepared.warnings {
                log::warn!("server {name}: {warning}");
            }
            match plan {
                Plan::Change(handle) => {
                    handle.update(prepared.config, prepared.settings);
                    summary.changed.push(name);
                }
                Plan::Rebind | Plan::Add => {
                    let rebind = matches!(plan, Plan::Rebind);
                    if rebind {
                        if let Some(old) = self.take_server(&name) {
                            self.retire_draining(old);
                        }
                    }
                    match self.install(prepared) {
                        Ok(_) if rebind => summary.rebound.push(name),
                        Ok(_) => summary.added.push(name),
                        Err(e) => log::error!("reload: server {name}: {e}"),
                    }
                }
            }
        }
        summary.restart_required = restart_required(&base, &config);
        self.set_base(Config { defaults: config.defaults.clone(), ..(*base).clone() });
        for list in [&mut summary.added, &mut summary.changed, &mut summary.rebound, &mut summary.removed] {
            list.sort();
        }
        Ok(summary)
    }

    /// Binds the listeners of added and rebound servers, refusing an address another server
    /// keeps (running and staying, or added by this same reload). On any failure every
    /// listener bound so far closes as `plans` is dropped.
    fn bind_new(&self, plans: &mut [(Plan, Prepared)], leaving: &[String]) -> Result<(), String> {
        for i in 0..plans.len() {
            if matches!(plans[i].0, Plan::Change(_)) {
                continue;
            }
            let (earlier, rest) = plans.split_at_mut(i);
            let prepared = &mut rest[0].1;
            let settings = &prepared.settings;
            let udp = settings.protocol == Protocol::Udp;
            let fresh = earlier
                .iter()
                .filter(|(p, _)| matches!(p, Plan::Add | Plan::Rebind))
                .map(|(_, p)| (p.name.as_str(), &p.settings));
            let other = overlapping(fresh, &settings.bind, udp)
                .map(|name| format!("server {name:?}"))
                .or_else(|| self.listening_on(&settings.bind, udp, leaving));
            let name = prepared.name.clone();
            if let Some(other) = other {
                return Err(format!("server {name}: {}", taken(&settings.bind, &other)));
            }
            self.bind(prepared).map_err(|e| format!("server {name}: {e}"))?;
        }
        Ok(())
    }
}

/// The sections besides `[defaults]` and `[servers]` that differ: they are read at start only.
fn restart_required(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut sections = Vec::new();
    let mut differs = |name: &'static str, same: bool| {
        if !same {
            sections.push(name);
        }
    };
    differs("logging", running.logging == new.logging);
    differs("api", running.api == new.api);
    differs("metrics", running.metrics == new.metrics);
    differs("profiler", running.profiler == new.profiler);
    differs("acme", running.acme == new.acme);
    differs("runtime", running.runtime == new.runtime);
    differs("access_log", running.access_log == new.access_log);
    sections
}

/// Whether a section differs from a running server's: what the API's `allow_exec` rule looks
/// at for a whole configuration sent to it.
pub fn is_new_or_changed(name: &str, server: &Server, running: &[Arc<ServerHandle>]) -> bool {
    running.iter().find(|h| h.name == name).is_none_or(|h| *h.config() != *server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UdpSettings;

    fn settings(bind: &str, protocol: Protocol) -> ServerSettings {
        let server = Server { bind: bind.into(), protocol: Some(protocol), ..Server::default() };
        server.resolve("s", None).0
    }

    #[test]
    fn listeners_stay_unless_the_socket_must_change() {
        let tcp = settings("127.0.0.1:1", Protocol::Tcp);
        assert!(keeps_listeners(&tcp, &settings("127.0.0.1:1", Protocol::Tls)));
        assert!(!keeps_listeners(&tcp, &settings("127.0.0.1:2", Protocol::Tcp)));
        assert!(!keeps_listeners(&tcp, &settings("127.0.0.1:1", Protocol::Udp)));
        let udp = settings("127.0.0.1:1", Protocol::Udp);
        let mut limited = settings("127.0.0.1:1", Protocol::Udp);
        limited.udp = UdpSettings { max_requests: 1, ..limited.udp };
        assert!(keeps_listeners(&udp, &settings("127.0.0.1:1", Protocol::Udp)));
        assert!(!keeps_listeners(&udp, &limited));
    }

    #[test]
    fn sections_read_at_start_are_named() {
        let running = Config::default();
        let mut new = Config::default();
        assert!(restart_required(&running, &new).is_empty());
        new.runtime = Some(Default::default());
        new.api = Some(Default::default());
        assert_eq!(restart_required(&running, &new), ["api", "runtime"]);
    }
}
