//! Where the configuration comes from: a file, a URL, or a Consul key. `-e` substitution is
//! done for all three; its warnings join the configuration's own (see `Loaded::warnings`).

use crate::cli::{Cli, Command};
use crate::consul;
use betwixt_control::config::{self, Config, ConfigError, ConfigWarning, Format};
use betwixt_control::control::ConfigSource;
use std::path::Path;
use std::time::Duration;

/// A configuration server that has not answered by then fails the start instead of hanging it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Loaded {
    pub config: Config,
    /// What gobetween tolerates and betwixt read loosely, with file, line and key. `check`
    /// prints them; a start logs them once logging is set up (or refuses them, in strict mode).
    pub warnings: Vec<ConfigWarning>,
    pub source: ConfigSource,
}

impl Loaded {
    /// Strict mode, from `--strict` or `[runtime] strict = true`: warnings are errors.
    pub fn strict(&self, cli: &Cli) -> bool {
        cli.strict || self.config.runtime.as_ref().and_then(|r| r.strict).unwrap_or(false)
    }
}

fn format_for(cli: &Cli, name: &str) -> Result<Format, ConfigError> {
    match &cli.format {
        Some(f) => Format::parse(f).map_err(ConfigError::new),
        None => Ok(Format::from_path(Path::new(name))),
    }
}

fn fetch(url: &str, headers: &[(&str, String)]) -> Result<String, ConfigError> {
    let agent = ureq::Agent::config_builder().timeout_global(Some(FETCH_TIMEOUT)).build().new_agent();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.call().map_err(|e| ConfigError::new(format!("cannot fetch {url}: {e}")))?;
    response.into_body().read_to_string().map_err(|e| ConfigError::new(format!("cannot read {url}: {e}")))
}

/// Parses fetched text; errors and warnings name `origin` (the URL).
fn parse_fetched(
    cli: &Cli,
    text: &str,
    format: Format,
    origin: &str,
) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let origin = Path::new(origin);
    let (config, warnings) = config::parse_text(text, format, cli.env_vars).map_err(|e| e.in_file(origin))?;
    Ok((config, warnings.into_iter().map(|w| w.in_file(origin)).collect()))
}

pub fn load(cli: &Cli) -> Result<Loaded, ConfigError> {
    match &cli.command {
        Some(Command::FromUrl { url }) => {
            let format = format_for(cli, url)?;
            let (config, warnings) = parse_fetched(cli, &fetch(url, &[])?, format, url)?;
            Ok(Loaded { config, warnings, source: ConfigSource { kind: "url".into(), path: url.clone() } })
        }
        Some(Command::FromConsul { host, key, scheme }) => {
            let read = consul::kv_read(host, key, scheme).map_err(ConfigError::new)?;
            let format = format_for(cli, key)?;
            let (config, warnings) =
                parse_fetched(cli, &fetch(&read.url, &read.headers)?, format, &read.url)?;
            Ok(Loaded {
                config,
                warnings,
                source: ConfigSource { kind: "consul".into(), path: format!("{host}/{key}") },
            })
        }
        Some(Command::FromFile { file }) | Some(Command::Check { file }) => load_file(cli, file),
        None => match &cli.config {
            Some(file) => load_file(cli, file),
            None => Err(ConfigError::new("no configuration: give -c FILE or a subcommand")),
        },
    }
}

fn load_file(cli: &Cli, file: &Path) -> Result<Loaded, ConfigError> {
    let format = format_for(cli, &file.to_string_lossy())?;
    let (config, warnings) = config::load_file(file, Some(format), cli.env_vars)?;
    // `GET /` shows the path as it was given, as gobetween does.
    let source = ConfigSource { kind: "file".into(), path: file.display().to_string() };
    Ok(Loaded { config, warnings, source })
}
