//! The command line's definition, clap derive and nothing else: the man page tool
//! (dist/man, `betwixt-man`) compiles this same file, so betwixt(1) lists exactly these options.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "betwixt",
    about = "Thread-per-core L4 load balancer, gobetween compatible",
    disable_version_flag = true
)]
pub struct Cli {
    /// Configuration file (TOML or JSON); with neither this nor a subcommand, betwixt prints this
    /// help, as gobetween does.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,

    /// Configuration format: toml or json (default: from the file name, else toml).
    #[arg(short = 'f', long = "format", global = true)]
    pub format: Option<String>,

    /// Write the process id to this file (an empty path: none, as in gobetween).
    #[arg(short = 'p', long = "pidfile", global = true, value_parser = any_path)]
    pub pidfile: Option<PathBuf>,

    /// Replace ${VAR} in the configuration with environment variables (also `-e=true`,
    /// `-e=false`, as Go's boolean flags take them).
    #[arg(
        short = 'e', long = "use-config-env-vars", global = true, value_name = "BOOL",
        num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true",
        hide_default_value = true, value_parser = go_bool, action = clap::ArgAction::Set
    )]
    pub env_vars: bool,

    /// Number of data-plane shards (default: `[runtime] shards`, else one per usable CPU; at most
    /// four per usable CPU).
    #[arg(long = "shards", global = true)]
    pub shards: Option<usize>,

    /// Refuse what gobetween tolerates: every configuration warning is an error
    /// (as `[runtime] strict = true`).
    #[arg(long = "strict", global = true)]
    pub strict: bool,

    /// Offer this process's listening sockets to a successor on this unix socket: on SIGUSR2
    /// betwixt starts its successor itself (see docs/upgrade.md).
    #[arg(long = "upgrade-socket", value_name = "PATH", global = true)]
    pub upgrade_socket: Option<PathBuf>,

    /// Take over from the betwixt offering its sockets on this unix socket: serve on them, then
    /// let it drain and exit (see docs/upgrade.md).
    #[arg(long = "upgrade-from", value_name = "PATH", global = true)]
    pub upgrade_from: Option<PathBuf>,

    /// Print the version number and exit (also `-v=true`).
    #[arg(
        short = 'v', long = "version", value_name = "BOOL",
        num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true",
        hide_default_value = true, value_parser = go_bool, action = clap::ArgAction::Set
    )]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start from a configuration file.
    FromFile {
        /// The configuration file (TOML or JSON).
        file: PathBuf,
    },
    /// Start from a configuration fetched over HTTP(S).
    FromUrl {
        /// Where to fetch the configuration: an http:// or https:// URL.
        url: String,
    },
    /// Start from a configuration held in Consul's key/value store.
    FromConsul {
        /// Consul's HTTP address (may start with http:// or https://).
        #[arg(value_name = "HOST:PORT")]
        host: String,
        /// The key holding the configuration.
        #[arg(short = 'k', long, default_value = "gobetween")]
        key: String,
        /// http or https.
        #[arg(short = 's', long, default_value = "http")]
        scheme: String,
    },
    /// Validate a configuration, print it with defaults applied, exit 0 (valid) or 1.
    /// Warnings go to stderr; with --strict they are errors.
    Check {
        /// The configuration file to check.
        file: PathBuf,
    },
}

/// A boolean flag's value (`--version=false`), read as Go's `strconv.ParseBool` reads it:
/// gobetween's flags are Go's, which take one after `=`.
fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true or false)")),
    }
}

/// A path, the empty one included (`-p ""`: no pidfile), where clap's own parser refuses it.
fn any_path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}
