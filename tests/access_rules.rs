//! Access rules through the real binary: clients from different loopback addresses, IPv4 and
//! IPv6, rule order, default deny.

mod common;
mod from_address;

use common::backends::{Backend, Behaviour};
use common::{free_port, Betwixt};
use from_address::ask_name_from;
use std::net::{IpAddr, SocketAddr};

fn config(bind: &str, backend: &Backend, default: &str, rules: &[&str]) -> String {
    let rules: Vec<String> = rules.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "[servers.s]\nbind = \"{bind}\"\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n\
         [servers.s.access]\ndefault = \"{default}\"\nrules = [{}]\n",
        backend.line(),
        rules.join(", ")
    )
}

/// Whether a client at `source` gets through to the backend.
fn admitted(source: &str, target: SocketAddr) -> bool {
    let source: IpAddr = source.parse().unwrap();
    match ask_name_from(source, target) {
        Some(name) => {
            assert_eq!(name, "backend");
            true
        }
        None => false,
    }
}

#[test]
fn first_matching_rule_decides() {
    let backend = Backend::start("backend", Behaviour::Named);
    let port = free_port();
    let rules = ["allow 127.0.0.5", "deny 127.0.0.0/24", "allow 127.0.0.0/8"];
    let _bx = Betwixt::start(&config(&format!("127.0.0.1:{port}"), &backend, "deny", &rules), &[], &[port]);
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(admitted("127.0.0.5", target), "the exact allow comes before the /24 deny");
    assert!(!admitted("127.0.0.1", target));
    assert!(!admitted("127.0.0.200", target));
    assert!(admitted("127.0.1.1", target), "outside the /24, the /8 allows");
    assert!(admitted("127.255.0.9", target));
}

#[test]
fn default_applies_when_no_rule_matches() {
    let backend = Backend::start("backend", Behaviour::Named);
    let (deny, allow) = (free_port(), free_port());
    let text = config(&format!("127.0.0.1:{deny}"), &backend, "deny", &["allow 127.0.0.7"])
        + &config(&format!("127.0.0.1:{allow}"), &backend, "allow", &["deny 127.0.0.7"])
            .replace("servers.s", "servers.t");
    let _bx = Betwixt::start(&text, &[], &[deny, allow]);
    let deny = SocketAddr::from(([127, 0, 0, 1], deny));
    let allow = SocketAddr::from(([127, 0, 0, 1], allow));
    assert!(admitted("127.0.0.7", deny));
    assert!(!admitted("127.0.0.8", deny), "default deny");
    assert!(!admitted("127.0.0.7", allow));
    assert!(admitted("127.0.0.8", allow), "default allow");
}

#[test]
fn ipv6_clients() {
    let backend = Backend::start("backend", Behaviour::Named);
    let (open, closed) = (free_port(), free_port());
    let text = config(&format!("[::1]:{open}"), &backend, "deny", &["deny 127.0.0.1", "allow ::1/128"])
        + &config(&format!("[::1]:{closed}"), &backend, "allow", &["deny ::/0"])
            .replace("servers.s", "servers.t");
    let _bx = Betwixt::start(&text, &[], &[open, closed]);
    assert!(admitted("::1", SocketAddr::new("::1".parse().unwrap(), open)));
    assert!(!admitted("::1", SocketAddr::new("::1".parse().unwrap(), closed)));
}

#[test]
fn a_bad_rule_is_a_config_error_naming_it() {
    let backend = Backend::start("backend", Behaviour::Named);
    let dir = common::TempDir::new("access");
    let path = dir.write(
        "bad.toml",
        &config("127.0.0.1:1", &backend, "deny", &["allow 127.0.0.1", "allow 10.0.0.0/99"]),
    );
    let (status, stdout, stderr) = common::run_betwixt(&["check", path.to_str().unwrap()]);
    assert!(!status.success());
    let output = stdout + &stderr;
    assert!(output.contains("servers.s.access.rules"), "{output}");
    assert!(output.contains("rule 2 \"allow 10.0.0.0/99\""), "{output}");
}
