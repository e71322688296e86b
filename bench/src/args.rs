//! `ADDR --name value ...`: the only command-line shape the tools need.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;

pub struct Args {
    pub addr: SocketAddr,
    options: HashMap<String, String>,
}

impl Args {
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let (addr, rest) = argv.split_first().ok_or("missing ADDR")?;
        let addr = addr.parse().map_err(|e| format!("ADDR {addr}: {e}"))?;
        let mut options = HashMap::new();
        for pair in rest.chunks(2) {
            let [name, value] = pair else { return Err(format!("{} needs a value", pair[0])) };
            let name = name.strip_prefix("--").ok_or_else(|| format!("unexpected {name}"))?;
            options.insert(name.to_string(), value.clone());
        }
        Ok(Args { addr, options })
    }

    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.options.get(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| format!("--{name}: cannot parse {value}")),
        }
    }
}
