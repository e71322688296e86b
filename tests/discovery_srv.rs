//! srv discovery against a real DNS server: dnsmasq on a loopback high port, serving SRV
//! records and the A records of their targets. Records change by restarting dnsmasq with other
//! ones (it rereads `--srv-host` only at start); stopping it is a failing source.

mod api_client;
mod common;

use api_client::Client;
use common::backends::{Backend, Behaviour};
use common::{ask_name, closed_without_data, dnsmasq_command, free_port, wait_for_port, wait_until, Betwixt};
use sonic_rs::JsonValueTrait;
use std::net::Ipv4Addr;
use std::process::Child;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(10);
const SERVICE: &str = "_web._tcp.bx.test";

/// dnsmasq answering for `SERVICE` with `records` (target, port, priority, weight) and an A
/// record per target; killed on drop.
struct Dnsmasq(Child);

impl Dnsmasq {
    fn start(port: u16, records: &[(String, Ipv4Addr, u16, u16, u16)]) -> Dnsmasq {
        Dnsmasq::start_with(port, records, "--host-record={target},{ip}")
    }

    /// `address` gives each target's address (`{target}`, `{ip}` filled in): `--host-record`
    /// also puts it in the SRV answer's additional section, `--address` does not.
    fn start_with(port: u16, records: &[(String, Ipv4Addr, u16, u16, u16)], address: &str) -> Dnsmasq {
        let mut command = dnsmasq_command(port);
        for (target, ip, target_port, priority, weight) in records {
            command.arg(format!("--srv-host={SERVICE},{target},{target_port},{priority},{weight}"));
            command.arg(address.replace("{target}", target).replace("{ip}", &ip.to_string()));
        }
        let child = command.spawn().unwrap();
        assert!(wait_for_port(port, LONG), "dnsmasq did not start on {port}");
        Dnsmasq(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn record(target: &str, backend: &Backend, priority: u16) -> (String, Ipv4Addr, u16, u16, u16) {
    (target.to_string(), backend.ip, backend.port, priority, 10)
}

fn server(name: &str, port: u16, dns: u16, extra: &str) -> String {
    format!(
        "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\nkind = \"srv\"\n\
         interval = \"200ms\"\ntimeout = \"2s\"\nsrv_lookup_server = \"127.0.0.1:{dns}\"\n\
         srv_lookup_pattern = \"{SERVICE}.\"\n{extra}\n"
    )
}

fn discovery_stat(api: u16, name: &str, field: &str) -> sonic_rs::Value {
    let stats = Client::http(api).get_json(&format!("/servers/{name}/stats"));
    stats.get("discovery").and_then(|d| d.get(field)).cloned().unwrap_or_default()
}

#[test]
fn backends_follow_the_records_and_failpolicy_applies_when_the_server_stops() {
    let a = Backend::start("a", Behaviour::Named);
    let b = Backend::start_at("b", Behaviour::Named, Ipv4Addr::new(127, 0, 0, 2));
    let dns = free_port();
    let dnsmasq = Dnsmasq::start(dns, &[record("a.bx.test", &a, 1)]);
    let (keep, empty, api) = (free_port(), free_port(), free_port());
    let config = format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n")
        + &server("keep", keep, dns, "srv_dns_protocol = \"tcp\"")
        + &server("empty", empty, dns, "failpolicy = \"setempty\"");
    let bx = Betwixt::start(&config, &[], &[keep, empty, api]);
    for port in [keep, empty] {
        assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("a")), "{}", bx.log_text());
    }
    let stats = Client::http(api).get_json("/servers/keep/stats");
    let backend = stats.get("backends").and_then(|b| b.get(0)).unwrap().clone();
    assert_eq!(backend.get("sni").and_then(|v| v.as_str()), Some("a.bx.test"));
    assert_eq!(backend.get("weight").and_then(|v| v.as_u64()), Some(10));

    drop(dnsmasq);
    let dnsmasq = Dnsmasq::start(dns, &[record("b.bx.test", &b, 1)]);
    for port in [keep, empty] {
        assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("b")), "{}", bx.log_text());
    }

    drop(dnsmasq);
    assert!(wait_until(LONG, || discovery_stat(api, "keep", "state").as_str() == Some("failing")));
    assert!(wait_until(LONG, || closed_without_data(empty, Duration::from_secs(2))), "setempty");
    assert!((0..10).all(|_| ask_name(keep).as_deref() == Some("b")), "keeplast");
}

#[test]
fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let a = Backend::start("a", Behaviour::Named);
    // 300 records do not fit in 4096 bytes; the one with the lowest priority value is a.
    let mut records = vec![record("a.bx.test", &a, 0)];
    // Distinct ports: one address and port is one backend.
    records.extend((1..300).map(|i| (format!("t{i}.bx.test"), Ipv4Addr::LOCALHOST, i, 5, 10)));
    let dns = free_port();
    let _dnsmasq = Dnsmasq::start(dns, &records);
    let (port, api) = (free_port(), free_port());
    let config = format!("[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n") + &server("s", port, dns, "");
    let bx = Betwixt::start(&config, &[], &[port, api]);
    assert!(
        wait_until(LONG, || discovery_stat(api, "s", "backends").as_u64() == Some(300)),
        "{}",
        bx.log_text()
    );
    assert!((0..10).all(|_| ask_name(port).as_deref() == Some("a")));
}

#[test]
fn targets_missing_from_the_additional_section_are_asked_for() {
    let c = Backend::start_at("c", Behaviour::Named, Ipv4Addr::new(127, 0, 0, 3));
    let dns = free_port();
    let _dnsmasq = Dnsmasq::start_with(dns, &[record("c.bx.test", &c, 1)], "--address=/{target}/{ip}");
    let port = free_port();
    let bx = Betwixt::start(&server("s", port, dns, ""), &[], &[port]);
    assert!(wait_until(LONG, || ask_name(port).as_deref() == Some("c")), "{}", bx.log_text());
}
