//! Bytes through the proxy: bulk both ways at once, byte-exact, spliced through pipes and copied,
//! and half-close, passed on (the default) or ending the connection (`half_close = false`).

mod api_client;
mod common;

use api_client::{counter_sum, u64_at, Client};
use common::backends::{one_connection_backend, pattern_byte, Backend, Behaviour};
use common::{echo_round_trip, free_port, read_until_end, wait_until, Betwixt};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

fn config(port: u16, backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.line())).collect();
    format!(
        "[servers.bulk]\nbind = \"127.0.0.1:{port}\"\n[servers.bulk.discovery]\nkind = \"static\"\nstatic_list = [{}]\n",
        list.join(", ")
    )
}

/// Two 64 MiB echo streams at once; with `splice`, bulk moves through pipes (and the counter
/// must show it), without, it is all copied.
fn bulk_on(shards: &str, splice: bool) {
    bulk_with(shards, splice, &[]);
}

/// `bulk_on` with the environment variables `env` set for betwixt.
fn bulk_with(shards: &str, splice: bool, env: &[(&str, String)]) {
    let backend = Backend::start("echo", Behaviour::Echo);
    let port = free_port();
    let metrics = free_port();
    let conf = format!(
        "[runtime]\nsplice = {splice}\n[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n{}",
        config(port, &[&backend])
    );
    let dir = common::TempDir::new("bx");
    let path = dir.write("betwixt.toml", &conf);
    let args = [std::ffi::OsStr::new("-c"), path.as_os_str(), "--shards".as_ref(), shards.as_ref()];
    let betwixt = Betwixt::start_args(&args, env, dir);
    betwixt.wait_listening(port);
    betwixt.wait_listening(metrics);
    let streams: Vec<_> = (0..2u64)
        .map(|i| thread::spawn(move || echo_round_trip(port, 64 * MIB, 0x9E37_79B9_7F4A_7C15 + i)))
        .collect();
    for stream in streams {
        let (sent, received, len) = stream.join().unwrap();
        assert_eq!(len, 64 * MIB, "echoed byte count");
        assert_eq!(sent, received, "echoed bytes differ from sent bytes");
    }
    let spliced = counter_sum(metrics, "betwixt_shard_spliced_bytes_total");
    if splice {
        // Four directions of 64 MiB each; the first reads of each go through a buffer.
        assert!(spliced > 128 * MIB as u64, "only {spliced} bytes spliced");
    } else {
        assert_eq!(spliced, 0, "splicing is off");
    }
}

#[test]
fn bulk_64_mib_each_way_on_one_shard() {
    bulk_on("1", true);
}

#[test]
fn bulk_64_mib_each_way_on_two_shards() {
    bulk_on("2", true);
}

#[test]
fn bulk_64_mib_each_way_copied_when_splice_is_off() {
    bulk_on("1", false);
}

/// With glommio's main ring set up the older way (`GLOMMIO_DEFER_TASKRUN=0`, vendor/glommio/
/// PATCHES.md: completions posted through task_work instead of collected when the shard asks),
/// the same bytes move, on two shards: bulk both ways, copied, then spliced once bulk-sized.
#[test]
fn bulk_with_glommio_defer_taskrun_off() {
    bulk_with("2", true, &[("GLOMMIO_DEFER_TASKRUN", "0".to_string())]);
}

#[test]
fn client_half_close_still_gets_full_reply() {
    let reply_len = 3 * MIB + 17;
    let backend = Backend::start("late", Behaviour::ReplyAfterEof { reply_len });
    let port = free_port();
    let _betwixt = Betwixt::start(&config(port, &[&backend]), &["--shards", "1"], &[port]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"request that ends with a half-close").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply.len(), reply_len);
    assert!(reply.iter().enumerate().all(|(i, &b)| b == pattern_byte(i)), "reply corrupted");
}

