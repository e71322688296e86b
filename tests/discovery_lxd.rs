//! lxd discovery with the real binary, against a real LXD and against a replay.
//!
//! The real one: Debian's `lxd` (5.0.2) started by the test with `LXD_DIR` in a temporary
//! directory (database, socket, dir storage pool, logs), so it never touches a system LXD, and
//! a bridge of its own on a private subnet no route of the host uses. Its containers boot a
//! busybox image the test builds (package busybox-static): busybox init sets the static
//! address the container's `environment.IP` setting names and runs httpd on
//! `environment.PORT`, answering the container's name. betwixt reads the daemon's unix socket.
//!
//! The replay (`common::unix_http`, `/1.0/containers?recursion=2` in the shape LXD answers)
//! covers what a real daemon never sends: answers that are no JSON. Its "containers" are real
//! backends on loopback, their addresses in the replayed state, their ports in `user.port`.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::unix_http::UnixDocument;
use common::{ask_name, free_port, http_name, wait_until, Betwixt, TempDir};
use sonic_rs::JsonValueTrait;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const LONG: Duration = Duration::from_secs(10);

/// A private LXD daemon (see the module comment) with its bridge, storage pool and image.
/// Dropping it deletes its containers and bridge, shuts the daemon down and removes its
/// directory, also when the test failed.
struct Lxd {
    dir: TempDir,
    daemon: Child,
    bridge: String,
    /// The bridge's /24 as `10.A.B.`; the host is `.1`.
    subnet: String,
    containers: Vec<String>,
}

/// A container [`Lxd::launch`] started.
struct Container {
    /// Also what its httpd answers.
    name: String,
    /// Its `address:port`, as betwixt should list it.
    target: String,
}

impl Lxd {
    const IMAGE: &'static str = "betwixt-busybox";

    fn start() -> Lxd {
        let installed = Command::new("lxd").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(installed, "lxd is not installed: the real-LXD test needs the Debian package lxd");
        let dir = TempDir::new("lxd-real");
        std::fs::create_dir_all(dir.0.join("lxd")).unwrap();
        std::fs::create_dir_all(dir.0.join("conf")).unwrap();
        let out = std::fs::File::create(dir.0.join("daemon.out")).unwrap();
        let daemon = Command::new("lxd")
            .args(["--group", "root", "--logfile"])
            .arg(dir.0.join("lxd/lxd.log"))
            .envs(Lxd::env(&dir))
            // At start LXD fetches instance types from the internet: a proxy nobody listens on
            // keeps that (and any other fetch) on loopback.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("lxd starts");
        let pid = std::process::id();
        let lxd =
            Lxd { dir, daemon, bridge: format!("bxt{pid}"), subnet: free_subnet(pid), containers: vec![] };
        lxd.command("lxd", &["waitready", "--timeout", "30"], "");
        // No NAT, forwarding, DHCP, DNS or firewall rules: the bridge only carries the test's
        // traffic, and the host's settings stay as they are.
        let preseed = format!(
            "networks:\n- name: {bridge}\n  type: bridge\n  config: {{ipv4.address: {subnet}1/24, \
             ipv4.nat: \"false\", ipv4.routing: \"false\", ipv4.dhcp: \"false\", \
             ipv4.firewall: \"false\", ipv6.address: none, dns.mode: none}}\n\
             storage_pools:\n- {{name: default, driver: dir}}\n\
             profiles:\n- name: default\n  devices:\n    root: {{path: /, pool: default, type: disk}}\n    \
             eth0: {{name: eth0, network: {bridge}, type: nic}}\n",
            bridge = lxd.bridge,
            subnet = lxd.subnet,
        );
        lxd.command("lxd", &["init", "--preseed"], &preseed);
        lxd.import_image();
        lxd
    }

    /// The daemon's directory and the `lxc` client's configuration, both in `dir`.
    fn env(dir: &TempDir) -> [(&'static str, PathBuf); 2] {
        [("LXD_DIR", dir.0.join("lxd")), ("LXD_CONF", dir.0.join("conf"))]
    }

    fn socket(&self) -> PathBuf {
        self.dir.0.join("lxd/unix.socket")
    }

    /// Runs `program` (`lxd` or `lxc`) on this daemon with `input` on stdin; panics with its
    /// error and the daemon's log when it fails.
    fn command(&self, program: &str, args: &[&str], input: &str) -> String {
        let out = self.try_command(program, args, input);
        let out = out.unwrap_or_else(|e| panic!("{program} {args:?}: {e}\nLXD LOG:\n{}", self.log()));
        String::from_utf8_lossy(&out).trim().to_string()
    }

    fn try_command(&self, program: &str, args: &[&str], input: &str) -> Result<Vec<u8>, String> {
        let mut child = Command::new(program)
            .args(args)
            .envs(Lxd::env(&self.dir))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child.stdin.take().unwrap().write_all(input.as_bytes()).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(out.stdout),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("lxd/lxd.log")).unwrap_or_default()
    }

