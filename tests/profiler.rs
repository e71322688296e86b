//! `[profiler]` through the real binary: a CPU profile taken while traffic flows decodes as
//! pprof's protobuf and names betwixt's own functions; one profile at a time; Go's other
//! profiles answer 404 saying so; the length is bounded.

mod common;

use common::backends::{Backend, Behaviour};
use common::*;
use pprof::protos::{Message, Profile};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `GET path` on `port`: the status code and the body.
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let mut body = answer[end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line + 2..line + 2 + size]);
        data = &data[line + 4 + size..];
    }
}

#[test]
fn a_cpu_profile_taken_under_traffic_names_betwixt_functions() {
    let backend = Backend::start("b", Behaviour::Echo);
    let (port, profiler) = (free_port(), free_port());
    let config = format!("[profiler]\nenabled = true\nbind = \"127.0.0.1:{profiler}\"\n")
        + &static_server(port, "roundrobin", &[backend.line()], "");
    let bx = Betwixt::start(&config, &[], &[port, profiler]);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let chunk = vec![7u8; 64 * 1024];
            let mut back = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(&chunk).unwrap();
                stream.read_exact(&mut back).unwrap();
            }
        })
    };
    let taking = std::thread::spawn(move || get(profiler, "/debug/pprof/profile?seconds=2"));
    // While it is taken, a second one is refused.
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = get(profiler, "/debug/pprof/profile?seconds=1");
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    let (status, body) = taking.join().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut profile = Profile::decode(body.as_slice()).expect("pprof protobuf");
    // Most of betwixt's time here is the kernel's, and a sample taken while the thread's
    // user-space frame is a libc system-call wrapper is dropped (the profiler leaves libc's
    // frames out): on a busy machine one profile can come back empty. Two more tries.
    for _ in 0..2 {
        if profile.sample.is_empty() {
            let (status, body) = get(profiler, "/debug/pprof/profile?seconds=2");
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            profile = Profile::decode(body.as_slice()).expect("pprof protobuf");
        }
    }
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(!profile.sample.is_empty(), "no samples");
    assert!(profile.sample.iter().all(|s| !s.value.is_empty()));
    let betwixt = profile.string_table.iter().filter(|s| s.starts_with("betwixt")).count();
    assert!(
        betwixt > 0,
        "no betwixt function in {:?}",
        &profile.string_table[..profile.string_table.len().min(50)]
    );
    assert!(profile.duration_nanos >= 1_000_000_000, "{}", profile.duration_nanos);
    drop(bx);
}

#[test]
fn other_profiles_and_bad_lengths_are_refused_clearly() {
    let profiler = free_port();
    let config = format!("[profiler]\nenabled = true\nbind = \"127.0.0.1:{profiler}\"\n")
        + &static_server(free_port(), "roundrobin", &[], "");
    let _bx = Betwixt::start(&config, &[], &[profiler]);
    let (status, body) = get(profiler, "/debug/pprof/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("profile?seconds=30"));
    for name in ["heap", "goroutine", "allocs"] {
        let (status, body) = get(profiler, &format!("/debug/pprof/{name}"));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 404, "{name}");
        assert!(body.contains("not served") && body.contains(name), "{body}");
    }
    for seconds in ["0", "301", "x"] {
        let (status, body) = get(profiler, &format!("/debug/pprof/profile?seconds={seconds}"));
        assert_eq!(status, 400, "{seconds}: {}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn a_taken_profiler_address_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new("profiler-taken");
    let config = format!("[profiler]\nenabled = true\nbind = \"127.0.0.1:{port}\"\n")
        + &static_server(free_port(), "roundrobin", &[], "");
    let path = dir.write("p.toml", &config);
    let (status, _, stderr) = run_betwixt(&["-c", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("profiler: cannot listen on"), "{stderr}");
}

/// gobetween served `[metrics]` and `[profiler]` from Go's one default handler table, so a file
/// giving both the same address started there; betwixt serves both paths from one listener.
#[test]
fn metrics_and_profiler_on_one_address_share_its_listener() {
    let port = free_port();
    let config = format!(
        "[metrics]\nenabled = true\nbind = \"127.0.0.1:{port}\"\n\n[profiler]\nenabled = true\nbind = \"127.0.0.1:{port}\"\n"
    ) + &static_server(free_port(), "roundrobin", &[], "");
    let _bx = Betwixt::start(&config, &[], &[port]);
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("gobetween_server_count{server=\"s\"} 0"));
    let (status, body) = get(port, "/debug/pprof/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("profile?seconds=30"));
    let (status, body) = get(port, "/elsewhere");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 404);
    assert!(body.contains("/metrics") && body.contains("/debug/pprof/profile"), "{body}");
}
