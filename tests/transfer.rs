//! Bytes through the proxy: bulk both ways at once, byte-exact, spliced through pipes and copied,
//! and half-close.

mod api_client;
mod common;

use api_client::counter_sum;
use common::backends::{pattern_byte, Backend, Behaviour};
use common::{echo_round_trip, free_port, Betwixt};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

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
