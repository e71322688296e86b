//! `from-consul ADDRESS`: the one Consul KV read gobetween makes through Consul's Go client,
//! built as a plain HTTP request. Like that client, it takes `http://`, `https://` and a path
//! prefix in the address; the ACL token and enterprise namespace/partition from Consul's
//! environment variables; and Consul's TLS variables (`CONSUL_CACERT` and friends), which that
//! client applies to every address. A `unix://` address is the agent's socket.

use crate::fetch::{self, Get, Tls};
use betwixt_control::consul_api::{encode, env, env_token, Address, Scheme};
use std::path::{Path, PathBuf};
use ureq::tls::Certificate;

/// A variable Consul's client takes with a warning, and the warning.
pub type EnvWarning = (&'static str, String);

/// The request that reads the raw value of a key, and what Consul's environment said that
/// its client would only warn about.
#[derive(Debug)]
pub struct KvRead {
    pub get: Get,
    pub warnings: Vec<EnvWarning>,
}

pub fn kv_read(address: &str, key: &str, scheme: &str) -> Result<KvRead, String> {
    let tls = match scheme {
        "http" => false,
        "https" => true,
        other => return Err(format!("unknown consul scheme {other:?} (use http or https)")),
    };
    let address = Address::parse(address, tls)?;
    // An agent's socket: the request names localhost, in the scheme `-s` gives.
    let (base, unix) = match address.scheme {
        Scheme::Unix => {
            let scheme = if tls { "https" } else { "http" };
            (format!("{scheme}://localhost"), Some(PathBuf::from(&address.host)))
        }
        Scheme::Http | Scheme::Https => (address.base(), None),
    };
    let (tls, warnings) = tls_from_env()?;
    let mut query = String::from("raw");
    for (variable, param) in [("CONSUL_NAMESPACE", "ns"), ("CONSUL_PARTITION", "partition")] {
        if let Some(value) = env(variable) {
            query.push_str(&format!("&{param}={}", encode(&value, false)));
        }
    }
    let path = encode(key.trim_start_matches('/'), true);
    let headers = env_token()?.map(|t| ("X-Consul-Token", t)).into_iter().collect();
    let url = format!("{base}/v1/kv/{path}?{query}");
    Ok(KvRead { get: Get { url, headers, tls, unix }, warnings })
}

/// Consul's TLS variables as its Go client reads them (`api.DefaultConfig`, applied by
/// `NewClient` whatever the scheme, so a file that cannot be read fails an `http` read too).
fn tls_from_env() -> Result<(Tls, Vec<EnvWarning>), String> {
    let mut tls = Tls::default();
    let mut warnings = Vec::new();
    // A CA file wins over a CA directory; neither: the system's bundle.
    if let Some(file) = env("CONSUL_CACERT") {
        let pem = std::fs::read(&file).map_err(|e| format!("CONSUL_CACERT: cannot read {file}: {e}"))?;
        tls.roots = Some(fetch::certificates(&pem).map_err(|e| format!("CONSUL_CACERT: {file}: {e}"))?);
    } else if let Some(dir) = env("CONSUL_CAPATH") {
        let mut certs = Vec::new();
        ca_directory(Path::new(&dir), 0, &mut certs).map_err(|e| format!("CONSUL_CAPATH: {e}"))?;
        tls.roots = Some(certs);
    }
    match (env("CONSUL_CLIENT_CERT"), env("CONSUL_CLIENT_KEY")) {
        (Some(cert), Some(key)) => {
            tls.client = Some(
                fetch::client_cert(Path::new(&cert), Path::new(&key))
                    .map_err(|e| format!("CONSUL_CLIENT_CERT/CONSUL_CLIENT_KEY: {e}"))?,
            )
        }
        (None, None) => {}
        _ => return Err("CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY: both must be given, or neither".into()),
    }
    if let Some(name) = env("CONSUL_TLS_SERVER_NAME") {
        tls.server_name = Some(server_name(&name).map_err(|e| format!("CONSUL_TLS_SERVER_NAME: {e}"))?);
    }
    if let Some(value) = env("CONSUL_HTTP_SSL_VERIFY") {
        // Go's strconv.ParseBool; what it cannot parse counts as false there, with a warning.
        let verify = match value.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => {
                let shown = betwixt_control::text::escape_for_log(&value);
                warnings.push((
                    "CONSUL_HTTP_SSL_VERIFY",
                    format!(
                        "\"{shown}\" is not a boolean; as Consul's client does, the server's \
                         certificate is not verified"
                    ),
                ));
                false
            }
        };
        tls.unverified = !verify;
    }
    Ok((tls, warnings))
}

