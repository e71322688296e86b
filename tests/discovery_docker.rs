//! docker discovery with the real binary against a real Docker Engine API: podman's
//! Docker-compatible service (`podman system service`, packages podman, runc and
//! busybox-static) on a unix socket in a temporary directory, with storage of its own, running
//! busybox httpd containers whose published ports are the backends. Podman runs with runc and
//! cgroupfs, no cgroup limits and low rlimits, because crun refuses this machine's hybrid
//! cgroup layout and raising rlimits is not permitted here. A hostile endpoint (a small HTTP
//! server on a unix socket, `common::unix_http`) covers what a real daemon never sends.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::unix_http::UnixDocument;
use common::{free_port, http_name, wait_until, Betwixt, TempDir};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(10);

/// Podman instances share the host's container network; one at a time.
static PODMAN: Mutex<()> = Mutex::new(());

/// A podman service with its own storage, and the containers it runs.
struct Podman {
    dir: TempDir,
    service: Child,
}

impl Podman {
    const IMAGE: &'static str = "localhost/betwixt-busybox";

    fn start() -> Podman {
        let dir = TempDir::new("podman");
        std::fs::create_dir_all(dir.0.join("tmp")).unwrap();
        // An image of one static busybox: sh and httpd.
        let root = dir.0.join("rootfs/bin");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy("/bin/busybox", root.join("busybox")).expect("busybox-static is installed");
        for tool in ["sh", "httpd", "mkdir"] {
            std::os::unix::fs::symlink("busybox", root.join(tool)).unwrap();
        }
        let tar = dir.0.join("rootfs.tar");
        let packed =
            Command::new("tar").arg("-C").arg(dir.0.join("rootfs")).arg("-cf").arg(&tar).arg(".").status();
        assert!(packed.unwrap().success());
        let service = Command::new("podman")
            .args(Podman::global(&dir))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", dir.0.join("api.sock").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman is installed");
        let podman = Podman { dir, service };
        podman.podman(&["import", tar.to_str().unwrap(), Podman::IMAGE]);
        assert!(wait_until(LONG, || podman.socket().exists()), "the podman service did not start");
        podman
    }

    /// Storage, run state and events in the test's directory; runc and cgroupfs (see above).
    fn global(dir: &TempDir) -> Vec<String> {
        let at = |name: &str| dir.0.join(name).display().to_string();
        [
            "--root",
            &at("storage"),
            "--runroot",
            &at("run"),
            "--tmpdir",
            &at("tmp"),
            "--storage-driver",
            "vfs",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]
        .map(String::from)
        .to_vec()
    }

    fn socket(&self) -> PathBuf {
        self.dir.0.join("api.sock")
    }

    fn podman(&self, args: &[&str]) -> String {
        let out = Command::new("podman").args(Podman::global(&self.dir)).args(args).output().unwrap();
        assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a container named `name` whose httpd on port 8080 answers its name, published as
    /// `publish` (`-p` syntax), with `extra` arguments (labels, environment).
    fn run(&self, name: &str, publish: &str, extra: &[&str]) {
        let script = format!("mkdir -p /w && echo {name} > /w/index.html && exec httpd -f -p 8080 -h /w");
        let mut args = vec!["run", "-d", "--name", name, "-p", publish];
        args.extend(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]);
        args.extend(extra);
        args.extend([Podman::IMAGE, "sh", "-c", &script]);
        self.podman(&args);
    }

    fn remove(&self, name: &str) {
        self.podman(&["rm", "-f", "-t", "0", name]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(Podman::global(&self.dir))
            .args(["rm", "-a", "-f", "-t", "0"])
            .output();
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

fn config(api: u16, port: u16, discovery: &str) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [servers.s]\nbind = \"127.0.0.1:{port}\"\n[servers.s.discovery]\nkind = \"docker\"\n{discovery}\n"
    )
}

fn backends(api: u16) -> Vec<String> {
    Client::http(api).discovered("s")
}

fn sorted(list: &[String]) -> Vec<String> {
    let mut list = list.to_vec();
    list.sort();
    list
}

/// Each discovered backend's `sni` (`""` when it has none), by `host:port`, sorted.
fn snis(api: u16) -> Vec<(String, String)> {
    let stats = Client::http(api).get_json("/servers/s/stats");
    let text = |v: &Value, key: &str| v.get(key).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    let mut list: Vec<(String, String)> = stats
        .get("backends")
        .and_then(|b| b.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|b| (format!("{}:{}", text(b, "host"), text(b, "port")), text(b, "sni")))
        .collect();
    list.sort();
    list
}

fn discovery_stats(api: u16) -> Value {
    Client::http(api).get_json("/servers/s/stats").get("discovery").unwrap().clone()
}

