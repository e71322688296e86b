//! An idle betwixt costs nothing: its shards sleep until a client, a timer of their own or the
//! control thread gives them work, and they still answer every change at once.

mod api_client;
mod common;

use api_client::{static_server, Client};
use common::backends::{Backend, Behaviour};
use common::{ask_name, free_port, read_line, wait_until, Betwixt};
use std::fs;
use std::net::TcpStream;
use std::time::Duration;

/// Context switches so far of every shard thread (executor and helper) of process `pid`.
fn shard_switches(pid: i32) -> u64 {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("shard-") {
            continue;
        }
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Idle and I/O-wait time of all CPUs so far, in clock ticks (`/proc/stat`'s first line).
fn cpu_idle_and_iowait() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> =
        stat.lines().next().unwrap().split_whitespace().skip(1).map(|f| f.parse().unwrap()).collect();
    (fields[3], fields[4])
}

/// Whether this kernel can leave a ring's wait out of I/O wait (`IORING_ENTER_NO_IOWAIT`, 6.15).
fn kernel_can_skip_iowait() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 15)
}

/// Shards that had a 20 ms inbox poll and a 100 ms preemption timer woke ~60 times a second
/// each while idle. Now an idle shard wakes only for work: the test holds an idle proxied
/// connection open (its idle timeouts are timers, ten minutes away) and counts the shard
/// threads' context switches over two seconds, and what the CPUs' idle time was counted as.
/// A server added through the API is still served at once, so the sleep is not deafness.
#[test]
fn idle_shards_sleep_and_still_answer_changes() {
    let backend = Backend::start("one", Behaviour::Named);
    let (api, web, added) = (free_port(), free_port(), free_port());
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n\
         [servers.web]\nbind = \"127.0.0.1:{web}\"\n\
         [servers.web.discovery]\nkind = \"static\"\nstatic_list = [\"{}\"]\n",
        backend.line()
    );
    let bx = Betwixt::start(&config, &["--shards", "2"], &[api, web]);
    let mut idle = TcpStream::connect(("127.0.0.1", web)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_line(&mut idle).as_deref(), Some("one"));

    std::thread::sleep(Duration::from_millis(500));
    let (before, idle_before) = (shard_switches(bx.pid()), cpu_idle_and_iowait());
    std::thread::sleep(Duration::from_secs(2));
    let (woke, idle_after) = (shard_switches(bx.pid()) - before, cpu_idle_and_iowait());
    // Two shards polling as before would switch ~240 times here; a handful is scheduler noise.
    assert!(woke <= 20, "idle shards switched {woke} times in 2 s");
    // A shard asleep in its ring made the kernel count its CPU's idle time as I/O wait (it
    // always has polls in flight), so an idle betwixt showed 100% I/O wait in `top`.
    let (idle, iowait) = (idle_after.0 - idle_before.0, idle_after.1 - idle_before.1);
    if !kernel_can_skip_iowait() {
        eprintln!("skipped the I/O wait check: this kernel counts a ring's wait as I/O wait");
    } else if idle + iowait < 50 {
        eprintln!("skipped the I/O wait check: the CPUs were busy ({idle} idle, {iowait} I/O wait ticks)");
    } else {
        assert!(
            iowait * 4 < idle + iowait,
            "idle shards showed as I/O wait: {iowait} of {} ticks",
            idle + iowait
        );
    }

    let client = Client::http(api);
    let reply =
        client.send("POST", "/servers/added", &static_server(&format!("127.0.0.1:{added}"), &backend.line()));
    assert_eq!(reply.status, 200, "{}", reply.message());
    assert!(
        wait_until(Duration::from_secs(2), || ask_name(added).as_deref() == Some("one")),
        "a server added while the shards slept is not served"
    );
}
