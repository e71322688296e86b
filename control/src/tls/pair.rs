//! A certificate chain and its private key, read from PEM files as Go's `tls.LoadX509KeyPair`
//! reads them: the pair a tls server serves (`[tls]`) or presents to its backends
//! (`[backends_tls]`).
//!
//! rustls checks that a key fits its certificate by parsing the certificate with webpki, which
//! refuses X.509 v1 certificates (`openssl x509 -req` without an extensions file makes them, and
//! Go serves them). The same public keys are compared here with x509-parser, which reads every
//! version. A key the crypto provider cannot sign with (ring signs with RSA keys of 2048 to 8192
//! bits, ECDSA P-256 and P-384, and Ed25519; Go also with P-521 and shorter RSA keys) is named
//! in the refusal instead of rustls' "failed to parse private key".

use super::TlsError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The certificates in the PEM file at `path` (`field` names its key), at least one.
pub fn read_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(
            |e| TlsError::new(field, format!("cannot read certificates from {}: {e}", path.display())),
        )?;
    if certs.is_empty() {
        return Err(TlsError::new(field, format!("no PEM certificate in {}", path.display())));
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError::new("key_path", format!("cannot read a private key from {}: {e}", path.display()))
    })
}

/// The pair in the files `cert_path` (the chain, leaf first) and `key_path`.
pub fn load(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    certified(read_certs("cert_path", cert_path)?, read_key(key_path)?, provider)
}

/// `chain` with a signing key made of `key`, which must fit the chain's leaf.
fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| TlsError::new("cert_path", format!("cannot parse the certificate: {e}")))?;
    let spki = &leaf.tbs_certificate.subject_pki;
    let signer = provider.key_provider.load_private_key(key).map_err(|e| match unsupported(spki) {
        Some(kind) => TlsError::new(
            "key_path",
            format!(
                "not supported yet: {kind} (betwixt signs with RSA keys of 2048 to 8192 bits, \
                 ECDSA P-256 and P-384 keys, and Ed25519 keys)"
            ),
        ),
        None => TlsError::new("key_path", format!("cannot use the private key: {e}")),
    })?;
    // A signer that cannot tell its public key is taken, as rustls takes it.
    if signer.public_key().is_some_and(|public| public.as_ref() != spki.raw) {
        return Err(TlsError::new("key_path", "does not fit the certificate"));
    }
    Ok(CertifiedKey::new(chain, signer))
}

/// The certificate's key, named, when it is of a kind Go signs with and ring does not.
fn unsupported(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => {
            let bits = rsa.key_size();
            (bits != 0 && !(2048..=8192).contains(&bits)).then(|| format!("a {bits}-bit RSA key"))
        }
        PublicKey::EC(_) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            if curve == OID_EC_P256 || curve == OID_NIST_EC_P384 {
                None
            } else if curve == OID_NIST_EC_P521 {
                Some("a P-521 key".to_string())
            } else {
                Some(format!("an ECDSA key on the curve {curve}"))
            }
        }
        _ => None,
    }
}
