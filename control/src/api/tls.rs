//! HTTPS for `[api.tls]`: a rustls server configuration from PEM files.

use crate::config::CertPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

pub fn acceptor(pair: &CertPair) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(&pair.cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificate {}: {e}", pair.cert_path))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", pair.cert_path));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key_path)
        .map_err(|e| format!("cannot read private key {}: {e}", pair.key_path))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("invalid certificate or key ({}, {}): {e}", pair.cert_path, pair.key_path))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