/// The host part of `CONSUL_TLS_SERVER_NAME`, as Consul's client takes it: a port after the
/// last `:` (outside brackets) is dropped.
fn server_name(value: &str) -> Result<String, String> {
    // Go's `LastIndex(":") > LastIndex("]")`, with -1 for none: `None` sorts below any `Some`.
    if value.rfind(':') <= value.rfind(']') {
        return Ok(value.to_string());
    }
    let (host, _) = value.rsplit_once(':').unwrap_or((value, ""));
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => Ok(inner.to_string()),
        None if host.contains(':') => Err(format!("too many colons in {value:?}")),
        None => Ok(host.to_string()),
    }
}

/// How deep and how far `CONSUL_CAPATH` is read: a directory of CAs, not a file system.
const CA_DEPTH: usize = 8;
const CA_CERTS: usize = 10_000;

/// Every file under `dir` (Go's `filepath.Walk`), each of which must hold PEM certificates.
fn ca_directory(dir: &Path, depth: usize, certs: &mut Vec<Certificate<'static>>) -> Result<(), String> {
    if depth > CA_DEPTH {
        return Err(format!("{}: deeper than {CA_DEPTH} levels", dir.display()));
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?;
        if kind.is_dir() {
            ca_directory(&path, depth + 1, certs)?;
            continue;
        }
        if certs.len() >= CA_CERTS {
            return Err(format!("{}: more than {CA_CERTS} certificates", dir.display()));
        }
        let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        certs.extend(fetch::certificates(&pem).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms_as_consuls_client_reads_them() {
        let url = |address, key, scheme| kv_read(address, key, scheme).map(|r| r.get.url);
        assert_eq!(
            url("127.0.0.1:8500", "gobetween", "http").unwrap(),
            "http://127.0.0.1:8500/v1/kv/gobetween?raw"
        );
        assert_eq!(url("c:8500", "/lb/conf", "https").unwrap(), "https://c:8500/v1/kv/lb/conf?raw");
        assert_eq!(url("https://c:8501", "k", "http").unwrap(), "https://c:8501/v1/kv/k?raw");
        assert_eq!(url("http://c:8501", "k", "https").unwrap(), "https://c:8501/v1/kv/k?raw");
        assert_eq!(
            url("http://proxy:80/consul/", "k", "http").unwrap(),
            "http://proxy:80/consul/v1/kv/k?raw"
        );
        assert_eq!(url("c:8500", "a b?#%", "http").unwrap(), "http://c:8500/v1/kv/a%20b%3F%23%25?raw");
        assert!(url("c:8500", "k", "ftp").unwrap_err().contains("unknown consul scheme"));
        assert!(url("ftp://c", "k", "http").unwrap_err().contains("unknown protocol scheme"));
        assert_eq!(url("unix:///run/consul.sock", "k", "http").unwrap(), "http://localhost/v1/kv/k?raw");
        let socket = kv_read("unix:///run/consul.sock", "k", "https").unwrap().get;
        assert_eq!(
            (socket.url.as_str(), socket.unix),
            ("https://localhost/v1/kv/k?raw", Some("/run/consul.sock".into()))
        );
        assert!(url("http://", "k", "http").unwrap_err().contains("missing host"));
    }

    #[test]
    fn server_name_drops_a_port_as_consuls_client_does() {
        assert_eq!(server_name("consul.test").unwrap(), "consul.test");
        assert_eq!(server_name("consul.test:8501").unwrap(), "consul.test");
        assert_eq!(server_name("[::1]:8501").unwrap(), "::1");
        assert_eq!(server_name("[::1]").unwrap(), "[::1]");
        assert!(server_name("::1").unwrap_err().contains("too many colons"));
    }
}
