//! Stable hashes for balancing: they must give the same answer on every shard, in every process
//! and across restarts, so no randomly seeded hasher is used.

use std::net::IpAddr;

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

/// A client address's hash. IPv4 clients reaching an IPv6 listener (`::ffff:a.b.c.d`) hash
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
}
