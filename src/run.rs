//! Process lifetime: start the shards, run the control plane, wait for a signal, drain, exit.

use crate::cli::Cli;
use crate::shard;
use crate::source::Loaded;
use crate::upgrade::{self, Offering, Takeover};
use betwixt_control::control::Control;
use betwixt_control::plane::Plane;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Notify;

/// Live connections may finish for this long after SIGTERM/SIGINT unless `[runtime]` says otherwise.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// At most this many shards per usable CPU. More shards than CPUs only share them, each waking
/// on its own; a slip such as `--shards 100000` would otherwise start that many threads.
const MAX_SHARDS_PER_CPU: usize = 4;

/// The descriptor limit kernel forwarding sizes its maps for when the real one is unknown.
const KERNEL_FILES_UNKNOWN: u64 = 65536;

/// The CPUs this process may run on (its inherited affinity mask, e.g. from `taskset`).
fn usable_cpus() -> Vec<usize> {
    core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect()
}

/// The shard count from `--shards`, else `[runtime] shards`, else one per usable CPU.
fn shard_count(cli: &Cli, configured: Option<usize>, cpus: usize) -> Result<usize, String> {
    let (count, origin) = match (cli.shards, configured) {
        (Some(n), _) => (n, format!("--shards {n}")),
        (None, Some(n)) => (n, format!("[runtime] shards = {n}")),
        (None, None) => return Ok(cpus),
    };
    let most = cpus * MAX_SHARDS_PER_CPU;
    if count == 0 {
        return Err(format!("{origin}: there must be at least 1 shard"));
    }
    if count > most {
        return Err(format!(
            "{origin}: at most {most} shards ({MAX_SHARDS_PER_CPU} per CPU; this process may use {cpus})"
        ));
    }
    Ok(count)
}

/// Runs until SIGTERM/SIGINT or until a successor takes over. `upgrade_from`: take over from
/// the betwixt offering its sockets there (`--upgrade-from`).
pub fn run(cli: &Cli, loaded: Loaded, upgrade_from: Option<PathBuf>) -> Result<(), String> {
    let config = loaded.config;
    betwixt_control::logging::init(config.logging.as_ref())?;
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    let cpus = usable_cpus();
    let runtime = config.runtime.clone().unwrap_or_default();
    let shards = shard_count(cli, runtime.shards, cpus.len().max(1))?;
    let grace = runtime.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0);
    let splice = runtime.splice.unwrap_or(true);

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start control runtime: {e}"))?;
    // Before anything listens: from here on SIGHUP no longer kills the process.
    let mut signals = {
        let _runtime = tokio.enter();
        Signals::install().map_err(|e| format!("cannot handle signals: {e}"))?
    };

    let files = crate::limits::raise_soft_limits();
    if let Some(files) = files {
        log::debug!("open-file limit {files}: room for about {} proxied connections", files / 2);
    }
    // Before the shards, which read it; one program and its maps for the process.
    let kernel = (runtime.forwarding == Some(betwixt_control::config::Forwarding::Kernel))
        .then(|| runtime.kernel_forwarding_after_reads.unwrap_or(crate::kernel::AFTER_READS));
    crate::kernel::setup(kernel, files.unwrap_or(KERNEL_FILES_UNKNOWN));
    crate::limits::check_memlock()?;
    // Before the shards, which push to it; after logging, which its writer reports through.
    betwixt_control::access_log::start(config.access_log.as_ref())?;
    let plane = Plane::new(shards);

    tokio.block_on(async {
        // A successor receives the sockets before it binds anything, so that binding takes them.
        let takeover = upgrade_from.as_deref().map(Takeover::begin).transpose()?;
        let start_shards = || -> Result<(), String> {
            for (id, inbox) in plane.inboxes.iter().enumerate() {
                let cpu = (!cpus.is_empty()).then(|| cpus[id % cpus.len()]);
                log::debug!("starting shard {id} (cpu {cpu:?})");
                shard::spawn(id, cpu, inbox.clone(), splice).map_err(|e| shard_failed(id, &e))?;
            }
            log::info!("betwixt {} starting {shards} shard(s) on cpus {cpus:?}", env!("CARGO_PKG_VERSION"));
            Ok(())
        };
        // A successor starts its shards once everything is bound: a configuration that fails to
        // bind has then accepted no connection on the predecessor's sockets that its exit would
        // drop. Otherwise they run before anything listens, so a "listening" line means served.
        if takeover.is_none() {
            start_shards()?;
        }
        let control = Control::new(plane.clone(), &config, loaded.source);
        control.start_acme()?;
        control.reload.set_loader(Arc::new(loaded.reading.clone()));
        let changed = Arc::new(Notify::new());
        if runtime.watch_config.unwrap_or(false) {
            let interval = runtime.watch_interval.map(|d| d.0);
            crate::watch::start(loaded.reading, interval, changed.clone())
                .map_err(|e| format!("cannot watch the configuration: {e}"))?;
        }
        for (name, server) in &config.servers {
            // Its warnings were logged above, with their lines.
            control.add_server(name, server.clone()).map_err(|e| format!("server {name}: {e}"))?;
        }
        betwixt_control::rates::spawn_sampler(control.clone());
        tokio::spawn(betwixt_control::access_log::warn_of_drops());
        betwixt_control::api::start(&control)?;
        let metrics_beside_profiler = betwixt_control::metrics::start(&control)?;
        // After a predecessor's sockets are received (its profiler's among them), like the rest.
        betwixt_control::profiler::start(config.profiler.as_ref(), metrics_beside_profiler)?;
        if takeover.is_some() {
            start_shards()?;
        }
        let offer_path = cli.upgrade_socket.clone().or_else(|| takeover.as_ref().map(|t| t.path().into()));
        let replace = takeover.is_some();
        // Held until exit; removed then if it still names this process.
        let _pidfile = match takeover {
            Some(takeover) => takeover.complete(&plane, cli.pidfile.as_deref()).await?,
            None => {
                upgrade::shards_serving(&plane).await;
                None
            }
        };
        let mut offering = match offer_path {
            Some(path) => Some(Offering::start(&path, control.clone(), replace)?),
            None => None,
        };
        signals.upgrades = offering.is_some();
        // Everything listens (the upgrade socket too) and the shards serve.
        crate::notify::ready();
        let watchdog = crate::notify::start_watchdog(plane.clone());
        let reason = tokio::select! {
            signal = signals.stop_requested(&control, &changed) => {
                // Not when a successor took over: the service goes on, served by it.
                crate::notify::stopping();
                signal.to_string()
            }
            taken = upgrade::taken_over(&mut offering, &control) => taken,
        };
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        log::info!("{reason}: no longer accepting; waiting up to {grace:?} for live connections");
        control.shut_down();
        // A second SIGTERM or SIGINT cuts the wait short, as an impatient operator wants.
        tokio::select! {
            () = drain(&control, grace) => {}
            again = signals.stop_requested(&control, &changed) => log::warn!(
                "{again} during shutdown: closing {} live connection(s) now",
                control.draining_connections()
            ),
        }
        Ok::<(), String>(())
    })?;
    // The lines of the connections that ended during the drain.
    betwixt_control::access_log::finish();
    log::info!("stopped");
    Ok(())
}

