//! betwixt: a thread-per-core L4 load balancer. `main` parses the command line and the
//! configuration, starts the shards, then runs the control plane on this thread.

mod abort;
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
        return check(&cli, &loaded.config);
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

/// `betwixt check FILE`: prints the configuration as betwixt will run it.
fn check(cli: &cli::Cli, config: &config::Config) -> ExitCode {
    // Print in the format the file was read in.
    let file = match &cli.command {
        Some(cli::Command::Check { file }) => file.as_path(),
        _ => cli.config.as_path(),
    };
    let format = cli.format.as_deref().and_then(|f| Format::parse(f).ok()).unwrap_or(Format::from_path(file));
    print!("{}", config::render(&config.normalized(), format));
    match config::refuse_unsupported(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
