//! Where the Kubernetes API is and how to prove who we are: from a kubeconfig file (its
//! current context) or, without one, from the pod's service account (in-cluster).
//!
//! Of a kubeconfig, betwixt reads what a static client needs: the context's cluster `server`,
//! `certificate-authority(-data)`, `insecure-skip-tls-verify`, and its user's `token`,
//! `tokenFile`, `client-certificate(-data)` and `client-key(-data)`; relative paths are relative
//! to the kubeconfig's directory. Users that need a plugin (`exec`, `auth-provider`) are refused
//! by name. Files are read at each list, so rotated tokens and certificates are picked up.

use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Kubeconfigs, tokens and certificates beyond this are refused: real ones are a few KiB.
pub const MAX_FILE: u64 = 1 << 20;

/// Flow collections (`[`, `{`) beyond this refuse a kubeconfig before it is parsed: the YAML
/// parser's time grows with the square of their nesting (20,000 levels take seconds), and a
/// real kubeconfig, written in block style, has a handful.
pub const MAX_FLOW_COLLECTIONS: usize = 1000;

/// The service account's files in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What a request to the API needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Credentials {
    /// `https://host:port` (or `http://`), with any path prefix, without a final `/`.
    pub server: String,
    /// PEM of the certificate authorities to trust; none: the system's roots do not apply,
    /// the API's certificate must come from these.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub token: Option<String>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// The namespace the context or the pod names.
    pub namespace: Option<String>,
}

/// Reads at most `MAX_FILE` bytes of a file.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("{} is larger than {MAX_FILE} bytes", path.display()));
    }
    Ok(bytes)
}

fn read_text(path: &Path) -> Result<String, String> {
    String::from_utf8(read_bounded(path)?).map_err(|_| format!("{} is not UTF-8", path.display()))
}

/// A token as sent in a header: trimmed, and refused when it holds anything a header cannot.
fn token(text: &str, from: &str) -> Result<Option<String>, String> {
    let token = text.trim();
    if token.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()) {
        return Err(format!("the token of {from} holds a character a header cannot carry"));
    }
    Ok(Some(token.to_string()).filter(|t| !t.is_empty()))
}

/// In-cluster: `KUBERNETES_SERVICE_HOST`/`_PORT` and the service account's token, CA and
/// namespace in `dir`.
pub fn in_cluster(dir: &Path) -> Result<Credentials, String> {
    let var = |name: &str| {
        std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
            format!("{name} is not set: not in a pod; set kubernetes_kubeconfig_path to reach the API from outside")
        })
    };
    let (host, port) = (var("KUBERNETES_SERVICE_HOST")?, var("KUBERNETES_SERVICE_PORT")?);
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let token_path = dir.join("token");
    Ok(Credentials {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(read_bounded(&dir.join("ca.crt"))?),
        insecure: false,
        token: token(&read_text(&token_path)?, &token_path.display().to_string())?,
        client_cert_pem: None,
        client_key_pem: None,
        namespace: read_text(&dir.join("namespace"))
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
    })
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    item: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: Option<String>,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
    exec: Option<serde::de::IgnoredAny>,
    auth_provider: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
    namespace: Option<String>,
}

fn find<'a, T>(items: &'a [Named<T>], name: &str, what: &str) -> Result<Option<&'a T>, String> {
    let item = items.iter().find(|i| i.name == name).ok_or_else(|| format!("no {what} named {name:?}"))?;
    Ok(item.item.as_ref())
}

/// The current context of the kubeconfig at `path`.
pub fn from_kubeconfig(path: &Path) -> Result<Credentials, String> {
    from_kubeconfig_text(&read_text(path)?, path)
}

