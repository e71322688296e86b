//! Constant-rate latency: each connection sends on a fixed schedule, one request in flight, and
//! times each exchange. At a moderate rate the schedule is never behind, so the figures are not
//! bent by coordinated omission; `late` counts the sends that left after their slot anyway.

use crate::args::Args;
use crate::http::Client;
use std::thread;
use std::time::{Duration, Instant};

pub fn run(args: &Args) -> Result<(), String> {
    let rate: f64 = args.get("rate", 5000.0)?;
    let seconds: f64 = args.get("seconds", 5.0)?;
    let conns: usize = args.get("conns", 4)?;
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            let first = start + interval.mul_f64(i as f64 / conns as f64);
            let addr = args.addr;
            thread::spawn(move || -> Result<(Vec<u32>, u64), String> {
                let mut client = Client::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
                client.exchange().map_err(|e| format!("warm-up: {e}"))?;
                schedule(&mut client, first, interval, end)
            })
        })
        .collect();
    let mut samples = Vec::new();
    let mut late = 0;
    for worker in workers {
        let (mut mine, mine_late) = worker.join().map_err(|_| "worker panicked")??;
        samples.append(&mut mine);
        late += mine_late;
    }
    samples.sort_unstable();
    let at = |q: f64| samples.get(((samples.len() as f64 * q) as usize).min(samples.len() - 1)).copied();
    let us = |ns: Option<u32>| ns.map_or(f64::NAN, |ns| ns as f64 / 1000.0);
    println!(
        "{{\"count\": {}, \"late\": {late}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}, \"max_us\": {:.1}}}",
        samples.len(),
        us(at(0.5)),
        us(at(0.99)),
        us(at(0.999)),
        us(samples.last().copied()),
    );
    Ok(())
}

/// Latencies in nanoseconds, and how many sends were late.
fn schedule(
    client: &mut Client,
    first: Instant,
    interval: Duration,
    end: Instant,
) -> Result<(Vec<u32>, u64), String> {
    let mut samples = Vec::new();
    let mut late = 0;
    let mut next = first;
    while next < end {
        let now = Instant::now();
        if now < next {
            thread::sleep(next - now);
        } else if now - next > interval {
            late += 1;
        }
        let sent = Instant::now();
        client.exchange().map_err(|e| format!("request: {e}"))?;
        samples.push(sent.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        next += interval;
    }
    Ok((samples, late))
}
