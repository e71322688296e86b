//! Keys betwixt reads but does not act on yet. A server must never start while silently
//! ignoring one of them, so `refuse_unsupported` names the first such key.

use super::error::ConfigError;
use super::model::{Config, DiscoveryKind, Protocol};

/// The discovery kinds that run.
const BUILT_DISCOVERY: [DiscoveryKind; 9] = [
    DiscoveryKind::Static,
    DiscoveryKind::Exec,
    DiscoveryKind::Plaintext,
    DiscoveryKind::Json,
    DiscoveryKind::Srv,
    DiscoveryKind::Docker,
    DiscoveryKind::Lxd,
    DiscoveryKind::Consul,
    DiscoveryKind::Kubernetes,
];

/// Every key in use whose feature is not built yet, as dotted paths with the offending value.
pub fn unsupported_keys(config: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    for (name, server) in &config.servers {
        let at = |field: &str| format!("servers.{name}.{field}");
        let protocol = server.protocol.unwrap_or_default();
        // The PROXY protocol and TLS to backends work on tcp and tls servers (validation
        // refuses them on udp first, with gobetween's messages). `[sni]` and `[tls]` on a udp
        // server are ignored with a warning, as gobetween ignores them (see `resolve`).
        let stream = matches!(protocol, Protocol::Tcp | Protocol::Tls);
        for (field, present) in [
            ("backends_tls", server.backends_tls.is_some() && !stream),
            ("proxy_protocol", server.proxy_protocol.is_some() && !stream),
        ] {
            if present {
                keys.push(at(field));
            }
        }
        let balance = server.balance.unwrap_or_default();
        if !crate::balance::SUPPORTED.contains(&balance) {
            keys.push(format!("{} = {:?}", at("balance"), format!("{balance:?}").to_lowercase()));
        }
        if !BUILT_DISCOVERY.contains(&server.discovery.kind) {
            let kind = format!("{:?}", server.discovery.kind).to_lowercase();
            keys.push(format!("{} = {kind:?}", at("discovery.kind")));
        }
    }
    keys
}

pub fn refuse_unsupported(config: &Config) -> Result<(), ConfigError> {
    match unsupported_keys(config).into_iter().next() {
        None => Ok(()),
        Some(key) => {
            let path = key.split(' ').next().unwrap_or(&key).to_string();
            Err(ConfigError::at_key(path, format!("not supported yet: {key}")))
        }
    }
}
