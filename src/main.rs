//! betwixt: a thread-per-core L4 load balancer. `main` parses the command line and the
//! configuration, starts the shards, then runs the control plane on this thread.

mod buffers;
mod cli;
mod connection;
mod direction;
mod idle;
mod limits;
mod pipes;
mod run;
mod shard;
mod source;
mod transfer;

use betwixt_control::config::{self, Format};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if cli.version {
        println!("betwixt {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let loaded = match source::load(&cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(cli::Command::Check { .. }) = cli.command {
        return check(&cli, &loaded);
    }
    if loaded.strict(&cli) && !loaded.warnings.is_empty() {
        report(&loaded.warnings, true);
        return ExitCode::FAILURE;
    }
    if let Err(e) = config::refuse_unsupported(&loaded.config) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    match run::run(&cli, loaded) {
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

/// `betwixt check FILE`: prints the configuration as betwixt will run it, and every warning.
fn check(cli: &cli::Cli, loaded: &source::Loaded) -> ExitCode {
    // Print in the format the file was read in.
    let file = match &cli.command {
        Some(cli::Command::Check { file }) => file.as_path(),
        _ => cli.config.as_path(),
    };
    let format = cli.format.as_deref().and_then(|f| Format::parse(f).ok()).unwrap_or(Format::from_path(file));
    let strict = loaded.strict(cli);
    report(&loaded.warnings, strict);
    print!("{}", config::render(&loaded.config.normalized(), format));
    if strict && !loaded.warnings.is_empty() {
        return ExitCode::FAILURE;
    }
    match config::refuse_unsupported(&loaded.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
