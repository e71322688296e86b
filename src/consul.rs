//! `from-consul ADDRESS`: the one Consul KV read gobetween makes through Consul's Go client,
//! built as a plain HTTP request. Like that client, it takes `http://`, `https://` and a path
//! prefix in the address, and the ACL token and enterprise namespace/partition from Consul's
//! environment variables. Its TLS settings (`CONSUL_CACERT` and friends) are not supported yet
//! and refused rather than ignored.

/// The request that reads the raw value of a key.
#[derive(Debug, PartialEq, Eq)]
pub struct KvRead {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Consul's TLS variables, which its client applies to `https` addresses.
const TLS_VARIABLES: [&str; 5] =
    ["CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME"];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Percent-encodes what Go's URL writer would: everything but unreserved characters, the
/// sub-delimiters Go leaves in paths, and `/` when `path`.
fn encode(text: &str, path: bool) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b) || path && b"/$&+,:;=@".contains(&b);
    text.bytes().map(|b| if keep(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Consul's client: `CONSUL_HTTP_TOKEN_FILE` wins over `CONSUL_HTTP_TOKEN`; a file holding
/// only whitespace means no token.
fn token() -> Result<Option<String>, String> {
    match env("CONSUL_HTTP_TOKEN_FILE") {
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read CONSUL_HTTP_TOKEN_FILE {file}: {e}"))?;
            Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
        }
        None => Ok(env("CONSUL_HTTP_TOKEN")),
    }
}

pub fn kv_read(address: &str, key: &str, scheme: &str) -> Result<KvRead, String> {
    let mut scheme = match scheme {
        "http" | "https" => scheme,
        other => return Err(format!("unknown consul scheme {other:?} (use http or https)")),
    };
    let mut address = address;
    if let Some((prefix, rest)) = address.split_once("://") {
        match prefix {
            // An explicit `-s https` is never turned back into http, as in Consul's client.
            "http" => {}
            "https" => scheme = "https",
            "unix" => return Err("not supported yet: a unix:// Consul address".into()),
            other => return Err(format!("unknown protocol scheme {other:?} in Consul address {address:?}")),
        }
        address = rest;
    }
    let (host, prefix) = match address.split_once('/') {
        Some((host, prefix)) => (host, format!("/{}", prefix.trim_end_matches('/'))),
        None => (address, String::new()),
    };
    if host.is_empty() {
        return Err(format!("missing host in Consul address {address:?} (expected host:port)"));
    }
    if scheme == "https" {
        if let Some(name) = TLS_VARIABLES.iter().find(|name| env(name).is_some()) {
            return Err(format!("not supported yet: {name} (TLS settings for from-consul)"));
        }
        if env("CONSUL_HTTP_SSL_VERIFY")
            .is_some_and(|v| matches!(v.as_str(), "0" | "f" | "F" | "false" | "FALSE" | "False"))
        {
            return Err(
                "not supported yet: CONSUL_HTTP_SSL_VERIFY=false (TLS settings for from-consul)".into()
            );
        }
    }
    let mut query = String::from("raw");
    for (variable, param) in [("CONSUL_NAMESPACE", "ns"), ("CONSUL_PARTITION", "partition")] {
        if let Some(value) = env(variable) {
            query.push_str(&format!("&{param}={}", encode(&value, false)));
        }
    }
    let path = encode(key.trim_start_matches('/'), true);
    let headers = token()?.map(|t| ("X-Consul-Token", t)).into_iter().collect();
    Ok(KvRead { url: format!("{scheme}://{host}{prefix}/v1/kv/{path}?{query}"), headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms_as_consuls_client_reads_them() {
        let url = |address, key, scheme| kv_read(address, key, scheme).map(|r| r.url);
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
        assert!(url("unix:///run/consul.sock", "k", "http").unwrap_err().starts_with("not supported yet"));
        assert!(url("http://", "k", "http").unwrap_err().contains("missing host"));
    }
}