/// A server `s` on `port` in front of the backend at `backend` with the API on `api`; `extra`
/// goes into the server's section.
fn config_with_api(port: u16, api: u16, backend: u16, extra: &str) -> String {
    format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n[servers.s]\nbind = \"127.0.0.1:{port}\"\n{extra}\n\
         [servers.s.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:{backend}\"]\n"
    )
}

/// One connection through betwixt, with `half_close` as given, to a backend that answers the
/// request and half-closes, then reads on: what the backend received after its FIN, whether
/// the client saw the reply and its end, and betwixt's active connections while the client
/// still holds its socket open.
fn backend_ends_first(half_close: &str) -> (Vec<u8>, Vec<u8>, u64) {
    let (backend_port, backend) = one_connection_backend(|mut socket| {
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut request = [0u8; 7];
        socket.read_exact(&mut request).unwrap();
        socket.write_all(b"reply").unwrap();
        socket.shutdown(Shutdown::Write).unwrap();
        // Whatever the client sends after the backend's FIN, until betwixt's FIN (or reset).
        let mut after = Vec::new();
        let _ = socket.read_to_end(&mut after);
        after
    });
    let (port, api) = (free_port(), free_port());
    let betwixt = Betwixt::start(&config_with_api(port, api, backend_port, half_close), &[], &[port, api]);
    let api = Client::http(api);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.write_all(b"request").unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    let active = |api: &Client| u64_at(&api.get_json("/servers/s/stats"), "active_connections");
    // With half-close the connection stays until the client ends its side; without, betwixt
    // has closed it already. Either way it settles within a moment.
    let settled = Instant::now() + Duration::from_millis(500);
    wait_until(Duration::from_secs(5), || active(&api) == 0 || Instant::now() >= settled);
    let still_active = active(&api);
    let _ = client.write_all(b"after");
    let _ = client.shutdown(Shutdown::Write);
    let after = backend.join().unwrap();
    drop(betwixt);
    (after, reply, still_active)
}

#[test]
fn half_close_off_ends_the_connection_at_the_backends_end_of_stream() {
    // The default passes the backend's FIN on and keeps the client's direction open.
    let (after, reply, active) = backend_ends_first("");
    assert_eq!((reply.as_slice(), active), (&b"reply"[..], 1));
    assert_eq!(after, b"after", "the client's bytes after the backend's FIN reach it");
    // `half_close = false`: the reply and its end reach the client, then both connections are
    // closed, with the client still holding its socket open; what it sends later goes nowhere.
    let (after, reply, active) = backend_ends_first("half_close = false");
    assert_eq!((reply.as_slice(), active), (&b"reply"[..], 0));
    assert_eq!(after, b"", "nothing reaches the backend after its FIN");
}

/// One connection through betwixt, with `half_close` as given, whose client sends its request
/// and half-closes, to a backend that reads to the end and only then replies: what the client
/// got back, and what the backend read.
fn client_ends_first(half_close: &str) -> (Vec<u8>, Vec<u8>) {
    let (backend_port, backend) = one_connection_backend(|mut socket| {
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut request = Vec::new();
        socket.read_to_end(&mut request).unwrap();
        // Fails (a reset) once betwixt has closed its side; the reply then reaches nobody.
        let _ = socket.write_all(b"late reply");
        request
    });
    let port = free_port();
    let conf = config_with_api(port, free_port(), backend_port, half_close);
    let _betwixt = Betwixt::start(&conf, &[], &[port]);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (reply, _) = read_until_end(&mut client, Duration::from_secs(10));
    (reply, backend.join().unwrap())
}

#[test]
fn half_close_off_ends_the_connection_at_the_clients_end_of_stream() {
    assert_eq!(client_ends_first(""), (b"late reply".to_vec(), b"request".to_vec()));
    // gobetween's way: the request and its end reach the backend, and the connection is closed
    // without waiting for a reply.
    assert_eq!(client_ends_first("half_close = false"), (Vec::new(), b"request".to_vec()));
}
