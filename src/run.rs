//! Process lifetime: start the shards, run the control plane, wait for a signal, drain, exit.

use crate::cli::Cli;
use crate::shard;
use crate::source::Loaded;
use betwixt_control::control::Control;
use betwixt_control::plane::Plane;
use betwixt_control::server::ServerHandle;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Live connections may finish for this long after SIGTERM/SIGINT unless `[runtime]` says otherwise.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The CPUs this process may run on (its inherited affinity mask, e.g. from `taskset`).
fn usable_cpus() -> Vec<usize> {
    core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect()
}

pub fn run(cli: &Cli, loaded: Loaded) -> Result<(), String> {
    let config = loaded.config;
    betwixt_control::logging::init(config.logging.as_ref())?;
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    let cpus = usable_cpus();
    let runtime = config.runtime.clone().unwrap_or_default();
    let shards = cli.shards.or(runtime.shards).unwrap_or(cpus.len().max(1));
    if shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    let grace = runtime.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0);
    let splice = runtime.splice.unwrap_or(true);

    if let Some(files) = crate::limits::raise_soft_limits() {
        log::debug!("open-file limit {files}: room for about {} proxied connections", files / 2);
    }
    let plane = Plane::new(shards);
    for (id, inbox) in plane.inboxes.iter().enumerate() {
        let cpu = (!cpus.is_empty()).then(|| cpus[id % cpus.len()]);
        shard::spawn(id, cpu, inbox.clone(), splice).map_err(|e| format!("cannot start shard {id}: {e}"))?;
    }
    log::info!("betwixt {} starting {shards} shard(s) on cpus {cpus:?}", env!("CARGO_PKG_VERSION"));

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start control runtime: {e}"))?;
    tokio.block_on(async {
        let control = Control::new(plane, &config, loaded.source);
        for (name, server) in &config.servers {
            // Its warnings were logged above, with their lines.
            control.add_server(name, server.clone()).map_err(|e| format!("server {name}: {e}"))?;
        }
        betwixt_control::rates::spawn_sampler(control.clone());
        betwixt_control::api::start(&control)?;
        betwixt_control::metrics::start(&control)?;
        if let Some(path) = &cli.pidfile {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .map_err(|e| format!("cannot write pidfile {}: {e}", path.display()))?;
        }
        let signal = wait_for_signal().await;
        log::info!("{signal}: no longer accepting; waiting up to {grace:?} for live connections");
        let handles = control.stop_accepting();
        drain(&handles, grace).await;
        Ok::<(), String>(())
    })?;
    if let Some(path) = &cli.pidfile {
        let _ = std::fs::remove_file(path);
    }
    log::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers we can still run; we just cannot drain on shutdown.
        std::future::pending::<()>().await;
        unreachable!()
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Waits until no connection is open anywhere, or until `grace` has passed.
async fn drain(handles: &[Arc<ServerHandle>], grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let active: u64 = handles.iter().map(|h| h.counters.totals().active).sum();
        if active == 0 {
            return;
        }
        if Instant::now() >= deadline {
            log::warn!("shutdown grace over: closing {active} live connection(s)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
