//! Where the configuration comes from: a file, a URL, or a Consul key.

use crate::cli::{Cli, Command};
use betwixt_control::config::{self, Config, ConfigError, ConfigWarning, Format};
use betwixt_control::control::ConfigSource;
use std::path::Path;

pub struct Loaded {
    pub config: Config,
    /// What gobetween tolerates and betwixt read loosely, with file, line and key.
    pub warnings: Vec<ConfigWarning>,
    pub source: ConfigSource,
}

fn format_for(cli: &Cli, name: &str) -> Result<Format, ConfigError> {
    match &cli.format {
        Some(f) => Format::parse(f).map_err(ConfigError::new),
        None => Ok(Format::from_path(Path::new(name))),
    }
}

fn fetch(url: &str) -> Result<String, ConfigError> {
    let response = ureq::get(url).call().map_err(|e| ConfigError::new(format!("cannot fetch {url}: {e}")))?;
    response.into_body().read_to_string().map_err(|e| ConfigError::new(format!("cannot read {url}: {e}")))
}

fn parse_fetched(
    cli: &Cli,
    text: String,
    format: Format,
    origin: &str,
) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let text = if cli.env_vars { config::substitute_env(&text)? } else { text };
    let (config, mut warnings) = config::parse_config(&text, format).map_err(|mut e| {
        e.file = Some(origin.into());
        e
    })?;
    for warning in &mut warnings {
        warning.file = Some(origin.into());
    }
    Ok((config, warnings))
}

pub fn load(cli: &Cli) -> Result<Loaded, ConfigError> {
    match &cli.command {
        Some(Command::FromUrl { url }) => {
            let format = format_for(cli, url)?;
            let (config, warnings) = parse_fetched(cli, fetch(url)?, format, url)?;
            Ok(Loaded { config, warnings, source: ConfigSource { kind: "url".into(), path: url.clone() } })
        }
        Some(Command::FromConsul { host, key, scheme }) => {
            if scheme != "http" && scheme != "https" {
                return Err(ConfigError::new(format!(
                    "unknown consul scheme {scheme:?} (use http or https)"
                )));
            }
            let url = format!("{scheme}://{host}/v1/kv/{}?raw", key.trim_start_matches('/'));
            let format = format_for(cli, key)?;
            let (config, warnings) = parse_fetched(cli, fetch(&url)?, format, &url)?;
            Ok(Loaded {
                config,
                warnings,
                source: ConfigSource { kind: "consul".into(), path: format!("{host}/{key}") },
            })
        }
        Some(Command::FromFile { file }) | Some(Command::Check { file }) => load_file(cli, file),
        None => load_file(cli, &cli.config),
    }
}

fn load_file(cli: &Cli, file: &Path) -> Result<Loaded, ConfigError> {
    let format = format_for(cli, &file.to_string_lossy())?;
    let (config, warnings) = config::load_file(file, Some(format), cli.env_vars)?;
    let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let source = ConfigSource { kind: "file".into(), path: path.display().to_string() };
    Ok(Loaded { config, warnings, source })
}

impl Loaded {
    /// Strict mode, from `--strict` or `[runtime] strict = true`: warnings are errors.
    pub fn strict(&self, cli: &Cli) -> bool {
        cli.strict || self.config.runtime.as_ref().and_then(|r| r.strict).unwrap_or(false)
    }
}