#[test]
fn labelled_containers_are_backends_and_starts_and_stops_show_at_once() {
    let _one = PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let podman = Podman::start();
    let (pa, pb, pc, px) = (free_port(), free_port(), free_port(), free_port());
    // As in gobetween, the label `sni` is the backend's sni.
    podman.run("a", &format!("127.0.0.1:{pa}:8080"), &["--label", "app=web", "--label", "sni=a.test"]);
    podman.run("x", &format!("127.0.0.1:{px}:8080"), &["--label", "app=other"]);
    let (port, api) = (free_port(), free_port());
    // An interval of a minute: only the event stream can show a change within seconds.
    let discovery = format!(
        "interval = \"60s\"\ndocker_endpoint = \"unix://{}\"\ndocker_container_label = \"app=web\"\n\
         docker_container_private_port = 8080",
        podman.socket().display()
    );
    let bx = Betwixt::start(&config(api, port, &discovery), &[], &[port, api]);
    assert!(wait_until(LONG, || http_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    assert_eq!(snis(api), [(format!("127.0.0.1:{pa}"), "a.test".to_string())]);
    assert_eq!(backends(api), [format!("127.0.0.1:{pa}")]);

    // Published on all interfaces: the endpoint is the local socket, so the host is 127.0.0.1.
    podman.run("b", &format!("{pb}:8080"), &["--label", "app=web"]);
    let started = Instant::now();
    let both = || backends(api) == sorted(&[format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}")]);
    assert!(wait_until(LONG, both), "{:?}\n{}", backends(api), bx.log_text());
    let took = started.elapsed();
    // Within a second of `podman run` returning; generous for a loaded machine, far below the
    // minute a poll would take.
    assert!(took < Duration::from_secs(3), "b showed after {took:?}");
    assert!(wait_until(LONG, || http_name(port).as_deref() == Some("b")), "b takes traffic");

    // The host from the container's environment, when the variable is set.
    podman.run("c", &format!("127.0.0.1:{pc}:8080"), &["--label", "app=web", "--env", "MY_HOST=localhost"]);
    podman.remove("a");
    let started = Instant::now();
    let expected = sorted(&[format!("127.0.0.1:{pb}"), format!("127.0.0.1:{pc}")]);
    assert!(wait_until(LONG, || backends(api) == expected), "{:?}", backends(api));
    assert!(started.elapsed() < Duration::from_secs(3), "a left after {:?}", started.elapsed());
    assert!((0..10).all(|_| http_name(port).as_deref() != Some("x")), "x has another label");
    drop(bx);

    let discovery = format!("{discovery}\ndocker_container_host_env_var = \"MY_HOST\"");
    let bx = Betwixt::start(&config(api, port, &discovery), &[], &[port, api]);
    let expected = sorted(&[format!("127.0.0.1:{pb}"), format!("localhost:{pc}")]);
    let found = wait_until(LONG, || backends(api) == expected);
    assert!(found, "{:?}\nLOG:\n{}", backends(api), bx.log_text());
    assert!(wait_until(LONG, || http_name(port).as_deref() == Some("c")), "c takes traffic by its name");
}

fn container_list(ports: &[u16]) -> String {
    let containers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!(
                r#"{{"Id":"{i:064}","Names":["/c{i}"],"Ports":[{{"IP":"127.0.0.1","PrivatePort":80,"PublicPort":{port},"Type":"tcp"}}],"Labels":{{"sni":"c{i}.test"}},"State":"running"}}"#
            )
        })
        .collect();
    format!("[{}]", containers.join(","))
}

#[test]
fn hostile_answers_and_a_dead_endpoint_fail_the_fetch_and_follow_the_failpolicy() {
    let (a, b) = (Backend::start("a", Behaviour::Named), Backend::start("b", Behaviour::Named));
    let dir = TempDir::new("docker-hostile");
    let fake = UnixDocument::serve(dir.0.join("docker.sock"), &container_list(&[a.port]), "/events");
    let (port, api) = (free_port(), free_port());
    let discovery = format!(
        "interval = \"200ms\"\ntimeout = \"2s\"\ndocker_endpoint = \"unix://{}\"\n\
         docker_container_private_port = 80",
        fake.socket.display()
    );
    let bx = Betwixt::start(&config(api, port, &discovery), &[], &[port, api]);
    assert!(wait_until(LONG, || common::ask_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    assert_eq!(snis(api), [(format!("127.0.0.1:{}", a.port), "c0.test".to_string())]);

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let mut huge = container_list(&[b.port]).into_bytes();
    huge.resize(17 << 20, b' ');
    for (document, error) in [
        (b"<html>no json</html>".to_vec(), "no usable JSON"),
        (deep, "deeper than"),
        (huge, "reading the answer"),
        (b"{\"message\":\"not a list\"}".to_vec(), "no usable JSON"),
    ] {
        fake.set(document);
        let failing = || {
            let stats = discovery_stats(api);
            stats.get("state").and_then(|s| s.as_str()) == Some("failing")
                && stats.get("last_error").and_then(|e| e.as_str()).is_some_and(|e| e.contains(error))
        };
        assert!(wait_until(LONG, failing), "{error}: {:?}", discovery_stats(api));
        // keeplast: a is still served.
        assert_eq!(common::ask_name(port).as_deref(), Some("a"));
        fake.set(container_list(&[a.port]).into_bytes());
        assert!(wait_until(LONG, || discovery_stats(api).get("state").and_then(|s| s.as_str()) == Some("ok")));
    }

    // The endpoint gone: a failing fetch, the last list kept, then b once it is back.
    std::fs::remove_file(&fake.socket).unwrap();
    let failing = || discovery_stats(api).get("state").and_then(|s| s.as_str()) == Some("failing");
    assert!(wait_until(LONG, failing), "{:?}", discovery_stats(api));
    assert_eq!(common::ask_name(port).as_deref(), Some("a"));
    fake.set(container_list(&[b.port]).into_bytes());
    fake.listen();
    assert!(wait_until(LONG, || common::ask_name(port).as_deref() == Some("b")), "{}", bx.log_text());
    drop(bx);

    // setempty: no backend while the endpoint fails.
    let bx = Betwixt::start(
        &config(api, port, &format!("{discovery}\nfailpolicy = \"setempty\"")),
        &[],
        &[port, api],
    );
    assert!(wait_until(LONG, || common::ask_name(port).as_deref() == Some("b")), "{}", bx.log_text());
    fake.set(b"nonsense".to_vec());
    assert!(wait_until(LONG, || backends(api).is_empty()), "{:?}", backends(api));
}

#[test]
fn a_tcp_endpoint_goes_through_the_environments_proxy() {
    let a = Backend::start("a", Behaviour::Named);
    // The proxy answers for the daemon: docker.test resolves nowhere, so only requests sent
    // through it find the containers.
    let (proxy, lines) = common::unix_http::serve_tcp(&container_list(&[a.port]), "/events");
    let (port, api) = (free_port(), free_port());
    let discovery = "interval = \"200ms\"\ndocker_endpoint = \"tcp://docker.test:2375\"\n\
                     docker_container_private_port = 80";
    let dir = TempDir::new("docker-proxied");
    let path = dir.write("betwixt.toml", &config(api, port, discovery));
    let args = [std::ffi::OsStr::new("-c"), path.as_os_str()];
    let bx = Betwixt::start_args(&args, &[("HTTP_PROXY", format!("127.0.0.1:{proxy}"))], dir);
    bx.wait_listening(port);
    assert!(wait_until(LONG, || common::ask_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    let lines = lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.starts_with("GET http://docker.test:2375/")), "{lines:?}");
}

#[test]
fn sections_are_checked() {
    for (discovery, key) in [
        ("kind = \"docker\"\ndocker_container_private_port = 80", "discovery.docker_endpoint"),
        (
            "kind = \"docker\"\ndocker_endpoint = \"ftp://h\"\ndocker_container_private_port = 80",
            "discovery.docker_endpoint",
        ),
        (
            "kind = \"docker\"\ndocker_endpoint = \"unix:///var/run/docker.sock\"",
            "discovery.docker_container_private_port",
        ),
        (
            "kind = \"docker\"\ndocker_endpoint = \"tcp://h:2376\"\ndocker_container_private_port = 80\n\
             docker_tls_enabled = true\ndocker_tls_cacert_path = \"/nonexistent/ca.pem\"",
            "discovery.docker_tls_cacert_path",
        ),
    ] {
        let dir = TempDir::new("docker-check");
        let path = dir.write(
            "c.toml",
            &format!("[servers.s]\nbind = \"127.0.0.1:1\"\n[servers.s.discovery]\n{discovery}\n"),
        );
        let (status, _, stderr) = common::run_betwixt(&["check", path.to_str().unwrap()]);
        assert!(!status.success() && stderr.contains(&format!("servers.s.{key}")), "{discovery}: {stderr}");
    }
    let dir = TempDir::new("docker-check");
    let ok = "kind = \"docker\"\ndocker_endpoint = \"unix:///var/run/docker.sock\"\ndocker_container_private_port = 80";
    let path =
        dir.write("c.toml", &format!("[servers.s]\nbind = \"127.0.0.1:1\"\n[servers.s.discovery]\n{ok}\n"));
    let (status, _, stderr) = common::run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
}
