//! Many connections at once, and misbehaving peers: none of it may disturb other connections.

mod common;

use common::backends::{Backend, Behaviour};
use common::{free_port, Betwixt};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn echo_server(port: u16, backend: &Backend) -> String {
    format!(
        "[servers.e]\nbind = \"127.0.0.1:{port}\"\n[servers.e.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n",
        backend.line()
    )
}

fn round_trip(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
}

/// 3,000 concurrent proxied connections: 6,000 descriptors in betwixt and 6,000 in this test
/// process (client and backend ends), within the 20,000 per-process limit of the test machines.
#[test]
fn three_thousand_concurrent_connections() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let _bx = Betwixt::start(&echo_server(port, &backend), &[], &[port]);
    let mut streams: Vec<TcpStream> = (0..3000)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        round_trip(stream, format!("connection {i}").as_bytes());
    }
    // All still open and working after everyone has spoken.
    for stream in streams.iter_mut().step_by(97) {
        round_trip(stream, b"still here");
    }
}

#[test]
fn client_reset_mid_transfer_leaves_others_alone() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let _bx = Betwixt::start(&echo_server(port, &backend), &["--shards", "1"], &[port]);
    let mut steady = TcpStream::connect(("127.0.0.1", port)).unwrap();
    steady.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    round_trip(&mut steady, b"before");
    for _ in 0..50 {
        let rude = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let socket = socket2::SockRef::from(&rude);
        (&rude).write_all(&[0xAB; 100_000]).unwrap();
        // Linger 0: close sends RST instead of FIN.
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        drop(rude);
    }
    round_trip(&mut steady, b"after resets");
    let mut fresh = TcpStream::connect(("127.0.0.1", port)).unwrap();
    fresh.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    round_trip(&mut fresh, b"new connection");
}

#[test]
fn garbage_and_immediate_close_are_harmless() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let _bx = Betwixt::start(&echo_server(port, &backend), &["--shards", "1"], &[port]);
    for i in 0..200u32 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(&i.to_le_bytes().repeat(1000));
        }
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    round_trip(&mut s, b"ok");
}
