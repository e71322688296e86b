//! Connection limits, timeouts and graceful shutdown.

mod common;

use common::backends::{Backend, Behaviour};
use common::{closed_without_data, free_port, read_line, wait_until, Betwixt, BlackHole, SIGTERM};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn server(port: u16, lines: &[String], extra: &str) -> String {
    let list: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[servers.s]\nbind = \"127.0.0.1:{port}\"\nbalance = \"roundrobin\"\n{extra}\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

fn connect_named(port: u16) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = read_line(&mut stream).expect("backend name");
    (stream, name)
}

#[test]
fn server_max_connections_refuses_excess_across_shards() {
    let backend = Backend::start("b", Behaviour::Named);
    let port = free_port();
    let config = server(port, &[backend.line()], "max_connections = 3");
    let _bx = Betwixt::start(&config, &["--shards", "2"], &[port]);
    let held: Vec<_> = (0..3).map(|_| connect_named(port)).collect();
    for _ in 0..5 {
        assert!(closed_without_data(port, Duration::from_secs(2)), "excess client was served");
    }
    drop(held);
    assert!(
        wait_until(Duration::from_secs(2), || common::ask_name(port).as_deref() == Some("b")),
        "capacity did not come back after clients left"
    );
}

#[test]
fn backend_max_connections_overflows_to_others() {
    let small = Backend::start("small", Behaviour::Named);
    let big = Backend::start("big", Behaviour::Named);
    let port = free_port();
    let lines = vec![format!("{} max_connections=2", small.line()), big.line()];
    let _bx = Betwixt::start(&server(port, &lines, ""), &["--shards", "1"], &[port]);
    let held: Vec<_> = (0..10).map(|_| connect_named(port)).collect();
    let on_small = held.iter().filter(|(_, name)| name == "small").count();
    assert_eq!(on_small, 2, "small backend must hold exactly its limit");
    assert_eq!(held.len() - on_small, 8);
}

#[test]
fn backend_max_connections_full_everywhere_refuses() {
    let only = Backend::start("only", Behaviour::Named);
    let port = free_port();
    let lines = vec![format!("{} max_connections=1", only.line())];
    let _bx = Betwixt::start(&server(port, &lines, ""), &["--shards", "1"], &[port]);
    let _held = connect_named(port);
    assert!(closed_without_data(port, Duration::from_secs(2)));
}

#[test]
fn client_idle_timeout_closes_silent_clients() {
    let echo = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let _bx = Betwixt::start(&server(port, &[echo.line()], "client_idle_timeout = \"400ms\""), &[], &[port]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Activity keeps it open past the timeout...
    for round in 0..4 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        stream.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).unwrap();
    }
    // ...silence closes it.
    let started = Instant::now();
    let mut b = [0u8; 1];
    let result = stream.read(&mut b);
    assert!(matches!(result, Ok(0)), "{result:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
}

/// Idle timeouts of seconds arm their timers a moment after the connection starts (see
/// `src/idle.rs`): the deadline still counts from the start, or from the last byte moved.
#[test]
fn idle_timeouts_of_seconds_count_from_the_start_and_from_the_last_byte() {
    let echo = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let _bx = Betwixt::start(&server(port, &[echo.line()], "client_idle_timeout = \"2s\""), &[], &[port]);
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut busy = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Short connections come and go meanwhile.
    for _ in 0..20 {
        let mut short = TcpStream::connect(("127.0.0.1", port)).unwrap();
        short.write_all(b"y").unwrap();
        short.read_exact(&mut [0u8; 1]).unwrap();
    }
    // `busy` moves bytes until past the first tick (1 s)...
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(250));
        busy.write_all(b"x").unwrap();
        busy.read_exact(&mut [0u8; 1]).unwrap();
    }
    let last_byte = Instant::now();
    // ...while `silent` never did: it is closed 2 s after it started.
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(silent.read(&mut [0u8; 1]), Ok(0)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_millis(2700), "{waited:?}");
    // `busy` is closed 2 s after its last byte.
    assert!(matches!(busy.read(&mut [0u8; 1]), Ok(0)));
    let waited = last_byte.elapsed();
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_millis(2700), "{waited:?}");
}

#[test]
fn backend_idle_timeout_closes_silent_backends() {
    let silent = Backend::start("silent", Behaviour::Silent);
    let port = free_port();
    let config = server(port, &[silent.line()], "backend_idle_timeout = \"500ms\"");
    let _bx = Betwixt::start(&config, &[], &[port]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    // The client keeps talking; only the backend is silent.
    let started = Instant::now();
    let closed_at = loop {
        let _ = stream.write_all(b"ping");
        let mut b = [0u8; 1];
        match stream.read(&mut b) {
            Ok(0) => break started.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break started.elapsed(),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(3), "backend idle timeout never fired");
    };
    assert!(closed_at >= Duration::from_millis(400), "closed too early: {closed_at:?}");
}

#[test]
fn connect_timeout_to_black_hole() {
    let hole = BlackHole::new();
    let port = free_port();
    let config =
        server(port, &[format!("127.0.0.1:{}", hole.port)], "backend_connection_timeout = \"300ms\"");
    let _bx = Betwixt::start(&config, &["--shards", "1"], &[port]);
    let started = Instant::now();
    assert!(closed_without_data(port, Duration::from_secs(5)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
}

#[test]
fn connect_timeout_then_next_backend() {
    let hole = BlackHole::new();
    let good = Backend::start("good", Behaviour::Named);
    let port = free_port();
    let lines = vec![format!("127.0.0.1:{}", hole.port), good.line()];
    let config = server(port, &lines, "backend_connection_timeout = \"200ms\"");
    let bx = Betwixt::start(&config, &["--shards", "1"], &[port]);
    for _ in 0..4 {
        let name = common::ask_name(port);
        assert_eq!(name.as_deref(), Some("good"), "log:\n{}", bx.log_text());
    }
}

#[test]
fn sigterm_lets_live_connection_finish() {
    let echo = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let mut bx = Betwixt::start(&server(port, &[echo.line()], ""), &[], &[port]);
    let mut live = TcpStream::connect(("127.0.0.1", port)).unwrap();
    live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    live.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    live.read_exact(&mut buf).unwrap();

    bx.signal(SIGTERM);
    assert!(
        wait_until(Duration::from_secs(2), || TcpStream::connect(("127.0.0.1", port)).is_err()),
        "still accepting after SIGTERM; log:\n{}",
        bx.log_text()
    );
    assert!(bx.child.try_wait().unwrap().is_none(), "exited with a live connection");
    live.write_all(b"after!").unwrap();
    live.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!");
    live.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    live.read_to_end(&mut rest).unwrap();
    let status = bx.wait_exit(Duration::from_secs(3)).expect("did not exit after the last connection");
    assert!(status.success(), "{status:?}");
}
