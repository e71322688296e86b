//! Stable hashes for balancing: they must give the same answer on every shard, in every process
//! and across restarts, so no randomly seeded hasher is used.
//!
//! `iphash` and `iphash1` use gobetween's own hash (32-bit FNV-1a, Go's `hash/fnv.New32a`) over
//! the client address bytes exactly as gobetween reads them, so that a client lands on the
//! backend gobetween would pick. `maglev` uses a 64-bit FNV-1a with a final mixing step.

use std::net::{IpAddr, SocketAddr};

/// 64-bit FNV-1a over `bytes`, with `seed` mixed in first so one input yields independent hashes.
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET ^ seed.wrapping_mul(PRIME);
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    finish(hash)
}

/// 32-bit FNV-1a, fed in pieces: the state after the client's bytes is kept and continued over
/// each backend's name (iphash1) without hashing the client again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv32(u32);

impl Fnv32 {
    pub const fn new() -> Fnv32 {
        Fnv32(0x811c_9dc5)
    }

    #[must_use]
    pub fn write(self, bytes: &[u8]) -> Fnv32 {
        Fnv32(bytes.iter().fold(self.0, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193)))
    }

    pub fn finish(self) -> u32 {
        self.0
    }
}

impl Default for Fnv32 {
    fn default() -> Fnv32 {
        Fnv32::new()
    }
}

/// Which bytes gobetween hashes for a client: the `net.IP` of the accepted connection, whose
/// length depends on the listening socket Go opened for the server's `bind`. IPv6 clients are
/// always their 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientBytes {
    /// A specific address (`127.0.0.1:3000`, `localhost:3000`): Go opens an IPv4 socket and an
    /// IPv4 client is its 4 bytes.
    #[default]
    Ipv4,
    /// A wildcard (`0.0.0.0:3000`, `:3000`, `[::]:3000`) on a host that supports IPv4-mapped
    /// addresses: Go opens one dual-stack IPv6 socket and an IPv4 client arrives as the 16 bytes
    /// of `::ffff:a.b.c.d`.
    DualStack,
}

impl ClientBytes {
    /// The form gobetween would use for `bind`; `ipv4_mapped` tells whether the host supports
    /// IPv4-mapped addresses (see `bind::ipv4_mapped_supported`).
    pub fn for_bind(bind: &str, ipv4_mapped: bool) -> ClientBytes {
        let host = bind.rsplit_once(':').map_or(bind, |(host, _)| host);
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        // Go's `IsUnspecified` also holds for `::ffff:0.0.0.0`.
        let wildcard = host.is_empty() || host.parse().is_ok_and(|ip| canonical(ip).is_unspecified());
        if wildcard && ipv4_mapped {
            ClientBytes::DualStack
        } else {
            ClientBytes::Ipv4
        }
    }

    /// The FNV-1a state after gobetween's bytes for `ip`.
    pub fn hash(self, ip: IpAddr) -> Fnv32 {
        match (self, canonical(ip)) {
            (ClientBytes::Ipv4, IpAddr::V4(v4)) => Fnv32::new().write(&v4.octets()),
            (ClientBytes::DualStack, IpAddr::V4(v4)) => Fnv32::new().write(&v4.to_ipv6_mapped().octets()),
            (_, IpAddr::V6(v6)) => Fnv32::new().write(&v6.octets()),
        }
    }
}

/// A client address's hash for `maglev`. IPv4 clients reaching an IPv6 listener (`::ffff:a.b.c.d`) hash
/// as their IPv4 address, so one client maps to one backend whichever way it came in.
pub fn client(ip: IpAddr) -> u64 {
    match canonical(ip) {
        IpAddr::V4(v4) => fnv1a(2, &v4.octets()),
        IpAddr::V6(v6) => fnv1a(2, &v6.octets()),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `addr` with its IP `canonical`: how a dual-stack listener's IPv4 client is logged and
/// reported, as gobetween (Go) prints it.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

/// FNV's low bits mix poorly for short inputs that differ only in their last byte;
/// a final avalanche step (from SplitMix64) spreads them before a modulo.
fn finish(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_v4_hashes_as_v4() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client(v4), client(mapped));
        assert_ne!(client(v4), client("192.0.2.8".parse().unwrap()));
    }

    #[test]
    fn seeds_are_independent() {
        assert_ne!(fnv1a(0, b"a:1"), fnv1a(1, b"a:1"));
    }

    #[test]
    fn fnv32_matches_the_published_values() {
        // From the FNV reference test suite (and Go's hash/fnv tests).
        assert_eq!(Fnv32::new().finish(), 0x811c_9dc5);
        assert_eq!(Fnv32::new().write(b"a").finish(), 0xe40c_292c);
        assert_eq!(Fnv32::new().write(b"foobar").finish(), 0xbf9c_f968);
        assert_eq!(Fnv32::new().write(b"foo").write(b"bar"), Fnv32::new().write(b"foobar"));
    }

    #[test]
    fn bind_decides_the_client_form() {
        for wildcard in [":3000", "0.0.0.0:3000", "[::]:3000", "[::ffff:0.0.0.0]:3000"] {
            assert_eq!(ClientBytes::for_bind(wildcard, true), ClientBytes::DualStack, "{wildcard}");
            assert_eq!(ClientBytes::for_bind(wildcard, false), ClientBytes::Ipv4, "{wildcard}");
        }
        for specific in ["127.0.0.1:3000", "localhost:3000", "10.0.0.5:80", "[::1]:3000"] {
            assert_eq!(ClientBytes::for_bind(specific, true), ClientBytes::Ipv4, "{specific}");
        }
    }

    #[test]
    fn client_bytes_are_gobetweens() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        // Parity notes §2.9: fnv1a32 of the 4-byte, 16-byte mapped and IPv6 forms.
        assert_eq!(ClientBytes::Ipv4.hash(v4).finish(), 0x6c50_6a2c);
        assert_eq!(ClientBytes::Ipv4.hash(mapped).finish(), 0x6c50_6a2c);
        assert_eq!(ClientBytes::DualStack.hash(v4).finish(), 0x000f_f8fe);
        assert_eq!(ClientBytes::DualStack.hash(mapped).finish(), 0x000f_f8fe);
        assert_eq!(ClientBytes::Ipv4.hash(v6).finish(), 0x6e5b_04f4);
        assert_eq!(ClientBytes::DualStack.hash(v6).finish(), 0x6e5b_04f4);
    }
}
