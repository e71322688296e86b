//! Clients' connections carry TCP keepalive as gobetween's (Go's) do: a probe after 15 s of
//! silence, every 15 s after, 9 unanswered end it. The kernel's own view of the socket (`ss`)
//! is the check; a real vanished peer would take minutes to notice.

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, read_line, static_server, wait_until, Betwixt};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// `ss`'s line for betwixt's side of the established connection from local port `client`.
fn betwixt_side(port: u16, client: u16) -> String {
    let filter = format!("( sport = :{port} and dport = :{client} )");
    let out =
        Command::new("ss").args(["-tnoeH", "state", "established", &filter]).output().expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn accepted_connections_carry_gos_keepalive() {
    let backend = Backend::start("one", Behaviour::Named);
    let port = free_port();
    let _bx = Betwixt::start(&static_server(port, "weight", &[backend.line()], ""), &[], &[port]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_line(&mut stream).as_deref(), Some("one"));
    let client = stream.local_addr().unwrap().port();
    let mut line = String::new();
    assert!(
        wait_until(Duration::from_secs(2), || {
            line = betwixt_side(port, client);
            line.contains("timer:(keepalive,")
        }),
        "{line}"
    );
    // The first probe is due within 15 s.
    let due = line.split("timer:(keepalive,").nth(1).and_then(|t| t.split(',').next()).unwrap_or("");
    let seconds: f64 = due.trim_end_matches("sec").trim_end_matches("ms").parse().unwrap_or(f64::MAX);
    let seconds = if due.ends_with("ms") { seconds / 1000.0 } else { seconds };
    assert!(seconds <= 15.0, "{line}");
}
