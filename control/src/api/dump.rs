//! `GET /dump`: the running configuration as gobetween dumps it — the global sections as the
//! configuration gave them, in gobetween's order and with all of gobetween's fields, and every
//! running server (including those created through the API) as `GET /servers` shows it. JSON
//! writes a section left out as `null`; TOML leaves it out. Feeding a dump back to betwixt
//! starts the same servers.
//!
//! gobetween fills `[acme]`'s three keys with their defaults before it dumps (the section is
//! shared with the running configuration), and writes `[profiler]`'s `bind` when empty; so
//! does betwixt.
//!
//! One difference, kept on purpose: the basic-auth password is written as `MASKED` (a dump
//! travels further than the file it came from).

use super::prepared::Prepared;
use super::reply::to_json;
use crate::config::model::{AccessLog, Acme, Api, CertPair, ConnectionOptions, Logging, Metrics, Runtime};
use crate::config::Server;
use crate::config::{Config, Format, GoDuration};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What `/dump` writes instead of the basic-auth password. It still parses, and says plainly
/// that it is not the password.
pub const MASKED: &str = "********";

#[derive(Serialize)]
struct Dump<'a> {
    logging: LoggingView<'a>,
    api: ApiView<'a>,
    metrics: MetricsView<'a>,
    defaults: DefaultsView<'a>,
    acme: Option<AcmeView<'a>>,
    profiler: Option<ProfilerView<'a>>,
    /// betwixt's own section, written only when the configuration has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'a Runtime>,
    /// betwixt's own section, written only when the configuration has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log: Option<&'a AccessLog>,
    servers: BTreeMap<&'a str, Prepared<'a>>,
}

#[derive(Serialize)]
struct LoggingView<'a> {
    level: &'a str,
    output: &'a str,
    format: &'a str,
}

#[derive(Serialize)]
struct ApiView<'a> {
    enabled: bool,
    /// Left out when not set: betwixt's default address differs from what an empty one means.
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<&'a str>,
    basic_auth: Option<BasicAuthView<'a>>,
    tls: Option<&'a CertPair>,
    cors: bool,
    /// betwixt's own keys, written only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_exec: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_client: Option<u32>,
}

#[derive(Serialize)]
struct BasicAuthView<'a> {
    login: &'a str,
    password: &'static str,
}

#[derive(Serialize)]
struct MetricsView<'a> {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<&'a str>,
}

/// `[acme]` with gobetween's defaults filled in, and betwixt's own keys as written.
#[derive(Serialize)]
struct AcmeView<'a> {
    challenge: &'a str,
    http_bind: &'a str,
    cache_dir: &'a str,
    #[serde(flatten)]
    betwixt: Acme,
}

impl<'a> AcmeView<'a> {
    fn of(acme: &'a Acme) -> AcmeView<'a> {
        let or = |value: &'a Option<String>, default: &'a str| {
            value.as_deref().filter(|v| !v.is_empty()).unwrap_or(default)
        };
        AcmeView {
            challenge: or(&acme.challenge, crate::acme::DEFAULT_CHALLENGE),
            http_bind: or(&acme.http_bind, crate::acme::DEFAULT_HTTP_BIND),
            cache_dir: or(&acme.cache_dir, crate::acme::DEFAULT_CACHE_DIR),
            betwixt: Acme { challenge: None, http_bind: None, cache_dir: None, ..acme.clone() },
        }
    }
}

#[derive(Serialize)]
struct ProfilerView<'a> {
    enabled: bool,
    bind: &'a str,
}

/// `[defaults]` as written: a key left out is `null`, not its default.
#[derive(Serialize)]
struct DefaultsView<'a> {
    max_connections: Option<u32>,
    client_idle_timeout: Option<&'a str>,
    backend_idle_timeout: Option<&'a str>,
    backend_connection_timeout: Option<&'a str>,
}

