//! Many idle connections: each makes one exchange so that the proxy has connected its backend
//! side too, then all stay open and silent while the caller measures the proxy's memory.

use crate::args::Args;
use crate::http::Client;
use std::io::Write;
use std::thread;
use std::time::Duration;

pub fn run(args: &Args) -> Result<(), String> {
    let conns: usize = args.get("conns", 8000)?;
    let hold: f64 = args.get("hold", 10.0)?;
    let mut open = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut client = Client::connect(args.addr).map_err(|e| format!("connection {i}: {e}"))?;
        client.exchange().map_err(|e| format!("connection {i}: {e}"))?;
        open.push(client);
    }
    println!("ready {}", open.len());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    thread::sleep(Duration::from_secs_f64(hold));
    Ok(())
}
