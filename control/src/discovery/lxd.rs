//! `kind = "lxd"`: the running containers of an LXD server (`lxd_server_address`: its
//! `unix://` socket or `https://`), as gobetween reads them: those with the setting
//! `lxd_container_label_key` (equal to `lxd_container_label_value` when that is set), at the
//! first usable address of family `lxd_container_address_type` (`IPv4` or `IPv6`) on the interface
//! `lxd_container_interface` (or the one a container's `lxd_container_interface_key` setting
//! names), port `lxd_container_port` (or a container's `lxd_container_port_key` setting), SNI
//! from a container's `lxd_container_sni_key` setting. Usable means not link- or host-scoped:
//! LXD lists every interface's `fe80::` address (scope `link`), which cannot be dialled without
//! naming the interface, and is the only IPv6 one until a global address is configured;
//! gobetween took it as the first `inet6` address.
//!
//! One request per round: `/1.0/containers?recursion=2` carries each container's state (its
//! addresses) along. Over HTTPS betwixt authenticates with the client certificate of the `lxc`
//! configuration in `lxd_config_directory` (`client.crt`, `client.key`) and verifies the
//! server with the certificate `lxc remote add` stored (`servercerts/<remote name>.crt`), else
//! the system's CAs; `lxd_accept_server_cert = true` takes any server certificate. Enrolling
//! with `lxd_server_remote_password` and generating client certificates are gobetween's
//! one-time set-up steps, which betwixt leaves to `lxc` (see `from_section`).

use super::http::{tls, Endpoint, Proxies, Scheme};
use super::{Found, SectionError, Source};
use crate::backend::BackendSpec;
use crate::config::depth::check_json_depth;
use crate::config::Discovery;
use crate::text::is_unsafe;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct Lxd {
    endpoint: Endpoint,
    label: Option<(String, Option<String>)>,
    port: Option<u16>,
    port_key: Option<String>,
    interface: String,
    interface_key: Option<String>,
    sni_key: Option<String>,
    /// `inet` or `inet6`.
    family: &'static str,
}

impl Lxd {
    pub fn from_section(d: &Discovery) -> Result<Lxd, SectionError> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let address = d.lxd_server_address.as_deref().unwrap_or("");
        // gobetween's LXD client takes proxies from the environment (for an https remote).
        let mut endpoint =
            Endpoint::parse_with("lxd_server_address", address, &[Scheme::Unix, Scheme::Https])?
                .with_proxies(Proxies::from_env());
        if endpoint.address().scheme == Scheme::Https {
            endpoint = endpoint.with_tls(https_client(d)?);
        }
        let family = match d.lxd_container_address_type.as_deref() {
            None | Some("") | Some("IPv4") => "inet",
            Some("IPv6") => "inet6",
            Some(other) => {
                return Err(SectionError::new(
                    "lxd_container_address_type",
                    format!("{other:?} is neither \"IPv4\" nor \"IPv6\""),
                ))
            }
        };
        let port = d.lxd_container_port.filter(|&p| p != 0);
        let port_key = given(&d.lxd_container_port_key);
        if port.is_none() && port_key.is_none() {
            return Err(SectionError::new(
                "lxd_container_port",
                "required (or lxd_container_port_key): the port the containers listen on",
            ));
        }
        Ok(Lxd {
            endpoint,
            label: given(&d.lxd_container_label_key).map(|k| (k, given(&d.lxd_container_label_value))),
            port,
            port_key,
            interface: given(&d.lxd_container_interface).unwrap_or_else(|| "eth0".into()),
            interface_key: given(&d.lxd_container_interface_key),
            sni_key: given(&d.lxd_container_sni_key),
            family,
        })
    }

    pub(crate) fn read(&self, body: &[u8]) -> Result<Found, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the container list is not UTF-8".to_string())?;
        check_json_depth(text).map_err(|e| format!("the container list is no usable JSON: {}", e.message))?;
        let answer: Answer =
            sonic_rs::from_str(text).map_err(|e| format!("the container list is no usable JSON: {e}"))?;
        let mut found = Found::default();
        for container in answer.metadata {
            if container.status != "Running" {
                continue;
            }
            let setting = |key: &Option<String>| key.as_ref().and_then(|k| container.config.get(k));
            if let Some((key, value)) = &self.label {
                match container.config.get(key) {
                    None => continue,
                    Some(actual) if value.as_ref().is_some_and(|v| v != actual) => continue,
                    Some(_) => {}
                }
            }
            let skip = |why: String| format!("container {:?}: {why}: skipped", container.name);
            let port = match setting(&self.port_key) {
                Some(text) => match text.parse::<u16>() {
                    Ok(port) if port != 0 => port,
                    _ => {
                        found.notes.push(skip(format!("port {text:?} is not a port number")));
                        continue;
                    }
                },
                None => match self.port {
                    Some(port) => port,
                    None => {
                        found.notes.push(skip("no port in lxd_container_port_key's setting".into()));
                        continue;
                    }
                },
            };
            let interface = setting(&self.interface_key).unwrap_or(&self.interface);
            let address = container
                .state
                .as_ref()
                .and_then(|s| s.network.as_ref())
                .and_then(|n| n.get(interface))
                .and_then(|i| i.addresses.iter().find(|a| a.family == self.family && a.usable()))
                .map(|a| a.address.as_str());
            let Some(address) = address.filter(|a| !a.is_empty() && !a.contains(is_unsafe)) else {
                found.notes.push(skip(format!("no {} address on {interface:?}", self.family)));
                continue;
            };
            let mut spec = BackendSpec::new(address, port);
            spec.sni = setting(&self.sni_key).filter(|s| !s.is_empty() && !s.contains(is_unsafe)).cloned();
            found.backends.push(spec);
        }
        Ok(found)
    }
}

