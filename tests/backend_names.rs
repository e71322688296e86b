//! A backend named by host name follows the name's addresses as they change, as gobetween's
//! does (it resolves the name at every connection and check): new connections and checks go to
//! the new address within a few seconds. betwixt runs in a network namespace of its own with an
//! `/etc/hosts` of its own (`ip netns exec` puts `/etc/netns/NAME/hosts` in its place), so the
//! test changes a name's address without touching the host's files; root only (it says
//! "skipped" otherwise), with fixed ports: the namespace is empty.

mod common;

use common::backends::{Backend, Behaviour};
use common::netns::Netns;
use common::{ask_name, wait_until, Betwixt, TempDir};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

const WEB: u16 = 3001;
const BACKEND: u16 = 4000;

/// `/etc/netns/NAME`, removed when the test ends.
struct EtcDir(PathBuf);

impl Drop for EtcDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_backend_name_follows_its_addresses() {
    let Some(ns) = Netns::create_if_root("names") else { return };
    let etc = EtcDir(PathBuf::from(format!("/etc/netns/{}", ns.name)));
    std::fs::create_dir_all(&etc.0).unwrap();
    let hosts = etc.0.join("hosts");
    let point =
        |ip: &str| std::fs::write(&hosts, format!("127.0.0.1 localhost\n{ip} backend.test\n")).unwrap();
    point("127.0.0.2");

    let (a, b) = ns.run(|| {
        (
            Backend::start_at_port("a", Behaviour::Named, Ipv4Addr::new(127, 0, 0, 2), BACKEND),
            Backend::start_at_port("b", Behaviour::Named, Ipv4Addr::new(127, 0, 0, 3), BACKEND),
        )
    });
    let dir = TempDir::new("names");
    let config = dir.write(
        "betwixt.toml",
        &format!(
            "[servers.web]\nbind = \"127.0.0.1:{WEB}\"\n[servers.web.discovery]\nkind = \"static\"\n\
             static_list = [\"backend.test:{BACKEND}\"]\n[servers.web.healthcheck]\nkind = \"ping\"\n\
             interval = \"200ms\"\ntimeout = \"200ms\"\n"
        ),
    );
    let args = [
        "netns".as_ref(),
        "exec".as_ref(),
        ns.name.as_ref(),
        common::binary().as_ref(),
        "-c".as_ref(),
        config.as_os_str(),
    ];
    let bx = Betwixt::start_command("ip", &args, &[], dir);
    bx.wait_listening(WEB);
    let name = || ns.run(|| ask_name(WEB));
    assert!(wait_until(Duration::from_secs(5), || name().as_deref() == Some("a")), "{}", bx.log_text());

    // The name moves: new connections follow it.
    point("127.0.0.3");
    assert!(wait_until(Duration::from_secs(15), || name().as_deref() == Some("b")), "{}", bx.log_text());
    assert!(
        bx.log_text().contains("backend backend.test:4000 now resolves to [127.0.0.3:4000]"),
        "{}",
        bx.log_text()
    );
    // The checks follow it too: with the old address gone, the backend stays live.
    drop(a);
    std::thread::sleep(Duration::from_secs(1));
    assert!((0..5).all(|_| name().as_deref() == Some("b")), "{}", bx.log_text());
    drop(b);
}