    /// An image of one static busybox whose init gives eth0 the address of `$IP` and serves
    /// the container's name (its hostname) on port `$PORT`.
    fn import_image(&self) {
        let image = self.dir.0.join("image");
        let root = image.join("rootfs");
        for sub in ["bin", "sbin", "etc", "www"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
        for tool in ["sh", "ip", "httpd", "hostname"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
        }
        std::os::unix::fs::symlink("../bin/busybox", root.join("sbin/init")).unwrap();
        let inittab = "::sysinit:/bin/sh -c \"ip addr add $IP/24 dev eth0 && ip link set eth0 up\"\n\
                       ::sysinit:/bin/sh -c \"hostname > /www/index.html\"\n\
                       ::respawn:/bin/sh -c \"exec httpd -f -p $PORT -h /www\"\n";
        std::fs::write(root.join("etc/inittab"), inittab).unwrap();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let metadata = format!(
            "architecture: x86_64\ncreation_date: {now}\nproperties:\n  description: busybox\n  os: busybox\n"
        );
        std::fs::write(image.join("metadata.yaml"), metadata).unwrap();
        let tar = |args: &[&str]| {
            let status = Command::new("tar").current_dir(&image).args(args).status().unwrap();
            assert!(status.success(), "tar {args:?}");
        };
        tar(&["-czf", "meta.tar.gz", "metadata.yaml"]);
        tar(&["-czf", "rootfs.tar.gz", "-C", "rootfs", "."]);
        let at = |name: &str| image.join(name).display().to_string();
        self.command(
            "lxc",
            &["image", "import", &at("meta.tar.gz"), &at("rootfs.tar.gz"), "--alias", Lxd::IMAGE],
            "",
        );
    }

    /// Launches a container (named `name` plus this process's id, since LXC's cgroups are
    /// named by container and other test runs may have a daemon of their own) at `.host` of
    /// the bridge, serving on `port`, with extra `settings` (`key=value`).
    fn launch(&mut self, name: &str, host: u8, port: u16, settings: &[&str]) -> Container {
        let name = format!("bx{}-{name}", std::process::id());
        let address = format!("{}{host}", self.subnet);
        let (ip, listen) = (format!("environment.IP={address}"), format!("environment.PORT={port}"));
        let mut args = vec!["launch", Lxd::IMAGE, name.as_str(), "-c", &ip, "-c", &listen];
        for setting in settings {
            args.extend(["-c", setting]);
        }
        self.containers.push(name.clone());
        self.command("lxc", &args, "");
        Container { name, target: format!("{address}:{port}") }
    }
}

impl Drop for Lxd {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = self.try_command("lxc", &["delete", "--force", name], "");
        }
        let _ = self.try_command("lxc", &["profile", "device", "remove", "default", "eth0"], "");
        let _ = self.try_command("lxc", &["network", "delete", &self.bridge], "");
        let _ = self.try_command("lxd", &["shutdown", "--timeout", "20"], "");
        if !wait_until(Duration::from_secs(5), || self.daemon.try_wait().is_ok_and(|s| s.is_some())) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
        // What a daemon that was killed rather than shut down leaves behind.
        if std::path::Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = Command::new("ip").args(["link", "delete", &self.bridge]).status();
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let ours = self.dir.0.display().to_string();
        for point in mounts.lines().rev().filter_map(|l| l.split(' ').nth(1)).filter(|p| p.starts_with(&ours))
        {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
    }
}

/// A `10.A.B.` /24 that no route of the host touches, chosen by `seed` so that concurrent
/// test runs (other processes) pick different ones.
fn free_subnet(seed: u32) -> String {
    let out = Command::new("ip").args(["-4", "route", "show", "table", "all"]).output().unwrap();
    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..1000)
        .map(|i| format!("10.{}.{}.", 200 + (seed + i) % 50, (seed / 50 + i) % 256))
        .find(|prefix| !routes.split_whitespace().any(|word| word.starts_with(prefix.as_str())))
        .expect("a free 10.x.y.0/24")
}

