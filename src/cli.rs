//! Command line, compatible with gobetween's: `betwixt -c FILE`, `from-file`, `from-url`,
//! `from-consul`, plus `check` and `--shards`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "betwixt",
    about = "Thread-per-core L4 load balancer, gobetween compatible",
    disable_version_flag = true
)]
pub struct Cli {
    /// Configuration file (TOML or JSON).
    #[arg(short = 'c', long = "config", global = true, default_value = "config/betwixt.toml")]
    pub config: PathBuf,

    /// Configuration format: toml or json (default: from the file name, else toml).
    #[arg(short = 'f', long = "format", global = true)]
    pub format: Option<String>,

    /// Write the process id to this file.
    #[arg(short = 'p', long = "pidfile", global = true)]
    pub pidfile: Option<PathBuf>,

    /// Replace ${VAR} in the configuration with environment variables.
    #[arg(short = 'e', long = "use-config-env-vars", global = true)]
    pub env_vars: bool,

    /// Number of data-plane shards (default: `[runtime] shards`, else one per usable CPU; at most
    /// four per usable CPU).
    #[arg(long = "shards", global = true)]
    pub shards: Option<usize>,

    /// Refuse what gobetween tolerates: every configuration warning is an error
    /// (as `[runtime] strict = true`).
    #[arg(long = "strict", global = true)]
    pub strict: bool,

    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start from a configuration file.
    FromFile { file: PathBuf },
    /// Start from a configuration fetched over HTTP(S).
    FromUrl { url: String },
    /// Start from a configuration held in Consul's key/value store.
    FromConsul {
        host: String,
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "http")]
        scheme: String,
    },
    /// Validate a configuration, print it with defaults applied, exit 0 (valid) or 1.
    /// Warnings go to stderr; with --strict they are errors.
    Check { file: PathBuf },
}
