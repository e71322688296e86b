//! Certificates from an ACME v2 CA (RFC 8555) for tls servers with `[tls] acme_hosts`, under
//! the global `[acme]` section: obtained at start, served, renewed before they expire, kept in
//! `cache_dir` so a restart serves them again without a new order.
//!
//! gobetween's keys keep their meaning (`challenge`, `http_bind`, `cache_dir`, `acme_hosts`);
//! gobetween 0.8 gets them through Go's autocert. The protocol itself (JWS, nonces,
//! orders) is `instant-acme`'s; this module holds the settings (here), the account and the
//! order of one certificate (`issue`), the loop that keeps a host's certificate fresh
//! (`keeper`), the challenge answers (`challenge`), the HTTPS client that speaks to the CA
//! (`client`) and the cache files (`store`).
//!
//! Everything runs on the control thread. The shards only read, lock-free, what it publishes:
//! each host's current certificate and, for TLS-ALPN-01, the challenge certificates.

mod challenge;
mod client;
mod issue;
mod keeper;
mod store;

pub use challenge::{wants_challenge, ChallengeResolver, Challenges};
pub use keeper::{AcmeCerts, AcmeService};

use crate::config::Acme;
use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory, the default `directory_url`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// gobetween's defaults.
pub const DEFAULT_CHALLENGE: &str = "http";
pub const DEFAULT_HTTP_BIND: &str = "0.0.0.0:80";
pub const DEFAULT_CACHE_DIR: &str = "/tmp";
/// autocert's default: renew 30 days before expiry.
const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How the CA checks that betwixt answers for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// HTTP-01: `http://HOST/.well-known/acme-challenge/TOKEN` on port 80, answered by a small
    /// HTTP server at `http_bind` (gobetween's `"http"`, the default).
    Http,
    /// TLS-ALPN-01: a TLS handshake on port 443 offering ALPN `acme-tls/1`, answered by the tls
    /// server itself; no port 80 needed (betwixt's `"tls-alpn"`).
    TlsAlpn,
}

/// A bad value in `[acme]` or `acme_hosts`, with its key.
#[derive(Debug, PartialEq)]
pub struct AcmeError {
    pub field: &'static str,
    pub message: String,
}

impl AcmeError {
    fn new(field: &'static str, message: impl Into<String>) -> AcmeError {
        AcmeError { field, message: message.into() }
    }
}

/// `[acme]` read, with gobetween's defaults and betwixt's.
#[derive(Clone, Debug, PartialEq)]
pub struct AcmeSettings {
    pub challenge: ChallengeKind,
    pub http_bind: String,
    pub cache_dir: PathBuf,
    pub directory_url: String,
    pub email: Option<String>,
    pub root_ca_cert_path: Option<String>,
    pub renew_before: Duration,
}

impl AcmeSettings {
    /// Checks the section without touching the disk or the network.
    pub fn from_section(section: &Acme) -> Result<AcmeSettings, AcmeError> {
        let text = |value: &Option<String>| value.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
        let challenge =
            match section.challenge.as_deref().unwrap_or("") {
                "" | DEFAULT_CHALLENGE => ChallengeKind::Http,
                // "sni" was tls-sni-01, which every CA retired in 2019; TLS-ALPN-01 replaced it
                // on the same port (`lint` warns about the reading).
                "tls-alpn" | "sni" => ChallengeKind::TlsAlpn,
                "dns" => return Err(AcmeError::new(
                    "challenge",
                    "\"dns\" is not supported (it needs a DNS provider's API): use \"http\" or \"tls-alpn\"",
                )),
                other => {
                    return Err(AcmeError::new(
                        "challenge",
                        format!("unknown challenge {other:?} (use \"http\" or \"tls-alpn\")"),
                    ))
                }
            };
        let http_bind = text(&section.http_bind).unwrap_or_else(|| DEFAULT_HTTP_BIND.to_string());
        if challenge == ChallengeKind::Http {
            crate::backend::split_host_port(&http_bind).map_err(|e| AcmeError::new("http_bind", e))?;
        }
        let directory_url = text(&section.directory_url).unwrap_or_else(|| LETS_ENCRYPT.to_string());
        if !directory_url.starts_with("https://") || directory_url.len() > 2048 {
            return Err(AcmeError::new("directory_url", "must be an https:// URL (RFC 8555 requires HTTPS)"));
        }
        directory_url
            .parse::<hyper::Uri>()
            .ok()
            .filter(|uri| uri.host().is_some())
            .ok_or_else(|| AcmeError::new("directory_url", format!("{directory_url:?} is not a URL")))?;
        let email = text(&section.email);
        if let Some(email) = &email {
            let parts = email.split_once('@');
            if parts.is_none_or(|(user, domain)| user.is_empty() || domain.is_empty())
                || email.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
            {
                return Err(AcmeError::new("email", format!("{email:?} is not a mail address")));
            }
        }
        let renew_before = match section.renew_before {
            Some(d) if d.0.is_zero() => return Err(AcmeError::new("renew_before", "must be above zero")),
            Some(d) => d.0,
            None => DEFAULT_RENEW_BEFORE,
        };
        Ok(AcmeSettings {
            challenge,
            http_bind,
            cache_dir: PathBuf::from(
                text(&section.cache_dir).unwrap_or_else(|| DEFAULT_CACHE_DIR.to_string()),
            ),
            directory_url,
            email,
            root_ca_cert_path: text(&section.root_ca_cert_path),
            renew_before,
        })
    }
}

