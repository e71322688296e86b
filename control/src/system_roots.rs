//! The system's CAs, found as Go's `crypto/x509` finds them on Linux (and so as gobetween's
//! clients trusted them wherever no CA was configured: backends' TLS, discovery and
//! configuration sources over `https`, the ACME directory): the first bundle file that reads
//! (`SSL_CERT_FILE` instead of the usual list when set), then every file in the usual
//! certificate directories (`SSL_CERT_DIR`'s colon-separated list instead when set), skipping
//! links to a name in the same directory (the hashed names OpenSSL's `c_rehash` makes). Read
//! once, as Go reads them once per process, and again at each reload (gobetween has none), so
//! what a reload builds anew trusts a CA added to the system since.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Go's list for Linux, in its order: the first that reads is used.
const BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Go's directories for Linux: every one is read.
const DIRECTORIES: [&str; 4] = [
    "/etc/ssl/certs",
    "/etc/pki/tls/certs",
    "/system/etc/security/cacerts",
    "/data/misc/keychain/certs-added",
];

/// A file larger than this is not a certificate file; it is skipped.
const MAX_FILE: u64 = 16 << 20;
/// Entries read from one directory, at most (a distribution's has a few hundred).
const MAX_ENTRIES: usize = 10_000;

/// What was read, until a reload asks for a new reading (`None`: not read yet).
type Read = Option<Option<Arc<Vec<CertificateDer<'static>>>>>;
static READ: Mutex<Read> = Mutex::new(None);

/// The system's CA certificates, each once; `None` when there are none.
pub fn certificates() -> Option<Arc<Vec<CertificateDer<'static>>>> {
    let mut read = READ.lock().unwrap_or_else(|e| e.into_inner());
    read.get_or_insert_with(|| {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let certs = find(var("SSL_CERT_FILE").as_deref(), var("SSL_CERT_DIR").as_deref());
        (!certs.is_empty()).then(|| Arc::new(certs))
    })
    .clone()
}

/// Makes the next [`certificates`] read the files again (a reload begins).
pub fn read_again() {
    *READ.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The certificates found with `SSL_CERT_FILE` = `file` and `SSL_CERT_DIR` = `dirs`.
fn find(file: Option<&str>, dirs: Option<&str>) -> Vec<CertificateDer<'static>> {
    let mut found = Found::default();
    let bundles: Vec<&str> = file.map_or(BUNDLES.to_vec(), |file| vec![file]);
    // Only the first bundle that reads, as Go stops there (even if it holds no certificate).
    if let Some(data) = bundles.iter().find_map(|path| read(Path::new(path))) {
        found.add(&data);
    }
    let directories: Vec<&str> = dirs.map_or(DIRECTORIES.to_vec(), |dirs| dirs.split(':').collect());
    for directory in directories {
        let Ok(entries) = std::fs::read_dir(directory) else { continue };
        for entry in entries.flatten().take(MAX_ENTRIES) {
            let path = entry.path();
            if !same_directory_link(&path) {
                if let Some(data) = read(&path) {
                    found.add(&data);
                }
            }
        }
    }
    found.certs
}

/// A link whose target names no directory: another entry of the same directory, read as itself.
fn same_directory_link(path: &Path) -> bool {
    std::fs::read_link(path).is_ok_and(|target| !target.as_os_str().as_encoded_bytes().contains(&b'/'))
}

/// A file's bytes; `None` for what cannot be read or is too large (directories too).
fn read(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.len() <= MAX_FILE).then(|| std::fs::read(path).ok()).flatten()
}

/// Certificates gathered so far, without repeats (a bundle and the directory holding it
/// usually list the same ones).
#[derive(Default)]
struct Found {
    certs: Vec<CertificateDer<'static>>,
    seen: HashSet<Vec<u8>>,
}

impl Found {
    /// The PEM certificates in `data`, as Go's `AppendCertsFromPEM` takes them: up to the
    /// first block that is not PEM; other kinds of block (keys) are passed over.
    fn add(&mut self, data: &[u8]) {
        for cert in CertificateDer::pem_slice_iter(data).map_while(Result::ok) {
            if self.seen.insert(cert.as_ref().to_vec()) {
                self.certs.push(cert);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(name: &str) -> (String, Vec<u8>) {
        let cert = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap().cert;
        (cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn a_bundle_then_every_directory_each_certificate_once() {
        let dir = std::env::temp_dir().join(format!("betwixt-roots-{}", std::process::id()));
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        for d in [&a, &b, &c] {
            std::fs::create_dir_all(d).unwrap();
        }
        let (one, one_der) = pem("one.test");
        let (two, two_der) = pem("two.test");
        let (three, three_der) = pem("three.test");
        let (four, four_der) = pem("four.test");
        std::fs::write(a.join("bundle.pem"), format!("{one}{two}")).unwrap();
        // The bundle's certificates again in a directory: each counted once.
        std::fs::write(b.join("copy.pem"), &one).unwrap();
        std::fs::write(b.join("three.pem"), &three).unwrap();
        std::fs::write(b.join("README"), "not a certificate").unwrap();
        // A hashed name linking to a file beside it is skipped (read as that file); a link
        // elsewhere is read.
        std::os::unix::fs::symlink("three.pem", b.join("abcd1234.0")).unwrap();
        std::fs::write(c.join("four.pem"), &four).unwrap();
        std::os::unix::fs::symlink(c.join("four.pem"), b.join("four-link.pem")).unwrap();
        let ders = |certs: Vec<CertificateDer<'static>>| {
            let mut ders: Vec<Vec<u8>> = certs.iter().map(|c| c.as_ref().to_vec()).collect();
            ders.sort();
            ders
        };
        let sorted = |mut v: Vec<Vec<u8>>| {
            v.sort();
            v
        };

        let bundle = a.join("bundle.pem");
        let got = find(bundle.to_str(), b.to_str());
        assert_eq!(ders(got), sorted(vec![one_der, two_der, three_der, four_der]));
        // A missing SSL_CERT_FILE still leaves the directories; several directories by ':'.
        let dirs = format!("{}:/nonexistent:{}", a.display(), c.display());
        let got = find(Some("/nonexistent/bundle.pem"), Some(&dirs));
        assert_eq!(ders(got).len(), 3);
        // Same-directory links are not double-counted nor followed as separate files.
        let only_b = find(Some("/nonexistent"), b.to_str());
        assert_eq!(ders(only_b).len(), 3, "one, three and four");
        assert!(find(Some("/nonexistent"), Some("/nonexistent")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
