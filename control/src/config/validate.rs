//! Checks that need more than one key at a time, or a value's meaning. Each error names its key.

use super::error::ConfigError;
use super::model::{Config, DiscoveryKind, HealthcheckKind, Server};
use crate::backend::split_host_port;

pub fn validate(config: &Config) -> Result<(), ConfigError> {
    for (name, server) in &config.servers {
        validate_server(name, server)?;
    }
    if let Some(runtime) = &config.runtime {
        if runtime.shards == Some(0) {
            return Err(ConfigError::at_key("runtime.shards", "must be at least 1"));
        }
    }
    Ok(())
}

pub fn validate_server(name: &str, server: &Server) -> Result<(), ConfigError> {
    let key = |field: &str| format!("servers.{name}.{field}");
    if name.is_empty() {
        return Err(ConfigError::at_key("servers", "server name must not be empty"));
    }
    split_host_port(&server.bind).map_err(|e| ConfigError::at_key(key("bind"), e))?;

    let discovery = &server.discovery;
    if discovery.kind == DiscoveryKind::Static && discovery.static_list.is_none() {
        return Err(ConfigError::at_key(
            key("discovery.static_list"),
            "required when discovery kind is \"static\"",
        ));
    }
    if let Some(policy) = &discovery.failpolicy {
        if policy != "keeplast" && policy != "setempty" {
            return Err(ConfigError::at_key(
                key("discovery.failpolicy"),
                format!("unknown fail policy {policy:?} (use keeplast or setempty)"),
            ));
        }
    }

    if let Some(check) = &server.healthcheck {
        if check.kind != HealthcheckKind::None {
            if check.interval.is_some_and(|i| i.0.is_zero()) {
                return Err(ConfigError::at_key(key("healthcheck.interval"), "must be greater than 0"));
            }
            for (field, value) in [("fails", check.fails), ("passes", check.passes)] {
                if value == Some(0) {
                    return Err(ConfigError::at_key(
                        key(&format!("healthcheck.{field}")),
                        "must be at least 1",
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_config, Format};

    fn server(extra: &str) -> String {
        format!("[servers.s]\nbind = \"127.0.0.1:1\"\n{extra}\n[servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n")
    }

    #[test]
    fn bad_bind_is_named() {
        let e = parse_config(&server("").replace("127.0.0.1:1", "nowhere"), Format::Toml).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("servers.s.bind"));
        assert_eq!(e.position, Some((2, 1)));
    }

    #[test]
    fn static_needs_list() {
        let text = "[servers.s]\nbind = \":1\"\n[servers.s.discovery]\nkind = \"static\"\n";
        let e = parse_config(text, Format::Toml).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("servers.s.discovery.static_list"));
    }
}