/// Names answering through betwixt on `port` until `expected` have all answered (at most
/// `LONG`): all that answered, so a caller can also check who did not.
fn answering(port: u16, expected: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    wait_until(LONG, || {
        seen.extend(http_name(port));
        expected.iter().all(|name| seen.contains(*name))
    });
    seen
}

#[test]
fn real_lxd_labelled_running_containers_take_traffic_and_starts_and_stops_show() {
    let mut lxd = Lxd::start();
    // a takes lxd_container_port, b its own port from the port key; x has another label.
    let a = lxd.launch("a", 10, 8080, &["user.label=web"]);
    let b = lxd.launch("b", 11, 8081, &["user.label=web", "user.port=8081"]);
    let x = lxd.launch("x", 12, 8080, &["user.label=db"]);
    let (port, api) = (free_port(), free_port());
    let interval = Duration::from_secs(1);
    let discovery = format!(
        "interval = \"1s\"\nlxd_server_address = \"unix://{}\"\nlxd_container_label_key = \"user.label\"\n\
         lxd_container_label_value = \"web\"\nlxd_container_port_key = \"user.port\"\nlxd_container_port = 8080",
        lxd.socket().display()
    );
    let bx = Betwixt::start(&config(api, port, &discovery), &[], &[port, api]);
    let discovered = || Client::http(api).discovered("s");
    let targets = |list: &[&Container]| {
        let mut targets: Vec<String> = list.iter().map(|c| c.target.clone()).collect();
        targets.sort();
        targets
    };
    let found = wait_until(LONG, || discovered() == targets(&[&a, &b]));
    assert!(found, "{:?}\nLOG:\n{}", discovered(), bx.log_text());
    let seen = answering(port, &[&a.name, &b.name]);
    assert_eq!(seen, [&a.name, &b.name].into_iter().cloned().collect(), "{} has another label", x.name);

    // The bridge has no IPv6: each container's only inet6 address is its fe80:: one, which
    // LXD lists but nothing can dial without naming the interface. No backends, a warning each.
    let (port6, api6) = (free_port(), free_port());
    let v6 = format!("{discovery}\nlxd_container_address_type = \"IPv6\"");
    let bx6 = Betwixt::start(&config(api6, port6, &v6), &[], &[port6, api6]);
    let warned =
        || [&a, &b].iter().all(|c| bx6.log_text().contains(&format!("{:?}: no inet6 address", c.name)));
    assert!(wait_until(LONG, warned), "{}", bx6.log_text());
    assert_eq!(Client::http(api6).discovered("s"), Vec::<String>::new());
    drop(bx6);

    // A container launched later is found within the interval (plus a loaded machine's slack).
    let c = lxd.launch("c", 13, 8082, &["user.label=web", "user.port=8082"]);
    let started = Instant::now();
    assert!(wait_until(LONG, || discovered() == targets(&[&a, &b, &c])), "{:?}", discovered());
    assert!(started.elapsed() < interval + Duration::from_secs(3), "c showed after {:?}", started.elapsed());
    assert!(answering(port, &[&c.name]).contains(&c.name), "c takes traffic");

    // A stopped container leaves.
    lxd.command("lxc", &["stop", "--force", &a.name], "");
    let started = Instant::now();
    assert!(wait_until(LONG, || discovered() == targets(&[&b, &c])), "{:?}", discovered());
    assert!(started.elapsed() < interval + Duration::from_secs(3), "a left after {:?}", started.elapsed());
    let names: BTreeSet<String> = (0..20).filter_map(|_| http_name(port)).collect();
    assert!(!names.contains(&a.name) && !names.is_empty(), "{names:?}");
}

