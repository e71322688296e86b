//! TLS settings of a server: `[tls]` (terminating clients' TLS) and `[backends_tls]` (TLS to
//! the backends), read into rustls configurations on the control thread. The shards only
//! take the finished `Arc`s from the server's settings.
//!
//! Names are gobetween's (Go's): versions `tls1`, `tls1.1`, `tls1.2`, plus `tls1.3`; cipher
//! suites as Go spells them. What rustls cannot do (TLS 1.0/1.1, RC4, 3DES, CBC, RSA key
//! exchange) is refused with the name, where gobetween would accept it; a name gobetween does
//! not know, which it drops silently, is refused too.
//!
//! The served certificate reloads from disk: `CertFiles::reload_if_changed` (called every few
//! seconds by the control thread) loads the pair again when either file changed and swaps it
//! in. New handshakes use the new pair; established connections are not touched.

use crate::acme::{AcmeCerts, ChallengeResolver};
use crate::config::{BackendsTls, Tls};
use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod pair;

/// How often the control thread looks at the certificate files for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// A bad value in `[tls]` or `[backends_tls]`, with its key (relative to the section).
#[derive(Debug, PartialEq)]
pub struct TlsError {
    pub field: &'static str,
    pub message: String,
}

impl TlsError {
    fn new(field: &'static str, message: impl Into<String>) -> TlsError {
        TlsError { field, message: message.into() }
    }
}

/// Go's names for the suites rustls offers, by version. Go spells the ChaCha20 suites both
/// with and without `_SHA256`.
const SUITES: [(&str, SupportedCipherSuite); 11] = [
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_AES_128_GCM_SHA256", ring::cipher_suite::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", ring::cipher_suite::TLS13_AES_256_GCM_SHA384),
    ("TLS_CHACHA20_POLY1305_SHA256", ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256),
    // Go's full names of the ChaCha20 suites (gobetween's own spelling of both).
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Suites gobetween accepts that rustls does not implement.
const OLD_SUITES: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
];

/// The protocol versions from `min_version` to `max_version` (either may be left out or empty),
/// and a note when `min_version` names a version rustls does not have (gobetween's reference
/// configuration has `min_version = "tls1"`): such a minimum is read as tls1.2, the lowest
/// rustls speaks. A maximum below tls1.2 leaves nothing to speak and is an error.
pub fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<(Vec<&'static SupportedProtocolVersion>, Option<String>), TlsError> {
    // 0 = TLS 1.2, 1 = TLS 1.3; `None` for the versions rustls does not have.
    let read = |field: &'static str, value: Option<&str>, unset: usize| match value.unwrap_or("") {
        "" => Ok(Some(unset)),
        "tls1.2" => Ok(Some(0)),
        "tls1.3" => Ok(Some(1)),
        "ssl3" | "tls1" | "tls1.1" => Ok(None),
        other => Err(TlsError::new(field, format!("unknown TLS version {other:?} (use tls1.2 or tls1.3)"))),
    };
    let (low, note) = match read("min_version", min, 0)? {
        Some(low) => (low, None),
        None => (
            0,
            Some(format!("{:?} read as \"tls1.2\": rustls speaks only tls1.2 and tls1.3", min.unwrap_or(""))),
        ),
    };
    let high = read("max_version", max, 1)?.ok_or_else(|| {
        TlsError::new(
            "max_version",
            format!(
                "{:?} is not supported: betwixt (rustls) speaks only tls1.2 and tls1.3",
                max.unwrap_or("")
            ),
        )
    })?;
    if low > high {
        return Err(TlsError::new("min_version", "is above max_version"));
    }
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    Ok((all[low..=high].to_vec(), note))
}

