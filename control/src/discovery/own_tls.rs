//! An endpoint whose TLS settings are the kind's own (a kubeconfig's CA, Consul's
//! `consul_tls_*`): built without first loading the system's CAs, which
//! `Endpoint::parse` does for `https://` and which a minimal image may lack.

use super::http::{Endpoint, Scheme};
use super::SectionError;
use hyper::Uri;
use std::sync::Arc;

/// `url` (`http://`, `https://` or, when `allowed`, `unix://`) speaking TLS with `config`.
pub fn endpoint(
    field: &'static str,
    url: &str,
    allowed: &[Scheme],
    config: Arc<rustls::ClientConfig>,
) -> Result<Endpoint, SectionError> {
    let Some(rest) = url.strip_prefix("https://").filter(|_| allowed.contains(&Scheme::Https)) else {
        return Ok(Endpoint::parse_with(field, url, allowed)?.with_tls(config));
    };
    // The same address over http://, with https' default port made explicit.
    let plain = format!("http://{rest}");
    let uri: Uri =
        plain.parse().map_err(|e| SectionError::new(field, format!("not a URL ({e}): {url:?}")))?;
    let plain = match uri.authority() {
        Some(authority) if authority.port().is_none() => {
            let path = uri.path_and_query().map_or("", |p| p.as_str());
            format!("http://{}:443{path}", authority.as_str())
        }
        _ => plain,
    };
    Ok(Endpoint::parse_with(field, &plain, &[Scheme::Http])?.with_tls(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_keeps_its_port() {
        let config = crate::tls::client_config_pem(None, None, true).unwrap();
        let e = endpoint("f", "https://api.test/k8s", &[Scheme::Https], config.clone()).unwrap();
        assert_eq!(e.address().url("/x"), "http://api.test:443/x");
        let e = endpoint("f", "https://[::1]:6443", &[Scheme::Https], config.clone()).unwrap();
        assert_eq!(e.address().host(), Some("::1"));
        assert!(endpoint("f", "https://a", &[Scheme::Http], config.clone()).is_err());
        assert!(endpoint("f", "ftp://a", &[Scheme::Http, Scheme::Https], config).is_err());
    }
}
