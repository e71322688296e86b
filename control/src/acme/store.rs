//! `cache_dir`: what survives a restart.
//!
//! - `HOST`: the host's private key (PEM) followed by its certificate chain (PEM), mode 0600.
//!   This is the layout of Go's autocert `DirCache`, which gobetween used: a certificate a
//!   gobetween left in the same directory is served until it is due for renewal.
//! - `betwixt-acme-account.json`: the ACME account (its key and URL) with the directory it
//!   belongs to, mode 0600. An account of another directory is not used; a new one is made.
//!
//! Files are written to a fresh temporary name (`O_EXCL`, mode 0600 from the start) and
//! renamed over the old one, so a crash never leaves half a key, and a link planted in a shared
//! directory such as `/tmp` is not followed.

use instant_acme::AccountCredentials;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ACCOUNT_FILE: &str = "betwixt-acme-account.json";
/// Cache files larger than this are not read (a chain is a few KiB).
const MAX_FILE: u64 = 1 << 20;

/// A certificate chain with its key, as PEM, and the leaf's validity.
#[derive(Debug)]
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Issued {
    /// Reads the key and chain from PEM text (key first or last: both are found).
    pub fn from_pem(text: &[u8]) -> Result<Issued, String> {
        let key = PrivateKeyDer::from_pem_slice(text).map_err(|e| format!("no private key: {e}"))?;
        Issued::from_chain(text, key)
    }

    /// The chain in PEM `text` (other PEM sections are skipped), with its key.
    pub fn from_chain(text: &[u8], key: PrivateKeyDer<'static>) -> Result<Issued, String> {
        let chain = CertificateDer::pem_slice_iter(text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad certificate PEM: {e}"))?;
        let leaf = chain.first().ok_or("no certificate")?;
        let (not_before, not_after) = validity(leaf)?;
        Ok(Issued { chain, key, not_before, not_after })
    }

    /// The key, then the chain, as PEM (autocert's order).
    pub fn to_pem(&self) -> String {
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let mut text = pem(label, self.key.secret_der());
        for cert in &self.chain {
            text.push_str(&pem("CERTIFICATE", cert));
        }
        text
    }

    /// When to renew: `renew_before` ahead of expiry, but no earlier than half-way through
    /// the certificate's life, so a CA's short-lived certificates are not renewed in a loop.
    pub fn renew_at(&self, renew_before: Duration) -> SystemTime {
        let life = self.not_after.duration_since(self.not_before).unwrap_or_default();
        self.not_after - renew_before.min(life / 2)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text + &format!("-----END {label}-----\n")
}

/// The leaf's notBefore and notAfter.
fn validity(leaf: &[u8]) -> Result<(SystemTime, SystemTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("bad certificate: {e}"))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
    };
    Ok((at(cert.validity().not_before), at(cert.validity().not_after)))
}

