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
    // Exchanges slower than this many microseconds are listed on stderr with the time they were
    // sent, so periodic stalls (timers, other threads) show up as a pattern.
    let slow_over_us: u32 = args.get("slow-over", u32::MAX)?;
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            let first = start + interval.mul_f64(i as f64 / conns as f64);
            let addr = args.addr;
            thread::spawn(move || -> Result<(Vec<(u32, u32)>, u64), String> {
                let mut client = Client::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
                client.exchange().map_err(|e| format!("warm-up: {e}"))?;
                schedule(&mut client, first, interval, end, start)
            })
        })
        .collect();
    let mut timed = Vec::new();
    let mut late = 0;
    for worker in workers {
        let (mut mine, mine_late) = worker.join().map_err(|_| "worker panicked")??;
        timed.append(&mut mine);
        late += mine_late;
    }
    timed.sort_unstable_by_key(|&(_, sent_us)| sent_us);
    for &(ns, sent_us) in timed.iter().filter(|(ns, _)| ns / 1000 > slow_over_us) {
        eprintln!("slow: sent at {:.3} ms, took {:.1} µs", sent_us as f64 / 1000.0, ns as f64 / 1000.0);
    }
    let mut samples: Vec<u32> = timed.into_iter().map(|(ns, _)| ns).collect();
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

/// Latencies in nanoseconds with the time each exchange started (µs after the schedule's
/// start), and how many sends were late.
fn schedule(
    client: &mut Client,
    first: Instant,
    interval: Duration,
    end: Instant,
    start: Instant,
) -> Result<(Vec<(u32, u32)>, u64), String> {
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
        let took = sent.elapsed().as_nanos().min(u32::MAX as u128) as u32;
        samples.push((took, sent.saturating_duration_since(start).as_micros() as u32));
        next += interval;
    }
    Ok((samples, late))
}