/// The TLS client of an `https://` server: see the module comment.
fn https_client(d: &Discovery) -> Result<std::sync::Arc<rustls::ClientConfig>, SectionError> {
    if d.lxd_server_remote_password.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(SectionError::new(
            "lxd_server_remote_password",
            "not supported: trust betwixt's client certificate on the server beforehand \
             (`lxc remote add` with the password, or `lxc config trust add`)",
        ));
    }
    let directory = match d.lxd_config_directory.as_deref().filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".config/lxc"),
    };
    let (cert, key) = (directory.join("client.crt"), directory.join("client.key"));
    if !cert.exists() && d.lxd_generate_client_certs.unwrap_or(false) {
        return Err(SectionError::new(
            "lxd_generate_client_certs",
            format!("not supported: create {} and client.key with `lxc remote add`", cert.display()),
        ));
    }
    let remote = d.lxd_server_remote_name.as_deref().filter(|r| !r.is_empty()).unwrap_or("local");
    let server_cert = directory.join("servercerts").join(format!("{remote}.crt"));
    let accept_any = d.lxd_accept_server_cert.unwrap_or(false);
    let (cert, key, server_cert) = (cert.to_str(), key.to_str(), server_cert.to_str().map(String::from));
    let files = tls::Files {
        ca: server_cert.as_deref().filter(|p| !accept_any && std::path::Path::new(p).exists()),
        cert,
        key,
        ignore_verify: accept_any,
    };
    let keys =
        tls::Keys { ca: "lxd_server_remote_name", cert: "lxd_config_directory", key: "lxd_config_directory" };
    tls::client(&files, &keys)
}

impl Source for Lxd {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    const RETRY_WAIT: Duration = Duration::from_secs(2);

    async fn fetch(&self) -> Result<Found, String> {
        let answer = self.endpoint.get_path("/1.0/containers?recursion=2").await?;
        self.read(&answer.body)
    }
}

/// LXD's synchronous answer; its `metadata` is the container list.
#[derive(Deserialize)]
struct Answer {
    metadata: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    config: HashMap<String, String>,
    #[serde(default)]
    state: Option<State>,
}

#[derive(Deserialize)]
struct State {
    #[serde(default)]
    network: Option<HashMap<String, Interface>>,
}

#[derive(Deserialize)]
struct Interface {
    #[serde(default)]
    addresses: Vec<Address>,
}

#[derive(Deserialize)]
struct Address {
    #[serde(default)]
    family: String,
    #[serde(default)]
    address: String,
    /// `global`, `link` or `local` (host).
    #[serde(default)]
    scope: String,
}

