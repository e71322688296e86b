//! Connections carry TCP keepalive as gobetween's (Go's) do, on the client's side and the
//! backend's: a probe after 15 s of silence, every 15 s after, 9 unanswered end it. The
//! kernel's own view of betwixt's sockets (`ss`) is the check; a real vanished peer would take
//! minutes to notice.

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, read_line, static_server, wait_until, Betwixt};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// `ss`'s lines for the established connections `filter` selects.
fn sockets(filter: &str) -> String {
    let out =
        Command::new("ss").args(["-tnoeH", "state", "established", filter]).output().expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `line` shows a keepalive timer whose first probe is due within 15 s.
fn keeps_alive(line: &str) -> bool {
    let Some(due) = line.split("timer:(keepalive,").nth(1).and_then(|t| t.split(',').next()) else {
        return false;
    };
    let seconds = match due.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().map(|ms| ms / 1000.0),
        None => due.trim_end_matches("sec").parse::<f64>(),
    };
    seconds.is_ok_and(|s| s <= 15.0)
}

#[test]
fn both_sides_carry_gos_keepalive() {
    let backend = Backend::start("one", Behaviour::Named);
    let port = free_port();
    let _bx = Betwixt::start(&static_server(port, "weight", &[backend.line()], ""), &[], &[port]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_line(&mut stream).as_deref(), Some("one"));
    let client = stream.local_addr().unwrap().port();
    // betwixt's side towards the client, and its side towards the backend.
    for filter in
        [format!("( sport = :{port} and dport = :{client} )"), format!("( dport = :{} )", backend.port)]
    {
        let mut line = String::new();
        let kept = wait_until(Duration::from_secs(2), || {
            line = sockets(&filter);
            keeps_alive(&line)
        });
        assert!(kept, "{filter}: {line}");
    }
}