/// The current context of `text`, a kubeconfig read from `path` (which names it in errors, and
/// against whose folder relative file names are read).
pub fn from_kubeconfig_text(text: &str, path: &Path) -> Result<Credentials, String> {
    if text.bytes().filter(|b| matches!(b, b'[' | b'{')).count() > MAX_FLOW_COLLECTIONS {
        return Err(format!("{} has more than {MAX_FLOW_COLLECTIONS} [ and {{", path.display()));
    }
    let config: Kubeconfig =
        serde_norway::from_str(text).map_err(|e| format!("{} is not a kubeconfig: {e}", path.display()))?;
    let at = |e: String| format!("{}: {e}", path.display());
    if config.current_context.is_empty() {
        return Err(at("no current-context".into()));
    }
    let context = find(&config.contexts, &config.current_context, "context").map_err(at)?;
    let context = context.ok_or_else(|| at("the current context is empty".into()))?;
    let default = Cluster::default();
    let cluster = find(&config.clusters, &context.cluster, "cluster").map_err(at)?.unwrap_or(&default);
    let no_user = User::default();
    let user = if context.user.is_empty() {
        &no_user
    } else {
        find(&config.users, &context.user, "user").map_err(at)?.unwrap_or(&no_user)
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(at(format!(
            "user {:?} needs a credential plugin (exec, auth-provider): not supported",
            context.user
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let server = cluster
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| at("the cluster has no server".into()))?;
    let token = match (&user.token, &user.token_file) {
        (Some(text), _) => token(text, &path.display().to_string())?,
        (None, Some(file)) => {
            let file = relative(dir, file);
            token(&read_text(&file)?, &file.display().to_string())?
        }
        (None, None) => None,
    };
    Ok(Credentials {
        server: server.trim_end_matches('/').to_string(),
        ca_pem: pem(dir, &cluster.certificate_authority_data, &cluster.certificate_authority).map_err(at)?,
        insecure: cluster.insecure_skip_tls_verify,
        token,
        client_cert_pem: pem(dir, &user.client_certificate_data, &user.client_certificate).map_err(at)?,
        client_key_pem: pem(dir, &user.client_key_data, &user.client_key).map_err(at)?,
        namespace: context.namespace.clone().filter(|n| !n.is_empty()),
    })
}

fn relative(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

/// A PEM given inline (`*-data`, base64) or as a file; inline wins, as in kubectl.
fn pem(dir: &Path, data: &Option<String>, file: &Option<String>) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine;
    match (data.as_deref().filter(|d| !d.is_empty()), file.as_deref().filter(|f| !f.is_empty())) {
        (Some(data), _) => {
            let data: String = data.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map(Some)
                .map_err(|e| format!("inline certificate data is not base64: {e}"))
        }
        (None, Some(file)) => read_bounded(&relative(dir, file)).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("betwixt-kube-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
preferences: {}
clusters:
- name: prod
  cluster: {server: "https://prod:6443"}
- name: local
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: ca.pem
    extensions: [{name: x, extension: {a: 1}}]
contexts:
- name: dev
  context: {cluster: local, user: me, namespace: shop}
- name: other
  context: {cluster: prod, user: plugin}
users:
- name: me
  user:
    tokenFile: token
    client-certificate-data: Q0VSVA==
    client-key: key.pem
- name: plugin
  user:
    exec: {command: aws, args: [eks, get-token]}
"#;

    #[test]
    fn the_current_context_of_a_kubeconfig() {
        let dir = temp_dir("config");
        write(&dir, "ca.pem", "CA");
        write(&dir, "token", "  abc.def \n");
        write(&dir, "key.pem", "KEY");
        let path = write(&dir, "config", CONFIG);
        let c = from_kubeconfig(&path).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(c.token.as_deref(), Some("abc.def"));
        assert_eq!(c.client_cert_pem.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(c.client_key_pem.as_deref(), Some(&b"KEY"[..]));
        assert_eq!((c.namespace.as_deref(), c.insecure), (Some("shop"), false));

        let plugin = write(&dir, "plugin", &CONFIG.replace("current-context: dev", "current-context: other"));
        assert!(from_kubeconfig(&plugin).unwrap_err().contains("credential plugin"));
        let missing =
            write(&dir, "missing", &CONFIG.replace("current-context: dev", "current-context: none"));
        assert!(from_kubeconfig(&missing).unwrap_err().contains("no context named \"none\""));
        let inline = "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n\
                      clusters: [{name: k, cluster: {server: 'http://h:1', insecure-skip-tls-verify: true, token: x}}]\n";
        let c = from_kubeconfig(&write(&dir, "inline", inline)).unwrap();
        assert_eq!((c.server.as_str(), c.insecure, c.token, c.namespace), ("http://h:1", true, None, None));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hostile_kubeconfigs_are_refused() {
        let dir = temp_dir("hostile");
        // Aliases that expand a billion times.
        let mut laughs =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (name, prev) in
            ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            laughs.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        laughs.push_str("current-context: *i\n");
        assert!(from_kubeconfig(&write(&dir, "laughs", &laughs)).is_err());
        // Nesting the parser would take minutes over.
        let deep = format!("current-context: {}{}", "{a: ".repeat(100_000), "}".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(from_kubeconfig(&write(&dir, "deep", &deep)).unwrap_err().contains("more than"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let dashes = format!("current-context: x\nclusters:\n{}x\n", "- ".repeat(400_000));
        assert!(from_kubeconfig(&write(&dir, "dashes", &dashes)).is_err());
        let big = "#".repeat(MAX_FILE as usize + 1);
        assert!(from_kubeconfig(&write(&dir, "big", &big)).unwrap_err().contains("larger than"));
        let forged = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n\
                      clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n\
                      users: [{name: u, user: {token: \"a\\r\\nX-Evil: 1\"}}]\n";
        assert!(from_kubeconfig(&write(&dir, "forged", forged)).unwrap_err().contains("header"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn in_cluster_needs_the_pods_environment() {
        // The variables are not set where the tests run (and are not set by them).
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            assert!(in_cluster(Path::new("/nonexistent")).unwrap_err().contains("KUBERNETES_SERVICE_HOST"));
        }
    }
}