/// A container as `/1.0/containers?recursion=2` lists it.
fn container(name: &str, status: &str, label: &str, backend: &Backend) -> String {
    format!(
        r#"{{"architecture":"x86_64","config":{{"image.os":"Debian","user.label":"{label}","user.port":"{port}"}},
        "created_at":"2024-01-01T00:00:00Z","ephemeral":false,"name":"{name}","profiles":["default"],
        "stateful":false,"status":"{status}","status_code":103,"type":"container",
        "state":{{"status":"{status}","status_code":103,"pid":4242,"processes":12,
          "network":{{"eth0":{{"addresses":[{{"family":"inet","address":"{ip}","netmask":"24","scope":"global"}},
              {{"family":"inet6","address":"fe80::216:3eff:fe00:1","netmask":"64","scope":"link"}}],
            "counters":{{"bytes_received":1,"bytes_sent":1}},"hwaddr":"00:16:3e:00:00:01","host_name":"veth1",
            "mtu":1500,"state":"up","type":"broadcast"}},
            "lo":{{"addresses":[{{"family":"inet","address":"127.0.0.1","netmask":"8","scope":"local"}}]}}}}}}}}"#,
        port = backend.port,
        ip = backend.ip,
    )
}

fn answer(containers: &[String]) -> String {
    format!(
        r#"{{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":[{}]}}"#,
        containers.join(",")
    )
}

fn config(api: u16, port: u16, discovery: &str) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [servers.s]\nbind = \"127.0.0.1:{port}\"\n[servers.s.discovery]\nkind = \"lxd\"\n{discovery}\n"
    )
}

#[test]
fn running_labelled_containers_are_backends() {
    let (a, b, c) = (
        Backend::start("a", Behaviour::Named),
        Backend::start_at("b", Behaviour::Named, [127, 0, 0, 2].into()),
        Backend::start("c", Behaviour::Named),
    );
    let dir = TempDir::new("lxd");
    let lxd = UnixDocument::serve(
        dir.0.join("unix.socket"),
        &answer(&[container("a", "Running", "web", &a), container("c", "Running", "db", &c)]),
        "/1.0/events",
    );
    let (port, api) = (free_port(), free_port());
    let discovery = format!(
        "interval = \"200ms\"\nlxd_server_address = \"unix://{}\"\nlxd_container_label_key = \"user.label\"\n\
         lxd_container_label_value = \"web\"\nlxd_container_port_key = \"user.port\"\nlxd_container_port = 1",
        lxd.socket.display()
    );
    let bx = Betwixt::start(&config(api, port, &discovery), &[], &[port, api]);
    assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")), "c has another label");

    // b starts (on 127.0.0.2), a stops: only b is left.
    lxd.set(
        answer(&[
            container("a", "Stopped", "web", &a),
            container("b", "Running", "web", &b),
            container("c", "Running", "db", &c),
        ])
        .into_bytes(),
    );
    assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("b")), "{}", bx.log_text());
    let stats = Client::http(api).get_json("/servers/s/stats");
    assert_eq!(stats.pointer(["discovery", "backends"]).and_then(|v| v.as_u64()), Some(1), "{stats:?}");

    // Not JSON: a failed round, the last list kept (keeplast).
    lxd.set(b"<html>502</html>".to_vec());
    let failing = || {
        let stats = Client::http(api).get_json("/servers/s/stats");
        stats.pointer(["discovery", "state"]).and_then(|v| v.as_str()) == Some("failing")
    };
    assert!(wait_until(LONG, failing));
    assert_eq!(ask_name(port).as_deref(), Some("b"));
}

#[test]
fn sections_are_checked() {
    for (discovery, key) in [
        ("kind = \"lxd\"\nlxd_container_port = 80", "discovery.lxd_server_address"),
        ("kind = \"lxd\"\nlxd_server_address = \"http://h:8443\"\nlxd_container_port = 80", "discovery.lxd_server_address"),
        ("kind = \"lxd\"\nlxd_server_address = \"unix:///var/lib/lxd/unix.socket\"", "discovery.lxd_container_port"),
        (
            "kind = \"lxd\"\nlxd_server_address = \"unix:///s\"\nlxd_container_port = 80\nlxd_container_address_type = \"v4\"",
            "discovery.lxd_container_address_type",
        ),
        (
            "kind = \"lxd\"\nlxd_server_address = \"https://h:8443\"\nlxd_container_port = 80\n\
             lxd_server_remote_password = \"secret\"",
            "discovery.lxd_server_remote_password",
        ),
    ] {
        let dir = TempDir::new("lxd-check");
        let path = dir.write("c.toml", &format!("[servers.s]\nbind = \"127.0.0.1:1\"\n[servers.s.discovery]\n{discovery}\n"));
        let (status, _, stderr) = common::run_betwixt(&["check", path.to_str().unwrap()]);
        assert!(!status.success() && stderr.contains(&format!("servers.s.{key}")), "{discovery}: {stderr}");
    }
}
