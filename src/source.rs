//! Where the configuration comes from: a file, a URL, or a Consul key. `-e` substitution is
//! done here for all three; its warnings go to stderr, since logging is set up later, from the
//! configuration itself.

use crate::cli::{Cli, Command};
use crate::consul;
use betwixt_control::config::{self, Config, ConfigError, Format};
use betwixt_control::control::ConfigSource;
use std::path::Path;
use std::time::Duration;

/// A configuration server that has not answered by then fails the start instead of hanging it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Loaded {
    pub config: Config,
    pub source: ConfigSource,
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

/// A warning about the configuration, worded like its errors.
fn warn(warning: &ConfigError) {
    let mut at = String::new();
    if let Some(file) = &warning.file {
        at.push_str(&format!(" in {}", file.display()));
    }
    if let Some((line, column)) = warning.position {
        at.push_str(&format!(" at line {line}, column {column}"));
    }
    eprintln!("betwixt: config warning{at}: {}", warning.message);
}

fn parse_text(cli: &Cli, text: String, format: Format, origin: &Path) -> Result<Config, ConfigError> {
    let text = if cli.env_vars {
        let (text, warnings) = config::substitute_env(&text);
        warnings.into_iter().for_each(|w| warn(&w.in_file(origin)));
        text
    } else {
        text
    };
    config::parse_config(&text, format).map_err(|e| e.in_file(origin))
}

pub fn load(cli: &Cli) -> Result<Loaded, ConfigError> {
    match &cli.command {
        Some(Command::FromUrl { url }) => {
            let format = format_for(cli, url)?;
            let config = parse_text(cli, fetch(url, &[])?, format, Path::new(url))?;
            Ok(Loaded { config, source: ConfigSource { kind: "url".into(), path: url.clone() } })
        }
        Some(Command::FromConsul { host, key, scheme }) => {
            let read = consul::kv_read(host, key, scheme).map_err(ConfigError::new)?;
            let format = format_for(cli, key)?;
            let config = parse_text(cli, fetch(&read.url, &read.headers)?, format, Path::new(&read.url))?;
            Ok(Loaded {
                config,
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
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(format!("cannot read file: {e}")).in_file(file))?;
    let config = parse_text(cli, text, format, file)?;
    let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    Ok(Loaded { config, source: ConfigSource { kind: "file".into(), path: path.display().to_string() } })
}
