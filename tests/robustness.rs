//! Many connections at once, and misbehaving peers: none of it may disturb other connections.

mod api_client;
mod common;

use api_client::counter_sum;
use common::backends::{Backend, Behaviour};
use common::{free_port, wait_until, Betwixt};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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

/// 2,000 clients arrive at once from 8 threads: betwixt queues far more backend connects and
/// readiness polls than its io_uring rings hold. Every connection must be served promptly (a
/// lost wake-up would leave some waiting for seconds), and afterwards the idle shard must still
/// wake for its timers: a client that goes silent is closed by `client_idle_timeout`.
#[test]
fn burst_of_two_thousand_connections_all_served() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let config = format!("[defaults]\nclient_idle_timeout = \"1s\"\n{}", echo_server(port, &backend));
    let _bx = Betwixt::start(&config, &["--shards", "1"], &[port]);
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                let mut streams: Vec<TcpStream> =
                    (0..250).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
                for (i, stream) in streams.iter_mut().enumerate() {
                    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    stream.write_all(format!("{w}/{i}").as_bytes()).unwrap();
                }
                for (i, stream) in streams.iter_mut().enumerate() {
                    let expected = format!("{w}/{i}");
                    let mut back = vec![0u8; expected.len()];
                    stream.read_exact(&mut back).unwrap();
                    assert_eq!(back, expected.as_bytes());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a connection was not served");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());

    std::thread::sleep(Duration::from_millis(1500)); // the burst's connections time out
    let mut quiet = TcpStream::connect(("127.0.0.1", port)).unwrap();
    quiet.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    round_trip(&mut quiet, b"then silence");
    let silent_since = Instant::now();
    let mut b = [0u8; 1];
    assert!(matches!(quiet.read(&mut b), Ok(0)), "not closed by the idle timeout");
    let waited = silent_since.elapsed();
    assert!(waited < Duration::from_millis(2500), "closed only after {waited:?}");
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

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Clients that stream bulk data (so betwixt splices it through pipes) and vanish with a reset
/// while betwixt still holds their echo in a pipe: the pipes of dead connections are closed,
/// not kept, and the shard goes on serving.
#[test]
fn resets_during_spliced_streams_leak_no_pipes() {
    let backend = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let metrics = free_port();
    let config =
        format!("[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n{}", echo_server(port, &backend));
    let bx = Betwixt::start(&config, &["--shards", "1"], &[port, metrics]);
    let chunk = vec![0x5A; 256 * 1024];
    let mut warm = TcpStream::connect(("127.0.0.1", port)).unwrap();
    warm.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    round_trip(&mut warm, &chunk);
    drop(warm);
    let baseline = open_fds(bx.pid());
    // Enough connections that leaking one pipe each would exceed the pool's allowance below.
    for _ in 0..40 {
        let rude = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // It writes without ever reading its echo, until every buffer on the way is full.
        rude.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
        for _ in 0..32 {
            if (&rude).write_all(&chunk).is_err() {
                break;
            }
        }
        socket2::SockRef::from(&rude).set_linger(Some(Duration::ZERO)).unwrap();
        drop(rude);
    }
    let spliced = counter_sum(metrics, "betwixt_shard_spliced_bytes_total");
    assert!(spliced > 0, "the streams were not spliced");
    // Every connection holds two sockets and up to two pipes (four descriptors) while it lives;
    // once they are gone, only the shard's pool of idle pipes (at most 32, 64 descriptors) may
    // remain above the baseline.
    let settled = wait_until(Duration::from_secs(5), || open_fds(bx.pid()) <= baseline + 64);
    assert!(settled, "descriptors: {} at the start, {} now", baseline, open_fds(bx.pid()));
    let mut fresh = TcpStream::connect(("127.0.0.1", port)).unwrap();
    fresh.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    round_trip(&mut fresh, &chunk);
}
