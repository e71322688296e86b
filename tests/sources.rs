//! Configuration fetched over HTTP: `from-url`, and `from-consul`, which reads Consul's KV
//! endpoint `GET /v1/kv/KEY?raw`. No Consul agent runs here, so the Consul tests serve the
//! exact response shape Consul gives for a raw KV read (the stored value as the body), over
//! plain HTTP and over TLS as an agent with `verify_incoming` does.

mod common;

use common::backends::{Backend, Behaviour};
use common::connect_proxy::{socks5_to, tunnel_to};
use common::replay::{respond, serve, Shared};
use common::{free_port, serve_http, serve_until_named, serve_until_named_with_env, TempDir};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The request line of the next request the server saw.
fn request_line(requests: &std::sync::mpsc::Receiver<String>) -> String {
    requests.recv_timeout(Duration::from_secs(1)).unwrap().lines().next().unwrap_or_default().to_string()
}

fn config(port: u16, backend: &Backend) -> String {
    format!(
        "[servers.remote]\nbind = \"127.0.0.1:{port}\"\n[servers.remote.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n",
        backend.line()
    )
}

#[test]
fn from_url_fetches_and_runs() {
    let backend = Backend::start("url", Behaviour::Named);
    let port = free_port();
    let (http, requests) = serve_http(config(port, &backend));
    let url = format!("http://127.0.0.1:{http}/betwixt.toml");
    assert!(serve_until_named(&["from-url", &url], port, "url").0);
    assert_eq!(request_line(&requests), "GET /betwixt.toml HTTP/1.1");
}

#[test]
fn from_consul_reads_the_raw_key() {
    let backend = Backend::start("consul", Behaviour::Named);
    let port = free_port();
    let (http, requests) = serve_http(config(port, &backend));
    let host = format!("127.0.0.1:{http}");
    assert!(
        serve_until_named(&["from-consul", &host, "--key", "betwixt/config", "-f", "toml"], port, "consul").0
    );
    assert_eq!(request_line(&requests), "GET /v1/kv/betwixt/config?raw HTTP/1.1");
}

#[test]
fn from_consul_reads_an_agents_unix_socket() {
    let backend = Backend::start("consul-unix", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("consul-unix");
    let agent =
        common::unix_http::UnixDocument::serve(dir.0.join("consul.sock"), &config(port, &backend), "/none");
    let address = format!("unix://{}", agent.socket.display());
    assert!(
        serve_until_named(&["from-consul", &address, "--key", "lb", "-f", "toml"], port, "consul-unix").0
    );
}

#[test]
fn from_url_reports_unreachable_source() {
    let dead = common::RefusingPort::new();
    let out = Command::new(common::binary())
        .args(["from-url", &format!("http://127.0.0.1:{}/c.toml", dead.port)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot fetch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Consul agent over TLS: its certificate names `consul.test`, not the address it listens
/// on, and it takes only clients whose certificate its CA signed (Consul's `verify_incoming`).
/// The CA, a client certificate and key are files in `dir`, the CA also alone in `dir/cas/`.
struct TlsConsul {
    dir: TempDir,
    port: u16,
    shared: Arc<Shared<()>>,
}

impl TlsConsul {
    fn start(value: String) -> TlsConsul {
        let provider = || Arc::new(rustls::crypto::ring::default_provider());
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let signed = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            (params.signed_by(&key, &ca, &ca_key).unwrap(), key)
        };
        let (server, server_key) = signed("consul.test");
        let (client, client_key) = signed("betwixt.test");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(server.der().to_vec())],
                PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
            )
            .unwrap();
        let config = Arc::new(config);
        let wrap = move |tcp: TcpStream| {
            let connection = rustls::ServerConnection::new(config.clone()).ok()?;
            Some(rustls::StreamOwned::new(connection, tcp))
        };
        let shared = Shared::new(());
        let port = serve(shared.clone(), wrap, move |_, _, stream| {
            respond(stream, "200 OK", "X-Consul-Index: 7\r\n", &value)
        });
        let dir = TempDir::new("consul-tls");
        dir.write("ca.pem", &ca.pem());
        dir.write("client.pem", &client.pem());
        dir.write("client-key.pem", &client_key.serialize_pem());
        std::fs::create_dir(dir.0.join("cas")).unwrap();
        dir.write("cas/ca.pem", &ca.pem());
        TlsConsul { dir, port, shared }
    }

    fn file(&self, name: &str) -> String {
        self.dir.0.join(name).display().to_string()
    }

    /// The variables that reach this agent: its CA, the client certificate, the server name.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CONSUL_CACERT", self.file("ca.pem")),
            ("CONSUL_CLIENT_CERT", self.file("client.pem")),
            ("CONSUL_CLIENT_KEY", self.file("client-key.pem")),
            ("CONSUL_TLS_SERVER_NAME", "consul.test:8501".to_string()),
        ]
    }
}