/// The suites `ciphers` names, in rustls' order of preference. As in Go, the list restricts the
/// TLS 1.2 suites only: TLS 1.3 names are known (gobetween maps them) but change nothing, and
/// every TLS 1.3 suite stays enabled.
pub fn cipher_suites(ciphers: Option<&[String]>) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let all = ring::ALL_CIPHER_SUITES;
    let Some(names) = ciphers.filter(|names| !names.is_empty()) else {
        return Ok(all.to_vec());
    };
    let mut chosen = Vec::new();
    for name in names {
        match SUITES.iter().find(|(go, _)| go == name) {
            Some((_, suite)) => chosen.push(*suite),
            None if OLD_SUITES.contains(&name.as_str()) => {
                return Err(TlsError::new(
                    "ciphers",
                    format!("{name} is not supported: rustls offers only AEAD suites with forward secrecy"),
                ))
            }
            None => return Err(TlsError::new("ciphers", format!("unknown cipher suite {name:?}"))),
        }
    }
    let is13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    Ok(all.iter().filter(|s| is13(s) || chosen.contains(s)).copied().collect())
}

fn provider(ciphers: Option<&[String]>) -> Result<Arc<CryptoProvider>, TlsError> {
    Ok(Arc::new(CryptoProvider { cipher_suites: cipher_suites(ciphers)?, ..ring::default_provider() }))
}

/// The section's `acme_hosts`, when it has some: its certificate then comes from ACME.
pub fn acme_hosts(section: &Tls) -> Option<&[String]> {
    section.acme_hosts.as_deref().filter(|hosts| !hosts.is_empty())
}

/// Checks `[tls]` without reading files (configuration validation).
pub fn check_server(section: &Tls) -> Result<(), TlsError> {
    versions(section.min_version.as_deref(), section.max_version.as_deref())?;
    cipher_suites(section.ciphers.as_deref())?;
    let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    if let Some(hosts) = acme_hosts(section) {
        for host in hosts {
            crate::acme::host_name(host).map_err(|message| TlsError::new("acme_hosts", message))?;
        }
        if given(&section.cert_path) || given(&section.key_path) {
            let field = if given(&section.cert_path) { "cert_path" } else { "key_path" };
            return Err(TlsError::new(
                field,
                "the certificate comes either from files or from acme_hosts, not both",
            ));
        }
        return Ok(());
    }
    for (field, value) in [("cert_path", &section.cert_path), ("key_path", &section.key_path)] {
        if !given(value) {
            return Err(TlsError::new(field, "required (or acme_hosts)"));
        }
    }
    Ok(())
}

/// Checks `[backends_tls]` without reading files.
pub fn check_backends(section: &BackendsTls) -> Result<(), TlsError> {
    versions(section.min_version.as_deref(), section.max_version.as_deref())?;
    cipher_suites(section.ciphers.as_deref())?;
    if section.cert_path.is_some() != section.key_path.is_some() {
        let missing = if section.cert_path.is_none() { "cert_path" } else { "key_path" };
        return Err(TlsError::new(missing, "cert_path and key_path go together"));
    }
    Ok(())
}

