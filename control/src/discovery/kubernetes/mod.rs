//! `kind = "kubernetes"` (a betwixt addition): the ready endpoints of a Service, from its
//! EndpointSlices, watched. One list
//! (`GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices?labelSelector=kubernetes.io/service-name=SVC`)
//! gives the whole state and a resourceVersion; a watch from that version then streams each
//! change as it happens. A watch that ends is started again from the last version seen; one
//! the API refuses as too old (410 Gone) is a new list.

pub mod credentials;
pub mod slices;

use super::SectionError;
use crate::config::Discovery;
use crate::consul_api::encode;
use std::path::PathBuf;
use std::time::Duration;

/// How long the API keeps one watch open (`timeoutSeconds`) before betwixt starts the next.
pub const WATCH_SECONDS: u64 = 60;

/// Where the credentials come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    Kubeconfig(PathBuf),
    InCluster,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub access: Access,
    /// `None`: the context's or the pod's namespace, else `default`.
    pub namespace: Option<String>,
    pub service: String,
    pub port_name: Option<String>,
}

/// A DNS-1123 label, as Kubernetes requires of namespace and Service names.
fn is_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl Settings {
    pub fn from_section(d: &Discovery) -> Result<Settings, SectionError> {
        let service = given(&d.kubernetes_service_name).ok_or_else(|| {
            SectionError::new("kubernetes_service_name", "required: the Service to discover")
        })?;
        if !is_label(service) {
            return Err(SectionError::new(
                "kubernetes_service_name",
                format!("{service:?} is not a Service name"),
            ));
        }
        let namespace = given(&d.kubernetes_namespace);
        if let Some(namespace) = namespace.filter(|n| !is_label(n)) {
            return Err(SectionError::new(
                "kubernetes_namespace",
                format!("{namespace:?} is not a namespace name"),
            ));
        }
        let port_name = given(&d.kubernetes_port_name);
        if let Some(name) = port_name.filter(|n| n.len() > 63 || n.contains(|c: char| c.is_control())) {
            return Err(SectionError::new("kubernetes_port_name", format!("{name:?} is not a port name")));
        }
        let access = match given(&d.kubernetes_kubeconfig_path) {
            Some(path) => Access::Kubeconfig(PathBuf::from(path)),
            None => Access::InCluster,
        };
        Ok(Settings {
            access,
            namespace: namespace.map(String::from),
            service: service.to_string(),
            port_name: port_name.map(String::from),
        })
    }

    /// The path and query of the list.
    pub fn list_path(&self, namespace: &str) -> String {
        let selector = encode(&format!("kubernetes.io/service-name={}", self.service), false);
        format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector={selector}")
    }

    /// The path and query of a watch from `version`.
    pub fn watch_path(&self, namespace: &str, version: &str) -> String {
        format!(
            "{}&watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}",
            self.list_path(namespace),
            encode(version, false)
        )
    }
}

/// The longest a watch may stay silent: the API closes it after `timeoutSeconds` (and sends
/// bookmarks meanwhile), so silence well past that is a lost connection.
pub const WATCH_SILENCE: Duration = Duration::from_secs(WATCH_SECONDS + 30);

#[cfg(test)]
mod tests {
    use super::*;

    fn section(keys: &[(&str, &str)]) -> Discovery {
        let mut d = Discovery { kubernetes_service_name: Some("web".into()), ..Discovery::default() };
        for (key, value) in keys {
            let value = Some(value.to_string());
            match *key {
                "service" => d.kubernetes_service_name = value,
                "namespace" => d.kubernetes_namespace = value,
                "port" => d.kubernetes_port_name = value,
                _ => d.kubernetes_kubeconfig_path = value,
            }
        }
        d
    }

    #[test]
    fn the_requests_of_a_section() {
        let s = Settings::from_section(&section(&[("namespace", "shop"), ("port", "http")])).unwrap();
        assert_eq!((s.access.clone(), s.port_name.as_deref()), (Access::InCluster, Some("http")));
        assert_eq!(
            s.list_path("shop"),
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb"
        );
        assert!(s
            .watch_path("shop", "12 3")
            .ends_with("&watch=1&resourceVersion=12%203&allowWatchBookmarks=true&timeoutSeconds=60"));
        let s = Settings::from_section(&section(&[("kubeconfig", "/k/config")])).unwrap();
        assert_eq!((s.access, s.namespace), (Access::Kubeconfig("/k/config".into()), None));
    }

    #[test]
    fn sections_that_cannot_work() {
        let field = |keys: &[(&str, &str)]| Settings::from_section(&section(keys)).unwrap_err().field;
        assert_eq!(field(&[("service", "")]), "kubernetes_service_name");
        assert_eq!(field(&[("service", "Web")]), "kubernetes_service_name");
        assert_eq!(field(&[("service", "a/b")]), "kubernetes_service_name");
        assert_eq!(field(&[("namespace", "../x")]), "kubernetes_namespace");
        assert_eq!(field(&[("port", "a\nb")]), "kubernetes_port_name");
    }
}