/// `args` with `env`, expected to exit: its status and stderr (killed and failed after 10 s).
fn exits(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let mut child = Command::new(common::binary())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("betwixt {args:?} with {env:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn from_consul_speaks_tls_as_consuls_environment_says() {
    let backend = Backend::start("consul-tls", Behaviour::Named);
    let port = free_port();
    let consul = TlsConsul::start(config(port, &backend));
    let address = format!("127.0.0.1:{}", consul.port);
    let args = ["from-consul", &address, "--scheme", "https", "--key", "lb/config", "-f", "toml"];
    let serves = |env: &[(&'static str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        serve_until_named_with_env(&args, &env, port, "consul-tls").0
    };

    assert!(serves(&consul.env()), "with the CA, the client certificate and the server name");
    let seen = consul.shared.requests_to("/v1/kv/lb/config");
    let host = seen.last().map(|r| r.headers.get("host").cloned());
    assert_eq!(host, Some(Some(address.clone())), "Host names the address given, not the server name");

    // Each variable does its part: without it the agent is not reached.
    for (missing, why) in [
        ("CONSUL_TLS_SERVER_NAME", "the certificate names consul.test, not 127.0.0.1"),
        ("CONSUL_CLIENT_CERT", "the agent wants a client certificate"),
        ("CONSUL_CACERT", "the agent's CA is not among the system's"),
    ] {
        let env: Vec<_> = consul
            .env()
            .into_iter()
            .filter(|(k, _)| *k != missing && !(missing == "CONSUL_CLIENT_CERT" && *k == "CONSUL_CLIENT_KEY"))
            .collect();
        let (ok, stderr) = exits(&args, &env);
        assert!(!ok && stderr.contains("cannot fetch"), "without {missing} ({why}): {stderr}");
    }

    // Through an HTTP proxy, https goes in a `CONNECT` tunnel, TLS end to end inside it: the
    // name resolves nowhere, only the proxy reaches the agent.
    let (proxy, tunnels) = tunnel_to(consul.port);
    let named = format!("consul.test:{}", consul.port);
    let named_args = ["from-consul", &named, "--scheme", "https", "--key", "lb/config", "-f", "toml"];
    let mut env: Vec<_> = consul.env().into_iter().filter(|(k, _)| *k != "CONSUL_TLS_SERVER_NAME").collect();
    env.push(("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(serve_until_named_with_env(&named_args, &env, port, "consul-tls").0, "through CONNECT");
    assert_eq!(tunnels.recv_timeout(Duration::from_secs(1)).unwrap(), format!("CONNECT {named} HTTP/1.1"));

    // A directory of CAs does what the file does.
    let mut env = consul.env();
    env[0] = ("CONSUL_CAPATH", consul.file("cas"));
    assert!(serves(&env), "CONSUL_CAPATH");

    // No verification: neither the CA nor the name is needed (the client certificate still is).
    let mut env: Vec<_> = consul.env().into_iter().filter(|(k, _)| k.starts_with("CONSUL_CLIENT")).collect();
    env.push(("CONSUL_HTTP_SSL_VERIFY", "false".into()));
    assert!(serves(&env), "CONSUL_HTTP_SSL_VERIFY=false");

    // A value Go cannot parse as a boolean turns verification off there too, with a warning:
    // a warning that --strict refuses.
    env.pop();
    env.push(("CONSUL_HTTP_SSL_VERIFY", "no-thanks".into()));
    assert!(serves(&env), "CONSUL_HTTP_SSL_VERIFY=no-thanks");
    let strict: Vec<&str> = args.iter().copied().chain(["--strict"]).collect();
    let (ok, stderr) = exits(&strict, &env);
    assert!(!ok && stderr.contains("CONSUL_HTTP_SSL_VERIFY"), "--strict: {stderr}");

    // A client certificate without its key is refused before anything is asked.
    let asked = consul.shared.requests.lock().unwrap().len();
    let only_cert: Vec<_> = consul.env().into_iter().filter(|(k, _)| *k != "CONSUL_CLIENT_KEY").collect();
    let (ok, stderr) = exits(&args, &only_cert);
    assert!(!ok && stderr.contains("CONSUL_CLIENT_KEY"), "{stderr}");
    assert_eq!(consul.shared.requests.lock().unwrap().len(), asked);
}

#[test]
fn sources_use_the_environments_proxy_as_go_does() {
    let backend = Backend::start("proxied", Behaviour::Named);
    let port = free_port();
    let (http, requests) = serve_http(config(port, &backend));
    let dead = common::RefusingPort::new();
    let proxies = |http_proxy: u16| {
        vec![
            ("HTTP_PROXY", format!("http://127.0.0.1:{http_proxy}")),
            ("HTTPS_PROXY", format!("http://127.0.0.1:{}", dead.port)),
            ("ALL_PROXY", format!("http://127.0.0.1:{}", dead.port)),
        ]
    };
    let serves = |args: &[&str], env: &[(&'static str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        serve_until_named_with_env(args, &env, port, "proxied").0
    };
    // A name only the proxy can reach: HTTP_PROXY is the one for http (not HTTPS_PROXY, not
    // ALL_PROXY, which Go does not read). As Go does, the request goes to the proxy naming the
    // whole URL, with the proxy's credentials; no `CONNECT` tunnel, which proxies commonly
    // refuse but to port 443. (The test server answers as the proxy would, with the body.)
    let url = format!("http://config.test:{http}/betwixt.toml");
    let mut env = proxies(http);
    env[0].1 = format!("http://lb:s3cret@127.0.0.1:{http}");
    assert!(serves(&["from-url", &url], &env), "through the proxy");
    let head = requests.recv_timeout(Duration::from_secs(1)).unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some(format!("GET http://config.test:{http}/betwixt.toml HTTP/1.1").as_str()));
    let headers: Vec<String> = lines.map(str::to_lowercase).collect();
    // lb:s3cret
    assert!(headers.contains(&"proxy-authorization: basic bgi6cznjcmv0".into()), "{head}");
    assert!(headers.contains(&format!("host: config.test:{http}")), "{head}");
    // A SOCKS5 proxy, with its username and password; it is given the name to resolve.
    let (socks, socks_tunnels) = socks5_to(http);
    let env = [("HTTP_PROXY", format!("socks5://lb:s3cret@127.0.0.1:{socks}"))];
    assert!(serves(&["from-url", &url], &env), "through SOCKS5");
    let tunnel = socks_tunnels.recv_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!(tunnel, format!("CONNECT config.test:{http} as lb:s3cret"));
    assert_eq!(request_line(&requests), "GET /betwixt.toml HTTP/1.1");
    // Loopback never goes through a proxy, even one that refuses every connection.
    let host = format!("127.0.0.1:{http}");
    assert!(serves(&["from-consul", &host, "--key", "k", "-f", "toml"], &proxies(dead.port)), "loopback");
    assert_eq!(request_line(&requests), "GET /v1/kv/k?raw HTTP/1.1");
}
