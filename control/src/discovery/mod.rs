//! Discovery: turning a server's `[discovery]` section into backend specs, and resolving the
//! specs' host names to addresses.

pub mod static_list;

use std::net::SocketAddr;

/// Resolves a backend host; IPv4 addresses first, as gobetween's dialer prefers them.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.dedup();
    Ok(addrs)
}
