//! Where the configuration comes from: a file, a URL, or a Consul key. `-e` substitution is
//! done for all three; its warnings join the configuration's own (see `Loaded::warnings`).

use crate::cli::{Cli, Command};
use crate::consul;
use crate::fetch::{Client, Get, Tls};
use betwixt_control::config::{self, Config, ConfigError, ConfigWarning, Format};
use betwixt_control::control::ConfigSource;
use betwixt_control::reload::ConfigLoader;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration server that has not answered by then fails the start instead of hanging it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Loaded {
    pub config: Config,
    /// What gobetween tolerates and betwixt read loosely, with file, line and key. `check`
    /// prints them; a start logs them once logging is set up (or refuses them, in strict mode).
    pub warnings: Vec<ConfigWarning>,
    pub source: ConfigSource,
    /// How to read it again (reload, watch).
    pub reading: Reading,
}

impl Loaded {
    /// Strict mode, from `--strict` or `[runtime] strict = true`: warnings are errors.
    pub fn strict(&self, cli: &Cli) -> bool {
        cli.strict || self.config.runtime.as_ref().and_then(|r| r.strict).unwrap_or(false)
    }
}

/// Where the configuration is read from, kept to read it again on a reload.
#[derive(Clone, Debug)]
pub enum Origin {
    File(PathBuf),
    Url(String),
    Consul { host: String, key: String, scheme: String },
}

/// How the text is read: `-f` and `-e`, as given on the command line.
#[derive(Clone, Debug)]
pub struct Reading {
    pub origin: Origin,
    format: Option<String>,
    env_vars: bool,
}

impl Reading {
    pub fn of(cli: &Cli) -> Result<Reading, ConfigError> {
        let origin = match &cli.command {
            Some(Command::FromUrl { url }) => Origin::Url(url.clone()),
            Some(Command::FromConsul { host, key, scheme }) => {
                Origin::Consul { host: host.clone(), key: key.clone(), scheme: scheme.clone() }
            }
            Some(Command::FromFile { file }) | Some(Command::Check { file }) => Origin::File(file.clone()),
            None => match &cli.config {
                Some(file) => Origin::File(file.clone()),
                None => return Err(ConfigError::new("no configuration: give -c FILE or a subcommand")),
            },
        };
        Ok(Reading { origin, format: cli.format.clone(), env_vars: cli.env_vars })
    }

    /// The format given with `-f`, else the one the name (path, URL or key) suggests.
    pub fn format(&self) -> Result<Format, ConfigError> {
        let name = match &self.origin {
            Origin::File(file) => file.to_string_lossy().into_owned(),
            Origin::Url(url) => url.clone(),
            Origin::Consul { key, .. } => key.clone(),
        };
        match &self.format {
            Some(f) => Format::parse(f).map_err(ConfigError::new),
            None => Ok(Format::from_path(Path::new(&name))),
        }
    }

    /// `GET /` shows the path as it was given, as gobetween does.
    pub fn source(&self) -> ConfigSource {
        let (kind, path) = match &self.origin {
            Origin::File(file) => ("file", file.display().to_string()),
            Origin::Url(url) => ("url", url.clone()),
            Origin::Consul { host, key, .. } => ("consul", format!("{host}/{key}")),
        };
        ConfigSource { kind: kind.into(), path }
    }

    /// The request that reads the source over HTTP (`None` for a file), with what the
    /// environment it read said that gobetween would only warn about.
    pub fn request(&self) -> Result<Option<consul::KvRead>, ConfigError> {
        match &self.origin {
            Origin::File(_) => Ok(None),
            Origin::Url(url) => Ok(Some(consul::KvRead {
                get: Get { url: url.clone(), headers: Vec::new(), tls: Tls::default(), unix: None },
                warnings: Vec::new(),
            })),
            Origin::Consul { host, key, scheme } => {
                consul::kv_read(host, key, scheme).map(Some).map_err(ConfigError::new)
            }
        }
    }

    /// Reads and parses the source: blocking, bounded by `FETCH_TIMEOUT` for the network.
    pub fn read(&self) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let format = self.format()?;
        match (&self.origin, self.request()?) {
            (_, Some(read)) => {
                let text = fetch(&read.get)?;
                let (config, mut warnings) = self.parse_fetched(&text, format, &read.get.url)?;
                warnings.extend(read.warnings.into_iter().map(|(key, w)| ConfigWarning::at_key(key, w)));
                Ok((config, warnings))
            }
            (Origin::File(file), None) => config::load_file(file, Some(format), self.env_vars),
            (_, None) => unreachable!("only a file has no request"),
        }
    }

    /// Parses fetched text; errors and warnings name `origin` (the URL).
    fn parse_fetched(
        &self,
        text: &str,
        format: Format,
        origin: &str,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let origin = Path::new(origin);
        let (config, warnings) =
            config::parse_text(text, format, self.env_vars).map_err(|e| e.in_file(origin))?;
        Ok((config, warnings.into_iter().map(|w| w.in_file(origin)).collect()))
    }
}

/// A reload reads the source again.
impl ConfigLoader for Reading {
    fn load(&self) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        self.read()
    }
}

fn fetch(get: &Get) -> Result<String, ConfigError> {
    let url = &get.url;
    let response = Client::new(get, FETCH_TIMEOUT)
        .and_then(|client| client.get(url, &get.headers))
        .map_err(ConfigError::new)?;
    response.into_body().read_to_string().map_err(|e| ConfigError::new(format!("cannot read {url}: {e}")))
}

pub fn load(cli: &Cli) -> Result<Loaded, ConfigError> {
    let reading = Reading::of(cli)?;
    let (config, warnings) = reading.read()?;
    Ok(Loaded { config, warnings, source: reading.source(), reading })
}
