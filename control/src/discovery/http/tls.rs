//! TLS to a discovery endpoint: the CAs to verify it with (the system's unless a bundle is
//! named), an optional client certificate, or no verification at all — built with the same
//! code as `[backends_tls]`, its errors named by the discovery keys.

use super::SectionError;
use crate::config::BackendsTls;
use std::sync::Arc;

/// The files and switch a kind's keys give.
#[derive(Clone, Debug, Default)]
pub struct Files<'a> {
    pub ca: Option<&'a str>,
    pub cert: Option<&'a str>,
    pub key: Option<&'a str>,
    pub ignore_verify: bool,
}

/// The kind's names of those keys, for errors.
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    pub ca: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
}

impl Keys {
    /// Every error names `field` (an endpoint key whose scheme asked for TLS).
    pub fn same(field: &'static str) -> Keys {
        Keys { ca: field, cert: field, key: field }
    }
}

/// A client configuration speaking HTTP/1.1 over TLS 1.2 or 1.3.
pub fn client(files: &Files, keys: &Keys) -> Result<Arc<rustls::ClientConfig>, SectionError> {
    let given = |path: Option<&str>| path.filter(|p| !p.is_empty()).map(String::from);
    let section = BackendsTls {
        ignore_verify: Some(files.ignore_verify),
        root_ca_cert_path: given(files.ca),
        cert_path: given(files.cert),
        key_path: given(files.key),
        ..BackendsTls::default()
    };
    let config = crate::tls::client_config(&section).map_err(|e| {
        let field = match e.field {
            "cert_path" => keys.cert,
            "key_path" => keys.key,
            _ => keys.ca,
        };
        SectionError::new(field, e.message)
    })?;
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