fn shard_failed(id: usize, e: &std::io::Error) -> String {
    // EAGAIN from clone(2): the thread limit (`ulimit -u`, a container's pids limit) is reached.
    let hint = if e.raw_os_error() == Some(libc::EAGAIN) {
        " (no more threads allowed: check `ulimit -u` or the container's pids limit)"
    } else {
        ""
    };
    format!("cannot start shard {id}: {e}{hint}")
}

/// The signals betwixt acts on: SIGTERM and SIGINT stop it; SIGHUP reloads the configuration
/// and reopens the access log file. SIGUSR1, and SIGUSR2 without an upgrade socket (whose
/// `Offering` acts on it), are caught and ignored, as gobetween (a Go program) ignores them:
/// left to the default action, they would kill the process without a drain.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
    /// SIGUSR2 starts an upgrade (`--upgrade-socket`).
    upgrades: bool,
}

impl Signals {
    /// Must run inside the control runtime.
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
            upgrades: false,
        })
    }

    /// Waits for SIGTERM or SIGINT and names it. Meanwhile SIGHUP, and a change of the watched
    /// source (`changed`), start a reload (one at a time; see `Control::reload_from_source`).
    async fn stop_requested(&mut self, control: &Arc<Control>, changed: &Notify) -> &'static str {
        loop {
            let trigger = tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    // logrotate's signal: the file is reopened whether or not the reload
                    // goes through (even during shutdown).
                    if let Some(log) = betwixt_control::access_log::running() {
                        log.reopen();
                    }
                    "SIGHUP"
                }
                () = changed.notified() => "watch",
                _ = self.usr1.recv() => {
                    log::warn!("SIGUSR1: ignored (betwixt acts on SIGHUP, SIGTERM, SIGINT and SIGUSR2)");
                    continue;
                }
                _ = self.usr2.recv() => {
                    if !self.upgrades {
                        log::warn!("SIGUSR2: ignored: there is no --upgrade-socket to upgrade through");
                    }
                    continue;
                }
            };
            if control.is_shutting_down() {
                log::warn!("{trigger}: shutting down; no reload");
                continue;
            }
            let control = control.clone();
            tokio::spawn(async move {
                // systemd's `reload` waits from RELOADING=1 until READY=1; a failed reload
                // leaves the old configuration serving, so READY=1 follows either way.
                crate::notify::reloading();
                let _ = control.reload_from_source(trigger).await;
                crate::notify::ready();
            });
        }
    }
}

/// Waits until no connection is open on any server, including servers removed before the
/// shutdown, or until `grace` has passed.
async fn drain(control: &Control, grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        if control.drained() {
            return;
        }
        if Instant::now() >= deadline {
            log::warn!("shutdown grace over: closing {} live connection(s)", control.draining_connections());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
