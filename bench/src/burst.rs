//! `burst ADDR --conns N --rounds R --timeout S --pause-ms P --hold S [--threads T]
//! [--one-by-one true]`: a stress loop for the event loop's sleep and wake-up path. Each round opens N connections at once from several
//! threads, sends a tag on each and waits for its echo, closes them all, then leaves the proxy
//! idle for up to P ms (a random pause, so the proxy goes to sleep at every possible moment of
//! the next burst). A connection whose echo does not come back within S seconds is a stuck
//! connection: the tool prints it and keeps every connection of that round open for `hold`
//! seconds, so the proxy's threads and rings can be inspected while the fault is live
//! (`/proc/PID/task/*/stack`, `/proc/PID/fdinfo/*` of its io_uring descriptors). With
//! `--one-by-one true` each thread's connections make their exchange one after another, as
//! `idle` does: the proxy then sleeps and wakes once per connection while ever more sit open.
//!
//! `bench/stress.py` runs it against betwixt and an echo backend and reads the shard's state.

use crate::args::Args;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const THREADS: usize = 8;

pub fn run(args: &Args) -> Result<(), String> {
    let conns: usize = args.get("conns", 8000)?;
    let rounds: u64 = args.get("rounds", 100)?;
    let timeout = Duration::from_secs_f64(args.get("timeout", 5.0)?);
    let pause_ms: u64 = args.get("pause-ms", 50)?;
    let hold = Duration::from_secs_f64(args.get("hold", 0.0)?);
    let seed = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    for round in 0..rounds {
        let started = Instant::now();
        let overflows_before = listen_overflows();
        let outcome = burst(args, conns, timeout);
        // A full accept queue drops handshakes, and TCP's retransmission then delays a
        // connection by seconds: such a round says nothing about the proxy's event loop.
        let overflows = listen_overflows() - overflows_before;
        match outcome {
            Ok(()) => {
                let pause = next_random(&seed) % (pause_ms + 1);
                println!(
                    "round {round}: {conns} served in {:?}, listen overflows {overflows}",
                    started.elapsed()
                );
                thread::sleep(Duration::from_millis(pause));
            }
            Err((stuck, open)) => {
                println!("round {round}: STUCK {stuck}; listen overflows {overflows}");
                std::io::stdout().flush().map_err(|e| e.to_string())?;
                thread::sleep(hold);
                drop(open);
                return Err(format!("round {round}: {stuck}"));
            }
        }
    }
    Ok(())
}

/// One burst. On a stuck connection, answers what stuck and every stream of the round (kept
/// open for inspection).
fn burst(args: &Args, conns: usize, timeout: Duration) -> Result<(), (String, Vec<TcpStream>)> {
    let one_by_one = args.get("one-by-one", false).unwrap_or(false);
    let threads = args.get("threads", THREADS).unwrap_or(THREADS);
    let per_thread = conns.div_ceil(threads);
    let addr = args.addr;
    let results: Vec<_> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                scope.spawn(move || {
                    let mut streams = Vec::with_capacity(per_thread);
                    if one_by_one {
                        // Like `idle`: each connection's exchange completes before the next
                        // connects, so the proxy sleeps and wakes once per connection while
                        // more and more connections sit open.
                        for i in 0..per_thread {
                            match TcpStream::connect(addr) {
                                Ok(s) => streams.push(s),
                                Err(e) => return (Some(format!("connect {w}/{i}: {e}")), streams),
                            }
                            if let Err(e) = exchange(&mut streams[i], w, i, timeout) {
                                return (Some(e), streams);
                            }
                        }
                        return (None, streams);
                    }
                    for i in 0..per_thread {
                        match TcpStream::connect(addr) {
                            Ok(s) => streams.push(s),
                            Err(e) => return (Some(format!("connect {w}/{i}: {e}")), streams),
                        }
                    }
                    for (i, stream) in streams.iter_mut().enumerate() {
                        let tag = format!("{w}/{i};");
                        if let Err(e) = stream.write_all(tag.as_bytes()) {
                            return (Some(format!("write {w}/{i}: {e}")), streams);
                        }
                    }
                    for (i, stream) in streams.iter_mut().enumerate() {
                        if let Err(e) = read_echo(stream, w, i, timeout) {
                            return (Some(e), streams);
                        }
                    }
                    (None, streams)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("burst worker panicked")).collect()
    });
    let mut failure = None;
    let mut open = Vec::new();
    for (error, streams) in results {
        if failure.is_none() {
            failure = error;
        }
        open.extend(streams);
    }
    match failure {
        None => Ok(()),
        Some(error) => Err((error, open)),
    }
}

fn exchange(stream: &mut TcpStream, w: usize, i: usize, timeout: Duration) -> Result<(), String> {
    let tag = format!("{w}/{i};");
    stream.write_all(tag.as_bytes()).map_err(|e| format!("write {w}/{i}: {e}"))?;
    read_echo(stream, w, i, timeout)
}

fn read_echo(stream: &mut TcpStream, w: usize, i: usize, timeout: Duration) -> Result<(), String> {
    let tag = format!("{w}/{i};");
    let mut back = vec![0u8; tag.len()];
    let _ = stream.set_read_timeout(Some(timeout));
    match stream.read_exact(&mut back) {
        Ok(()) if back == tag.as_bytes() => Ok(()),
        Ok(()) => Err(format!("{w}/{i}: wrong echo")),
        Err(e) => {
            let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
            Err(format!("{w}/{i} (client {local}): {e}"))
        }
    }
}

/// The kernel's count of handshakes dropped at a full accept queue (`TcpExt: ListenOverflows`).
fn listen_overflows() -> i64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

fn next_random(state: &AtomicU64) -> u64 {
    // xorshift: the pauses only need to vary.
    let mut x = state.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.store(x, Ordering::Relaxed);
    x
}