/// The certificate pair a tls server serves, reloaded when its files change.
pub struct CertFiles {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The files' modification times and sizes at the last load.
    stamps: Mutex<[Option<(SystemTime, u64)>; 2]>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFiles({}, {})", self.cert_path.display(), self.key_path.display())
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl CertFiles {
    fn load(cert_path: &str, key_path: &str, provider: Arc<CryptoProvider>) -> Result<CertFiles, TlsError> {
        let (cert_path, key_path) = (PathBuf::from(cert_path), PathBuf::from(key_path));
        let stamps = [stamp(&cert_path), stamp(&key_path)];
        let pair = pair::load(&cert_path, &key_path, &provider)?;
        Ok(CertFiles {
            cert_path,
            key_path,
            current: ArcSwap::from_pointee(pair),
            stamps: Mutex::new(stamps),
            provider,
        })
    }

    /// Loads the pair again if either file changed since the last load. A pair that does not
    /// load (a file half written, a key that does not fit yet) leaves the served one in place
    /// and is tried again at the next check. Returns whether a new pair is served.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = [stamp(&self.cert_path), stamp(&self.key_path)];
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if *stamps == now {
            return Ok(false);
        }
        let pair = pair::load(&self.cert_path, &self.key_path, &self.provider)?;
        self.current.store(Arc::new(pair));
        *stamps = now;
        Ok(true)
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the shards need of a server's TLS settings, built once per server by `load`.
#[derive(Clone)]
pub struct TlsContexts {
    /// `[tls]`: terminates the clients' TLS.
    pub server: Option<Arc<ServerConfig>>,
    /// The served certificate files, for reloads.
    pub cert_files: Option<Arc<CertFiles>>,
    /// The served certificates when they come from ACME (`acme_hosts`), for their keeper task.
    pub acme: Option<Arc<AcmeCerts>>,
    /// With TLS-ALPN-01: the configuration for handshakes offering ALPN `acme-tls/1`, which
    /// serves the challenge certificates (see `acme::challenge`).
    pub acme_challenge: Option<Arc<ServerConfig>>,
    /// `[backends_tls]`: TLS to the backends.
    pub backends: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsContexts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContexts")
            .field("server", &self.server.is_some())
            .field("cert_files", &self.cert_files)
            .field("acme", &self.acme)
            .field("backends", &self.backends.is_some())
            .finish()
    }
}

/// Two servers' contexts are the same when they are the same loaded objects.
impl PartialEq for TlsContexts {
    fn eq(&self, other: &Self) -> bool {
        fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        same(&self.server, &other.server) && same(&self.backends, &other.backends)
    }
}

impl TlsContexts {
    /// Reads the certificate files and builds the configurations. With `acme`, the served
    /// certificates are those instead of files. Errors name the key (`tls.cert_path`,
    /// `backends_tls.root_ca_cert_path`, ...).
    pub fn load(
        tls: Option<&Tls>,
        backends: Option<&BackendsTls>,
        acme: Option<Arc<AcmeCerts>>,
    ) -> Result<TlsContexts, (String, String)> {
        let at = |section: &str, e: TlsError| (format!("{section}.{}", e.field), e.message);
        let mut contexts =
            TlsContexts { server: None, cert_files: None, acme: None, acme_challenge: None, backends: None };
        if let Some(section) = tls {
            check_server(section).map_err(|e| at("tls", e))?;
            let resolver: Arc<dyn ResolvesServerCert> = match &acme {
                Some(certs) => {
                    if let Some(challenges) = certs.challenges() {
                        let challenge = Arc::new(ChallengeResolver(challenges));
                        let mut config = server_config(section, challenge).map_err(|e| at("tls", e))?;
                        config.alpn_protocols = vec![crate::acme::ACME_TLS_ALPN.to_vec()];
                        contexts.acme_challenge = Some(Arc::new(config));
                    }
                    certs.clone()
                }
                None => {
                    let provider = provider(section.ciphers.as_deref()).map_err(|e| at("tls", e))?;
                    let files = Arc::new(
                        CertFiles::load(
                            section.cert_path.as_deref().unwrap_or_default(),
                            section.key_path.as_deref().unwrap_or_default(),
                            provider,
                        )
                        .map_err(|e| at("tls", e))?,
                    );
                    contexts.cert_files = Some(files.clone());
                    files
                }
            };
            contexts.server = Some(Arc::new(server_config(section, resolver).map_err(|e| at("tls", e))?));
            contexts.acme = acme;
        }
        contexts.backends = backends.map(client_config).transpose().map_err(|e| at("backends_tls", e))?;
        Ok(contexts)
    }
}

fn server_config(section: &Tls, resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    let provider = provider(section.ciphers.as_deref())?;
    let (versions, _) = versions(section.min_version.as_deref(), section.max_version.as_deref())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::new("ciphers", format!("no usable suite for the versions allowed: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.ignore_client_order = section.prefer_server_ciphers.unwrap_or(false);
    if section.session_tickets.unwrap_or(false) {
        config.ticketer = ring::Ticketer::new()
            .map_err(|e| TlsError::new("session_tickets", format!("no ticketer: {e}")))?;
    } else {
        // gobetween's default, Go's SessionTicketsDisabled: no resumption at all. Go's server
        // has no session-ID cache, so TLS 1.2 clients do not resume by ID either.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(NoServerSessionStorage {});
    }
    Ok(config)
}

/// A client configuration from a `[backends_tls]`-like section; discovery builds its HTTPS
/// client from one too.
pub fn client_config(section: &BackendsTls) -> Result<Arc<ClientConfig>, TlsError> {
    check_backends(section)?;
    let provider = provider(section.ciphers.as_deref())?;
    let (versions, _) = versions(section.min_version.as_deref(), section.max_version.as_deref())?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::new("ciphers", format!("no usable suite for the versions allowed: {e}")))?;
    let builder = if section.ignore_verify.unwrap_or(false) {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate))
    } else if let Some(path) = section.root_ca_cert_path.as_deref() {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RootsOrListed::new(path, provider.clone())?))
    } else {
        builder.with_root_certificates(roots(None)?)
    };
    let mut config = match (&section.cert_path, &section.key_path) {
        (Some(cert), Some(key)) => {
            let pair = pair::load(Path::new(cert), Path::new(key), &provider)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(pair)))
        }
        _ => builder.with_no_client_auth(),
    };
    if !section.session_tickets.unwrap_or(false) {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The CAs backends' certificates (and the ACME directory's) must chain to:
