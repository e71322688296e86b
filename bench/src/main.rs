//! Load tools the benchmark needs and that wrk and iperf3 do not provide:
//!
//! - `latency ADDR --rate R --seconds S --conns C [--slow-over US]`: keep-alive HTTP requests sent at a constant
//!   rate, one in flight per connection; prints the latency percentiles as one JSON line, and
//!   with `--slow-over` lists the exchanges slower than US µs on stderr with the time they left.
//! - `idle ADDR --conns N --hold S`: opens N connections, makes one request on each (so every
//!   hop is established end to end), prints `ready N`, keeps them idle for S seconds, exits.
//! - `udp ADDR --clients N --window W --size B --seconds S`: UDP datagrams kept in flight from
//!   N sockets; prints replies per second and losses as one JSON line. `udp-echo ADDR`: the
//!   UDP backend.
//! - `handshakes`, `tls-bulk`, `hello`: TLS handshake loops (full or resumed), bulk transfers
//!   over TLS, and ClientHellos for SNI passthrough (see `tls`); `stream-backend ADDR`: their
//!   plain backend (see `backend`).
//! - `burst ADDR --conns N --rounds R`: bursts of N connections opened at once, looped, to hunt
//!   missed wake-ups in the event loop (see `burst` and `bench/stress.py`).

mod args;
mod backend;
mod burst;
mod http;
mod idle;
mod latency;
mod tls;
mod udp;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("latency") => args::Args::parse(&argv[1..]).and_then(|a| latency::run(&a)),
        Some("idle") => args::Args::parse(&argv[1..]).and_then(|a| idle::run(&a)),
        Some("udp") => args::Args::parse(&argv[1..]).and_then(|a| udp::run(&a)),
        Some("udp-echo") => args::Args::parse(&argv[1..]).and_then(|a| udp::echo(&a)),
        Some("handshakes") => args::Args::parse(&argv[1..]).and_then(|a| tls::handshakes(&a)),
        Some("tls-bulk") => args::Args::parse(&argv[1..]).and_then(|a| tls::bulk(&a)),
        Some("hello") => args::Args::parse(&argv[1..]).and_then(|a| tls::hello(&a)),
        Some("burst") => args::Args::parse(&argv[1..]).and_then(|a| burst::run(&a)),
        Some("stream-backend") => args::Args::parse(&argv[1..]).and_then(|a| backend::run(&a)),
        _ => Err(
            "usage: betwixt-bench latency|idle|udp|udp-echo|handshakes|tls-bulk|hello|stream-backend|burst \
                  ADDR [--option value]..."
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("betwixt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