/// Checks at start that `dir` is a directory betwixt can write to, so a wrong `cache_dir` stops
/// the start instead of every renewal. `create`: make it (and its parents) when missing, as a
/// start does. Otherwise (`betwixt check`) a missing `dir` passes when its nearest existing
/// ancestor is a directory betwixt can write in, where a start would create it.
pub fn check_dir(dir: &Path, create: bool) -> Result<(), String> {
    let shown = dir.display();
    if create {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {shown}: {e}"))?;
    }
    // `dir`, or where a start would create it: its nearest existing ancestor ("" is the working
    // directory).
    let target = dir.ancestors().find(|a| a.exists()).filter(|a| !a.as_os_str().is_empty());
    let target = target.unwrap_or(Path::new("."));
    if !target.is_dir() {
        return Err(match target == dir {
            true => format!("{shown} is not a directory"),
            false => format!("cannot create {shown}: {} is not a directory", target.display()),
        });
    }
    let probe = temp_name(target, "write-check");
    write_new(&probe, b"").map_err(|e| format!("cannot write in {}: {e}", target.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn temp_name(dir: &Path, what: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    dir.join(format!(".betwixt-{what}-{}-{nanos}", std::process::id()))
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes `bytes` to `dir/name`, mode 0600, replacing it whole.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let temp = temp_name(dir, name);
    let target = dir.join(name);
    write_new(&temp, bytes).and_then(|()| std::fs::rename(&temp, &target)).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {e}", target.display())
    })
}

fn read_small(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        Ok(meta) if !meta.is_file() || meta.len() > MAX_FILE => {
            return Err(format!(
                "{} is not a cache file (not a regular file of at most 1 MiB)",
                path.display()
            ))
        }
        Ok(_) => {}
    }
    std::fs::read(path).map(Some).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The host's cached certificate, if there is one.
pub fn load_cert(dir: &Path, host: &str) -> Result<Option<Issued>, String> {
    let Some(text) = read_small(&dir.join(host))? else { return Ok(None) };
    Issued::from_pem(&text).map(Some).map_err(|e| format!("{}: {e}", dir.join(host).display()))
}

pub fn save_cert(dir: &Path, host: &str, issued: &Issued) -> Result<(), String> {
    replace(dir, host, issued.to_pem().as_bytes())
}

#[derive(Serialize, Deserialize)]
struct AccountFile {
    directory_url: String,
    credentials: AccountCredentials,
}

/// The cached account of `directory_url`, if there is one.
pub fn load_account(dir: &Path, directory_url: &str) -> Result<Option<AccountCredentials>, String> {
    let path = dir.join(ACCOUNT_FILE);
    let Some(text) = read_small(&path)? else { return Ok(None) };
    let file: AccountFile =
        sonic_rs::from_slice(&text).map_err(|e| format!("{}: not an account file: {e}", path.display()))?;
    Ok((file.directory_url == directory_url).then_some(file.credentials))
}

pub fn save_account(dir: &Path, directory_url: &str, credentials: AccountCredentials) -> Result<(), String> {
    let file = AccountFile { directory_url: directory_url.to_string(), credentials };
    let text = sonic_rs::to_vec(&file).map_err(|e| format!("cannot encode the account: {e}"))?;
    replace(dir, ACCOUNT_FILE, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_certificate_round_trips_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("betwixt-acme-store-{}", std::process::id()));
        check_dir(&dir, true).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["a.example.com".into()]).unwrap().self_signed(&key).unwrap();
        let issued = Issued::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap();
        save_cert(&dir, "a.example.com", &issued).unwrap();
        let back = load_cert(&dir, "a.example.com").unwrap().unwrap();
        assert_eq!(back.chain, issued.chain);
        assert_eq!(back.not_after, issued.not_after);
        let mode = std::fs::metadata(dir.join("a.example.com")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(load_cert(&dir, "b.example.com").unwrap().is_none());
        std::fs::write(dir.join("c.example.com"), "garbage").unwrap();
        assert!(load_cert(&dir, "c.example.com").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn renewal_is_due_before_expiry_but_not_before_half_life() {
        let day = Duration::from_secs(86400);
        let start = UNIX_EPOCH + 1000 * day;
        let cert = |life: Duration| Issued {
            chain: Vec::new(),
            key: PrivateKeyDer::Pkcs8(Vec::new().into()),
            not_before: start,
            not_after: start + life,
        };
        assert_eq!(cert(90 * day).renew_at(30 * day), start + 60 * day);
        assert_eq!(cert(6 * day).renew_at(30 * day), start + 3 * day);
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let file = std::env::temp_dir().join(format!("betwixt-acme-file-{}", std::process::id()));
        std::fs::write(&file, "x").unwrap();
        assert!(check_dir(&file, true).is_err());
        let under = check_dir(&file.join("sub"), false).unwrap_err();
        assert!(under.contains("is not a directory"), "{under}");
        assert!(check_dir(&file, false).is_err());
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn checking_a_missing_directory_does_not_create_it() {
        let dir = std::env::temp_dir().join(format!("betwixt-acme-missing-{}", std::process::id()));
        let dir = dir.join("deeper");
        check_dir(&dir, false).unwrap();
        assert!(!dir.exists() && !dir.parent().unwrap().exists());
    }
}
