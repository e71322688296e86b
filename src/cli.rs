//! Command line, compatible with gobetween's: `betwixt -c FILE`, `from-file`, `from-url`,
//! `from-consul`, the `GOBETWEEN` environment variable, plus `check` and `--shards`.

use betwixt_control::config::depth::check_json_depth;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
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

    /// Offer this process's listening sockets to a successor on this unix socket: on SIGUSR2
    /// betwixt starts its successor itself (see docs/upgrade.md).
    #[arg(long = "upgrade-socket", value_name = "PATH", global = true)]
    pub upgrade_socket: Option<PathBuf>,

    /// Take over from the betwixt offering its sockets on this unix socket: serve on them, then
    /// let it drain and exit (see docs/upgrade.md).
    #[arg(long = "upgrade-from", value_name = "PATH", global = true)]
    pub upgrade_from: Option<PathBuf>,

    /// Print the version number and exit.
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
    Check { file: PathBuf },
}

/// The arguments to parse: the command line, or, as in gobetween, a JSON array of strings in the
/// `GOBETWEEN` environment variable (for containers), never both.
pub fn arguments() -> Result<Vec<OsString>, String> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let Some(env) = std::env::var_os("GOBETWEEN").filter(|v| !v.is_empty()) else {
        return Ok(args);
    };
    if args.len() > 1 {
        return Err("passed GOBETWEEN env var and command-line arguments: only one allowed".into());
    }
    let env = env.to_str().ok_or("the GOBETWEEN env var is not valid UTF-8")?;
    let not_a_list = |e: &dyn std::fmt::Display| {
        format!("error converting GOBETWEEN env var to parameters (a JSON array of strings): {e}")
    };
    // The parser recurses once per level: bound the depth before it runs.
    check_json_depth(env).map_err(|e| not_a_list(&e.message))?;
    // `null` is an empty list, as Go decodes it.
    let list: Option<Vec<String>> = sonic_rs::from_str(env).map_err(|e| not_a_list(&e))?;
    let list = list.unwrap_or_default();
    eprintln!("betwixt: using parameters from the GOBETWEEN env var: {list:?}");
    args.truncate(1);
    if args.is_empty() {
        args.push("betwixt".into());
    }
    args.extend(list.into_iter().map(OsString::from));
    Ok(args)
}
