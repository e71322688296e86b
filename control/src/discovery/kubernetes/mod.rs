//! `kind = "kubernetes"` (a betwixt addition): the ready endpoints of a Service, from its
//! EndpointSlices, watched. One list
//! (`GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices?labelSelector=kubernetes.io/service-name=SVC`)
//! gives the whole state and a resourceVersion; a watch from that version then streams each
//! change as it happens. A watch that ends is started again from the last version seen; one
//! the API refuses as too old (410 Gone) is a new list.

pub mod credentials;
pub mod slices;

use super::http::{LineStream, Scheme};
use super::{own_tls, Found, SectionError, Source};
use crate::config::Discovery;
use crate::consul_api::encode;
use credentials::Credentials;
use slices::{Event, Slices, WatchEnd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::{timeout, Instant};

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

/// One watch event beyond this fails the watch (an EndpointSlice holds at most 1000
/// endpoints, a few hundred KiB).
pub const MAX_EVENT: usize = 4 << 20;

/// The source: its settings and, between fetches, the slices known and the open watch.
pub struct Kubernetes {
    settings: Settings,
    state: tokio::sync::Mutex<State>,
}

/// What a list sets up and the watches after it use.
struct State {
    slices: Slices,
    /// The endpoint and namespace of the last list (credentials are read again at each list).
    api: Option<(super::http::Endpoint, String)>,
    watch: Option<LineStream>,
}

impl Kubernetes {
    pub fn from_section(d: &Discovery) -> Result<Kubernetes, SectionError> {
        let settings = Settings::from_section(d)?;
        let state = State { slices: Slices::new(settings.port_name.clone()), api: None, watch: None };
        Ok(Kubernetes { settings, state: tokio::sync::Mutex::new(state) })
    }

    fn credentials(&self) -> Result<Credentials, String> {
        match &self.settings.access {
            Access::Kubeconfig(path) => credentials::from_kubeconfig(path),
            Access::InCluster => credentials::in_cluster(Path::new(credentials::SERVICE_ACCOUNT_DIR)),
        }
    }

    /// Reads the credentials, lists the slices and forgets any watch.
    async fn list(&self, state: &mut State) -> Result<Found, String> {
        state.watch = None;
        let c = self.credentials()?;
        let pair = c.client_cert_pem.as_deref().zip(c.client_key_pem.as_deref());
        let config = crate::tls::client_config_pem(c.ca_pem.as_deref(), pair, c.insecure)
            .map_err(|e| format!("TLS to {}: {e}", c.server))?;
        let allowed = [Scheme::Http, Scheme::Https];
        let endpoint = if c.server.starts_with("http://") {
            super::http::Endpoint::parse_with("server", &c.server, &allowed)
        } else {
            own_tls::endpoint("server", &c.server, &allowed, config)
        };
        let mut endpoint = endpoint.map_err(|e| format!("API server: {}", e.message))?;
        if let Some(token) = &c.token {
            endpoint = endpoint.with_bearer("token", token).map_err(|e| format!("token: {}", e.message))?;
        }
        let namespace = self.settings.namespace.clone().or(c.namespace).unwrap_or_else(|| "default".into());
        let answer = endpoint.get_path(&self.settings.list_path(&namespace)).await?;
        let body = std::str::from_utf8(&answer.body).map_err(|_| "answer is not UTF-8".to_string())?;
        state.slices.list(body)?;
        state.api = Some((endpoint, namespace));
        Ok(state.slices.found())
    }

    /// A list in the middle of watching, bounded like the runner bounds a first one.
    async fn relist(&self, state: &mut State, prompt: Duration) -> Result<Found, String> {
        match timeout(prompt, self.list(state)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer to the list within {}", crate::config::GoDuration(prompt))),
        }
    }

    /// Waits on the watch (opening it when none is open) until the slices change or
    /// `deadline`; a watch the API ends is opened again from the last version seen, one it
    /// refuses or cuts short (410 Gone) is a new list.
    async fn watch(&self, state: &mut State, deadline: Instant, prompt: Duration) -> Result<Found, String> {
        loop {
            if state.watch.is_none() {
                let Some((endpoint, namespace)) = &state.api else { return self.list(state).await };
                let path = self.settings.watch_path(namespace, &state.slices.resource_version);
                match timeout(prompt, endpoint.stream(&path, MAX_EVENT)).await {
                    Ok(Ok(stream)) => state.watch = Some(stream),
                    // Refused (410 Gone among others): list again, which says what is wrong if
                    // anything still is.
                    Ok(Err(_)) | Err(_) => return self.relist(state, prompt).await,
                }
            }
            let stream = state.watch.as_mut().expect("opened above");
            let silent_until = (Instant::now() + WATCH_SILENCE).min(deadline);
            let line = match tokio::time::timeout_at(silent_until, stream.next_line()).await {
                Err(_) if silent_until == deadline => return Ok(state.slices.found()),
                // Silent far past the API's own timeout: the connection is lost.
                Err(_) => {
                    state.watch = None;
                    continue;
                }
                Ok(Ok(Some(line))) => line,
                // The API ended the watch (timeoutSeconds): go on from the last version.
                Ok(Ok(None)) => {
                    state.watch = None;
                    continue;
                }
                // A cut connection (an API server restarting) or a line too long: a new list
                // says whether the API is really unreachable.
                Ok(Err(_)) => return self.relist(state, prompt).await,
            };
            let line = String::from_utf8_lossy(&line);
            match state.slices.apply(&line) {
                Ok(Event::Changed) => return Ok(state.slices.found()),
                Ok(Event::Bookmark) => {}
                Err(end) => {
                    if let WatchEnd::Failed(why) = end {
                        log::debug!("kubernetes watch of {}: {why}; listing again", self.settings.service);
                    }
                    return self.relist(state, prompt).await;
                }
            }
        }
    }
}

impl Source for Kubernetes {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    const RETRY_WAIT: Duration = Duration::from_secs(2);
    const WATCHES: bool = true;

    async fn fetch(&self) -> Result<Found, String> {
        let mut state = self.state.lock().await;
        self.list(&mut state).await
    }

    async fn fetch_changed(&self, wait: Duration, prompt: Duration) -> Result<Found, String> {
        let mut state = self.state.lock().await;
        let deadline = Instant::now() + wait;
        self.watch(&mut state, deadline, prompt).await
    }
}

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
