//! Load tools the benchmark needs and that wrk and iperf3 do not provide:
//!
//! - `latency ADDR --rate R --seconds S --conns C`: keep-alive HTTP requests sent at a constant
//!   rate, one in flight per connection; prints the latency percentiles as one JSON line.
//! - `idle ADDR --conns N --hold S`: opens N connections, makes one request on each (so every
//!   hop is established end to end), prints `ready N`, keeps them idle for S seconds, exits.

mod args;
mod http;
mod idle;
mod latency;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("latency") => args::Args::parse(&argv[1..]).and_then(|a| latency::run(&a)),
        Some("idle") => args::Args::parse(&argv[1..]).and_then(|a| idle::run(&a)),
        _ => Err("usage: betwixt-bench latency|idle ADDR [--option value]...".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("betwixt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