impl<'a> Dump<'a> {
    fn of(base: &'a Config, servers: &'a [(String, Arc<Server>)]) -> Dump<'a> {
        let logging = base.logging.as_ref();
        let text = |field: fn(&'a Logging) -> &'a Option<String>| {
            logging.and_then(|l| field(l).as_deref()).unwrap_or("")
        };
        let api = base.api.as_ref();
        let metrics = base.metrics.as_ref();
        let defaults = base.defaults.as_ref();
        let duration =
            |field: fn(&'a ConnectionOptions) -> &'a Option<crate::config::loose::LooseDuration>| {
                defaults.and_then(|d| field(d).as_ref()).map(|d| d.0.as_str())
            };
        Dump {
            logging: LoggingView {
                level: text(|l| &l.level),
                output: text(|l| &l.output),
                format: text(|l| &l.format),
            },
            api: ApiView::of(api),
            metrics: MetricsView {
                enabled: metrics.is_some_and(|m: &Metrics| m.enabled),
                bind: metrics.and_then(|m| m.bind.as_deref()),
            },
            defaults: DefaultsView {
                max_connections: defaults.and_then(|d| d.max_connections),
                client_idle_timeout: duration(|d| &d.client_idle_timeout),
                backend_idle_timeout: duration(|d| &d.backend_idle_timeout),
                backend_connection_timeout: duration(|d| &d.backend_connection_timeout),
            },
            acme: base.acme.as_ref().map(AcmeView::of),
            profiler: base
                .profiler
                .as_ref()
                .map(|p| ProfilerView { enabled: p.enabled, bind: p.bind.as_deref().unwrap_or("") }),
            runtime: base.runtime.as_ref(),
            access_log: base.access_log.as_ref(),
            servers: servers
                .iter()
                .map(|(name, config)| (name.as_str(), Prepared::of(config, defaults)))
                .collect(),
        }
    }
}

impl<'a> ApiView<'a> {
    fn of(api: Option<&'a Api>) -> ApiView<'a> {
        let Some(api) = api else {
            return ApiView {
                enabled: false,
                bind: None,
                basic_auth: None,
                tls: None,
                cors: false,
                allow_exec: None,
                request_timeout: None,
                max_connections: None,
                max_connections_per_client: None,
            };
        };
        ApiView {
            enabled: api.enabled,
            bind: api.bind.as_deref(),
            basic_auth: api
                .basic_auth
                .as_ref()
                .map(|auth| BasicAuthView { login: &auth.login, password: MASKED }),
            tls: api.tls.as_ref(),
            cors: api.cors,
            allow_exec: api.allow_exec,
            request_timeout: api.request_timeout,
            max_connections: api.max_connections,
            max_connections_per_client: api.max_connections_per_client,
        }
    }
}

/// The dump of `base` (the configuration without its servers) and the running `servers`
/// (name and section).
pub fn render(base: &Config, servers: &[(String, Arc<Server>)], format: Format) -> Result<String, String> {
    let dump = Dump::of(base, servers);
    match format {
        Format::Json => to_json(&dump).map_err(|e| e.to_string()),
        Format::Toml => toml::to_string_pretty(&dump).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;
    use sonic_rs::JsonValueTrait;

    fn dumped(text: &str) -> sonic_rs::Value {
        let (config, _) = parse_config(text, Format::Toml).unwrap();
        sonic_rs::from_str(&render(&config, &[], Format::Json).unwrap()).unwrap()
    }

    #[test]
    fn acme_and_profiler_as_gobetween_dumps_them() {
        let dump = dumped(
            "[acme]\ncache_dir = \"/var/lib/lb\"\nemail = \"ops@example.com\"\n[profiler]\nenabled = false\n",
        );
        assert_eq!(
            dump["acme"].to_string(),
            r#"{"challenge":"http","http_bind":"0.0.0.0:80","cache_dir":"/var/lib/lb","email":"ops@example.com"}"#
        );
        assert_eq!(dump["profiler"].to_string(), r#"{"enabled":false,"bind":""}"#);
        // It reads back, with the same meaning.
        let (config, _) = parse_config(
            "[acme]\ncache_dir = \"/var/lib/lb\"\nemail = \"ops@example.com\"\n[profiler]\nenabled = false\n",
            Format::Toml,
        )
        .unwrap();
        let again = render(&config, &[], Format::Toml).unwrap();
        let (read, warnings) = parse_config(&again, Format::Toml).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(read.acme.unwrap().cache_dir.as_deref(), Some("/var/lib/lb"));
        let dump = dumped("[acme]\nchallenge = \"tls-alpn\"\nhttp_bind = \":8080\"\n");
        assert_eq!(dump["acme"]["challenge"].as_str(), Some("tls-alpn"));
        assert_eq!(dump["acme"]["http_bind"].as_str(), Some(":8080"));
        assert_eq!(dump["acme"]["cache_dir"].as_str(), Some("/tmp"));
        // Sections left out stay out (`null` in JSON).
        let dump = dumped("");
        assert!(dump["acme"].is_null() && dump["profiler"].is_null());
    }
}
