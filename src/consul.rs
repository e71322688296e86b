//! `from-consul ADDRESS`: the one Consul KV read gobetween makes through Consul's Go client,
//! built as a plain HTTP request. Like that client, it takes `http://`, `https://` and a path
//! prefix in the address, and the ACL token and enterprise namespace/partition from Consul's
//! environment variables. Its TLS settings (`CONSUL_CACERT` and friends) are not supported yet
//! and refused rather than ignored.

use betwixt_control::consul_api::{encode, env, env_token, Address, Scheme};

/// The request that reads the raw value of a key.
#[derive(Debug, PartialEq, Eq)]
pub struct KvRead {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Consul's TLS variables, which its client applies to `https` addresses.
const TLS_VARIABLES: [&str; 5] =
    ["CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME"];

pub fn kv_read(address: &str, key: &str, scheme: &str) -> Result<KvRead, String> {
    let tls = match scheme {
        "http" => false,
        "https" => true,
        other => return Err(format!("unknown consul scheme {other:?} (use http or https)")),
    };
    let address = Address::parse(address, tls)?;
    if address.scheme == Scheme::Unix {
        return Err("not supported yet: a unix:// Consul address".into());
    }
    if address.scheme == Scheme::Https {
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
    let headers = env_token()?.map(|t| ("X-Consul-Token", t)).into_iter().collect();
    Ok(KvRead { url: format!("{}/v1/kv/{path}?{query}", address.base()), headers })
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