/// The lint note for `challenge = "sni"`.
pub fn challenge_note(section: &Acme) -> Option<String> {
    (section.challenge.as_deref() == Some("sni")).then(|| {
        "read as \"tls-alpn\": tls-sni-01 was retired by every CA; TLS-ALPN-01 replaced it on the same port"
            .to_string()
    })
}

/// The longest host name (RFC 1035).
const MAX_HOST_LEN: usize = 253;

/// Checks an `acme_hosts` entry and returns it lowercased: a DNS name (letters, digits, `-`,
/// at least two labels), since HTTP-01 and TLS-ALPN-01 can prove neither IP addresses nor
/// wildcards. The name is also the name of its cache file, which this keeps safe.
pub fn host_name(host: &str) -> Result<String, String> {
    let lower = host.to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let labels: Vec<&str> = lower.split('.').collect();
    if lower.len() > MAX_HOST_LEN
        || labels.len() < 2
        || !labels.iter().all(|l| label_ok(l))
        || labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        let shown: String = host.chars().take(64).collect();
        return Err(format!(
            "{shown:?} is not a DNS name betwixt can get a certificate for (no IP addresses, wildcards or single labels)"
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GoDuration;

    #[test]
    fn defaults_are_gobetweens() {
        let s = AcmeSettings::from_section(&Acme::default()).unwrap();
        assert_eq!(s.challenge, ChallengeKind::Http);
        assert_eq!(s.http_bind, "0.0.0.0:80");
        assert_eq!(s.cache_dir, PathBuf::from("/tmp"));
        assert_eq!(s.directory_url, LETS_ENCRYPT);
        assert_eq!(s.renew_before, DEFAULT_RENEW_BEFORE);
    }

    #[test]
    fn bad_values_are_named() {
        let field = |section: Acme| AcmeSettings::from_section(&section).unwrap_err().field;
        assert_eq!(field(Acme { challenge: Some("dns".into()), ..Acme::default() }), "challenge");
        assert_eq!(field(Acme { challenge: Some("tls-sni-01".into()), ..Acme::default() }), "challenge");
        assert_eq!(field(Acme { http_bind: Some("nope".into()), ..Acme::default() }), "http_bind");
        assert_eq!(
            field(Acme { directory_url: Some("http://ca/dir".into()), ..Acme::default() }),
            "directory_url"
        );
        assert_eq!(field(Acme { email: Some("a b@c".into()), ..Acme::default() }), "email");
        assert_eq!(field(Acme { renew_before: Some(GoDuration::ZERO), ..Acme::default() }), "renew_before");
        let sni = Acme { challenge: Some("sni".into()), ..Acme::default() };
        assert_eq!(AcmeSettings::from_section(&sni).unwrap().challenge, ChallengeKind::TlsAlpn);
        assert!(challenge_note(&sni).is_some());
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("WWW.Example.COM").unwrap(), "www.example.com");
        for bad in ["", "localhost", "*.example.com", "127.0.0.1", "a..b", "-a.b", "a_b.c", "../x.y", "a.b/c"]
        {
            assert!(host_name(bad).is_err(), "{bad}");
        }
        assert!(host_name(&format!("{}.com", "a".repeat(64))).is_err());
    }
}