impl Address {
    /// Reachable from the load balancer's host: see the module comment.
    fn usable(&self) -> bool {
        self.scope != "link" && self.scope != "local"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lxd(keys: &[(&str, &str)]) -> Result<Lxd, SectionError> {
        let mut d = Discovery {
            lxd_server_address: Some("unix:///var/lib/lxd/unix.socket".into()),
            lxd_container_port: Some(80),
            ..Discovery::default()
        };
        for (key, value) in keys {
            let v = Some(value.to_string());
            match *key {
                "address" => d.lxd_server_address = v,
                "port" => d.lxd_container_port = value.parse().ok(),
                "port_key" => d.lxd_container_port_key = v,
                "label" => d.lxd_container_label_key = v,
                "value" => d.lxd_container_label_value = v,
                "type" => d.lxd_container_address_type = v,
                "sni" => d.lxd_container_sni_key = v,
                "password" => d.lxd_server_remote_password = v,
                "dir" => d.lxd_config_directory = v,
                _ => panic!("{key}"),
            }
        }
        Lxd::from_section(&d)
    }

    /// `/1.0/containers?recursion=2` as LXD answers it (trimmed to the fields read, plus a few).
    const LIST: &str = r#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"",
      "metadata":[
        {"name":"web1","status":"Running","status_code":103,"type":"container",
         "config":{"user.label":"web","user.port":"8081","user.sni":"a.example","image.os":"Debian"},
         "state":{"status":"Running","status_code":103,"network":{
           "eth0":{"addresses":[{"family":"inet6","address":"fe80::216:3eff:fe00:5","netmask":"64","scope":"link"},
                                {"family":"inet6","address":"fd42::5","netmask":"64","scope":"global"},
                                {"family":"inet","address":"10.0.3.5","netmask":"24","scope":"global"}],
                   "host_name":"veth1","mtu":1500,"state":"up","type":"broadcast"},
           "lo":{"addresses":[{"family":"inet","address":"127.0.0.1","netmask":"8","scope":"local"}]}}}},
        {"name":"web2","status":"Stopped","status_code":102,"config":{"user.label":"web"},"state":null},
        {"name":"db","status":"Running","config":{"user.label":"db"},
         "state":{"network":{"eth0":{"addresses":[{"family":"inet","address":"10.0.3.6"},
           {"family":"inet6","address":"fe80::216:3eff:fe00:6","netmask":"64","scope":"link"}]}}}},
        {"name":"bad","status":"Running","config":{"user.label":"web","user.port":"http"},"state":null}
      ]}"#;

    #[test]
    fn containers_read_as_gobetween_reads_them() {
        let all = lxd(&[]).unwrap().read(LIST.as_bytes()).unwrap();
        let hosts: Vec<_> = all.backends.iter().map(|b| b.address()).collect();
        assert_eq!(hosts, ["10.0.3.5:80", "10.0.3.6:80"]);
        assert_eq!(all.notes.len(), 1, "bad has no address: {:?}", all.notes);
        let l =
            lxd(&[("label", "user.label"), ("value", "web"), ("port_key", "user.port"), ("sni", "user.sni")])
                .unwrap();
        let found = l.read(LIST.as_bytes()).unwrap();
        assert_eq!(found.backends.len(), 1, "{:?}", found.notes);
        assert_eq!(
            (found.backends[0].address(), found.backends[0].sni.as_deref()),
            ("10.0.3.5:8081".into(), Some("a.example"))
        );
        assert_eq!(found.notes.len(), 1, "bad port: {:?}", found.notes);
    }

    /// A real LXD lists each interface's `fe80::` address, first when it was configured
    /// first; it cannot be dialled without the interface, so it is no backend.
    #[test]
    fn link_local_addresses_are_not_backends() {
        let found = lxd(&[("type", "IPv6")]).unwrap().read(LIST.as_bytes()).unwrap();
        let hosts: Vec<_> = found.backends.iter().map(|b| b.address()).collect();
        assert_eq!(hosts, ["[fd42::5]:80"]);
        assert!(
            found.notes.iter().any(|n| n.contains("\"db\"") && n.contains("no inet6")),
            "{:?}",
            found.notes
        );
    }

    #[test]
    fn hostile_lists_fail() {
        let l = lxd(&[]).unwrap();
        assert!(l.read(b"<html>").is_err());
        assert!(l.read(format!("{}{}", "[".repeat(1000), "]".repeat(1000)).as_bytes()).is_err());
        assert!(l.read(br#"{"metadata":{"a":1}}"#).is_err());
    }

    #[test]
    fn sections_are_checked() {
        let field = |keys: &[(&str, &str)]| lxd(keys).err().unwrap().field;
        assert_eq!(field(&[("address", "")]), "lxd_server_address");
        assert_eq!(field(&[("address", "http://h:8443")]), "lxd_server_address");
        assert_eq!(field(&[("port", "0")]), "lxd_container_port");
        assert!(lxd(&[("port", "0"), ("port_key", "user.port")]).is_ok());
        assert_eq!(field(&[("type", "ipv4")]), "lxd_container_address_type");
        assert_eq!(field(&[("address", "https://h:8443"), ("password", "x")]), "lxd_server_remote_password");
        assert_eq!(field(&[("address", "https://h:8443"), ("dir", "/nonexistent")]), "lxd_config_directory");
    }
}
