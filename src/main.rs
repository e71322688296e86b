//! betwixt: a thread-per-core L4 load balancer. `main` parses the command line and the
//! configuration, starts the shards, then runs the control plane on this thread.

mod abort;
mod access_log;
mod buffers;
mod cli;
mod client_hello;
mod connection;
mod consul;
mod direction;
mod fetch;
mod idle;
mod kernel;
mod limits;
mod notify;
mod orphan;
mod pidfile;
mod pipes;
mod proxy_protocol;
mod run;
mod shard;
mod sock;
mod source;
mod tls;
mod transfer;
mod udp;
mod upgrade;
mod wakers;
mod watch;

use betwixt_control::config::{self, Format};
use clap::{CommandFactory, Parser};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::arguments() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("betwixt: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cli = cli::Cli::parse_from(args);
    // `-p ""` writes no pidfile, as gobetween reads it (a template's unset variable).
    cli.pidfile = cli.pidfile.filter(|path| !path.as_os_str().is_empty());
    if cli.version {
        // The bare version number, as `gobetween -v` prints its own.
        println!("{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if cli.command.is_none() && cli.config.is_none() {
        // Nothing to run: help, and success, as gobetween answers.
        let _ = cli::Cli::command().print_help();
        return ExitCode::SUCCESS;
    }
    let checking = matches!(cli.command, Some(cli::Command::Check { .. }));
    let upgrade_from = upgrade::upgrade_from(cli.upgrade_from.as_deref());
    // Claimed before the configuration is read, as gobetween does, and released on every exit.
    // A successor claims it once it has taken over, while the pidfile still names the old one.
    let _pidfile = match &cli.pidfile {
        Some(path) if !checking && upgrade_from.is_none() => match pidfile::Pidfile::claim(path) {
            Ok(claimed) => Some(claimed),
            Err(e) => {
                eprintln!("betwixt: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let loaded = match source::load(&cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(cli::Command::Check { file }) = &cli.command {
        return check(cli.format.as_deref(), file, &loaded, loaded.strict(&cli));
    }
    if loaded.strict(&cli) && !loaded.warnings.is_empty() {
        report(&loaded.warnings, true);
        return ExitCode::FAILURE;
    }
    if let Err(e) = config::refuse_unsupported(&loaded.config) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    match run::run(&cli, loaded, upgrade_from) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("betwixt: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints configuration warnings to stderr, as errors in strict mode.
fn report(warnings: &[config::ConfigWarning], strict: bool) {
    for warning in warnings {
        if strict {
            eprintln!("{}", warning.to_error());
        } else {
            eprintln!("{warning}");
        }
    }
}

/// `betwixt check FILE`: every warning (which fail the check in strict mode) and error on
/// stderr; when none fails it, the configuration as betwixt will run it on stdout, in the
/// format the file was read in. A failed check prints nothing on stdout, so that its output
/// is never taken for a configuration that passed.
fn check(format: Option<&str>, file: &Path, loaded: &source::Loaded, strict: bool) -> ExitCode {
    let format = format.and_then(|f| Format::parse(f).ok()).unwrap_or(Format::from_path(file));
    report(&loaded.warnings, strict);
    if strict && !loaded.warnings.is_empty() {
        return ExitCode::FAILURE;
    }
    if let Err(e) = config::refuse_unsupported(&loaded.config) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    // What a start reads (certificates, keys, CA bundles, the ACME directory, the access log's
    // output), failing as it would.
    if let Err(e) = betwixt_control::control::Control::check_start(&loaded.config) {
        eprintln!("betwixt: {e}");
        return ExitCode::FAILURE;
    }
    print!("{}", config::render(&loaded.config.normalized(), format));
    ExitCode::SUCCESS
}