/// `root_ca_cert_path`, else the system's.
pub fn roots(path: Option<&str>) -> Result<RootCertStore, TlsError> {
    match path {
        Some(path) => store_of(pair::read_certs("root_ca_cert_path", Path::new(path))?, true),
        None => store_of(
            crate::system_roots::certificates()
                .ok_or_else(|| TlsError::new("root_ca_cert_path", "not given, and no system CA found"))?
                .to_vec(),
            false,
        ),
    }
}

/// A store of `certs`; every one must parse when they come from the configured file (`given`).
fn store_of(certs: Vec<CertificateDer<'static>>, given: bool) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (_, ignored) = store.add_parsable_certificates(certs);
    if store.is_empty() || (given && ignored > 0) {
        return Err(TlsError::new(
            "root_ca_cert_path",
            format!("{ignored} certificate(s) could not be parsed"),
        ));
    }
    Ok(store)
}

/// A client configuration from PEM held in memory (a kubeconfig's `*-data`): the server's
/// certificate must chain to `ca` (the system's CAs when `None`) unless `ignore_verify`, and
/// `pair` (certificate chain, key) is presented when given.
pub fn client_config_pem(
    ca: Option<&[u8]>,
    pair: Option<(&[u8], &[u8])>,
    ignore_verify: bool,
) -> Result<Arc<ClientConfig>, String> {
    let provider = provider(None).map_err(|e| e.message)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let certs = |pem: &[u8], what: &str| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot read the {what}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("no PEM certificate in the {what}"));
        }
        Ok(certs)
    };
    let builder = match (ignore_verify, ca) {
        (true, _) => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate)),
        (false, Some(ca)) => {
            let mut store = RootCertStore::empty();
            let (_, ignored) = store.add_parsable_certificates(certs(ca, "certificate authority")?);
            if store.is_empty() || ignored > 0 {
                return Err(format!(
                    "{ignored} certificate(s) of the certificate authority could not be parsed"
                ));
            }
            builder.with_root_certificates(store)
        }
        (false, None) => builder.with_root_certificates(roots(None).map_err(|e| e.message)?),
    };
    let mut config = match pair {
        Some((cert, key)) => {
            let key =
                PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("cannot read the client key: {e}"))?;
            builder
                .with_client_auth_cert(certs(cert, "client certificate")?, key)
                .map_err(|e| format!("the client key does not fit its certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `root_ca_cert_path`, verified as Go verifies it: a chain to one of the file's certificates,
/// or one of them presented itself. Go's `x509.Verify` takes a leaf found among the roots as a
/// chain of its own, so a backend's self-signed certificate works as its own root even when it
/// says it is a CA (as `openssl req -x509` makes it), which webpki refuses as an end entity; the
/// name and the validity period are still checked, as Go checks them.
#[derive(Debug)]
struct RootsOrListed {
    chains: Arc<rustls::client::WebPkiServerVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

impl RootsOrListed {
    fn new(path: &str, provider: Arc<CryptoProvider>) -> Result<RootsOrListed, TlsError> {
        // The file read once: its certificates are both the roots and the list.
        let listed = pair::read_certs("root_ca_cert_path", Path::new(path))?;
        let chains = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store_of(listed.clone(), true)?),
            provider,
        )
        .build()
        .map_err(|e| TlsError::new("root_ca_cert_path", e.to_string()))?;
        Ok(RootsOrListed { chains, listed })
    }
}

/// A listed certificate presented as it is: valid now, and for the name asked for.
fn listed_one_fits(
    cert: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let bad = |e: rustls::CertificateError| rustls::Error::InvalidCertificate(e);
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
    let now_asn1 = x509_parser::time::ASN1Time::from_timestamp(now.as_secs().min(i64::MAX as u64) as i64)
        .map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
    if now_asn1 < parsed.validity().not_before {
        return Err(bad(rustls::CertificateError::NotValidYet));
    }
    if now_asn1 > parsed.validity().not_after {
        return Err(bad(rustls::CertificateError::Expired));
    }
    let cert =
        webpki::EndEntityCert::try_from(cert).map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
    cert.verify_is_valid_for_subject_name(name).map_err(|_| bad(rustls::CertificateError::NotValidForName))
}

impl ServerCertVerifier for RootsOrListed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chains.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(_) if self.listed.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                listed_one_fits(end_entity, name, now).map(|()| ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chains.supported_verify_schemes()
    }
}

/// `ignore_verify = true`: any certificate and any handshake signature are taken, as Go's
/// `InsecureSkipVerify` takes any certificate. With the certificate unchecked, checking that the
/// peer signed with its key would prove nothing (anyone can present a key of their own), and it
/// refused backends Go serves: X.509 v1 certificates, RSA keys under 2048 bits and P-521 keys,
/// which rustls' verifiers cannot read.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    /// Every scheme a backend may sign with, SHA-1 ones included for old TLS 1.2 backends.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        use SignatureScheme::*;
        vec![
            ECDSA_NISTP256_SHA256,
            ECDSA_NISTP384_SHA384,
            ECDSA_NISTP521_SHA512,
            ED25519,
            RSA_PSS_SHA256,
            RSA_PSS_SHA384,
            RSA_PSS_SHA512,
            RSA_PKCS1_SHA256,
            RSA_PKCS1_SHA384,
            RSA_PKCS1_SHA512,
            RSA_PKCS1_SHA1,
            ECDSA_SHA1_Legacy,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn versions_map_and_old_ones_are_read_or_refused() {
        assert_eq!(versions(None, None).unwrap().0.len(), 2);
        assert_eq!(versions(Some("tls1.3"), None).unwrap(), (vec![&rustls::version::TLS13], None));
        assert_eq!(versions(Some(""), Some("tls1.2")).unwrap(), (vec![&rustls::version::TLS12], None));
        for old in ["ssl3", "tls1", "tls1.1"] {
            let (both, note) = versions(Some(old), None).unwrap();
            assert_eq!(both.len(), 2);
            assert!(note.unwrap().contains("read as \"tls1.2\""));
            let e = versions(None, Some(old)).unwrap_err();
            assert_eq!(e.field, "max_version");
            assert!(e.message.contains("only tls1.2 and tls1.3"), "{}", e.message);
        }
        assert!(versions(None, Some("tls9")).unwrap_err().message.contains("unknown TLS version"));
        assert_eq!(versions(Some("tls1.3"), Some("tls1.2")).unwrap_err().field, "min_version");
    }

    #[test]
    fn ciphers_map_go_names_and_refuse_the_rest() {
        assert_eq!(cipher_suites(None).unwrap().len(), ring::ALL_CIPHER_SUITES.len());
        let one = cipher_suites(Some(&names(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]))).unwrap();
        // The TLS 1.2 suite named, and every TLS 1.3 suite (Go does not restrict those).
        assert!(one.contains(&ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
        assert_eq!(one.iter().filter(|s| matches!(s, SupportedCipherSuite::Tls12(_))).count(), 1);
        assert_eq!(one.iter().filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))).count(), 3);
        // TLS 1.3 names change nothing, as in Go: all three stay, and no TLS 1.2 suite is left.
        let t13 = cipher_suites(Some(&names(&["TLS_AES_256_GCM_SHA384"]))).unwrap();
        assert_eq!(t13.len(), 3);
        assert!(t13.iter().all(|s| matches!(s, SupportedCipherSuite::Tls13(_))));
        // Both spellings of both ChaCha20 suites, as gobetween writes them.
        for name in ["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"]
        {
            assert_eq!(cipher_suites(Some(&names(&[name]))).unwrap().len(), 4, "{name}");
        }
        let e = cipher_suites(Some(&names(&["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"]))).unwrap_err();
        assert!(e.message.contains("is not supported"), "{}", e.message);
        let e = cipher_suites(Some(&names(&["TLS_RSA_WITH_RC4_128_SHA"]))).unwrap_err();
        assert!(e.message.contains("TLS_RSA_WITH_RC4_128_SHA is not supported"), "{}", e.message);
        let e = cipher_suites(Some(&names(&["TLS_NOPE"]))).unwrap_err();
        assert_eq!((e.field, e.message.as_str()), ("ciphers", "unknown cipher suite \"TLS_NOPE\""));
    }

    #[test]
    fn missing_files_are_named() {
        let section = Tls {
            cert_path: Some("/nonexistent/cert.pem".into()),
            key_path: Some("/nonexistent/key.pem".into()),
            ..Tls::default()
        };
        let (key, message) = TlsContexts::load(Some(&section), None, None).unwrap_err();
        assert_eq!(key, "tls.cert_path");
        assert!(message.contains("/nonexistent/cert.pem"), "{message}");
        let e = check_server(&Tls::default()).unwrap_err();
        assert_eq!(e.field, "cert_path");
    }

    #[test]
    fn a_pair_that_does_not_load_keeps_the_served_one() {
        let dir = std::env::temp_dir().join(format!("betwixt-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let write = |name: &str| {
            let pair = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
            (pair.cert.pem(), pair.key_pair.serialize_pem(), pair.cert.der().to_vec())
        };
        let (first_cert, first_key, first_der) = write("a.example");
        std::fs::write(&cert, &first_cert).unwrap();
        std::fs::write(&key, &first_key).unwrap();
        let files =
            CertFiles::load(cert.to_str().unwrap(), key.to_str().unwrap(), provider(None).unwrap()).unwrap();
        let served = || files.current.load().cert[0].to_vec();
        assert_eq!(files.reload_if_changed(), Ok(false));
        // A new certificate whose key is not written yet: refused, the old pair stays.
        let (second_cert, second_key, second_der) = write("b.example");
        std::fs::write(&cert, format!("{second_cert}\n")).unwrap();
        assert_eq!(files.reload_if_changed().unwrap_err().field, "key_path");
        assert_eq!(served(), first_der);
        std::fs::write(&key, "garbage").unwrap();
        assert!(files.reload_if_changed().is_err());
        assert_eq!(served(), first_der);
        std::fs::write(&key, &second_key).unwrap();
        assert_eq!(files.reload_if_changed(), Ok(true));
        assert_eq!(served(), second_der);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
