//! The PROXY protocol (HAProxy's `proxy-protocol.txt`), versions 1 (text) and 2 (binary): a
//! header a proxy sends before the client's bytes, naming the client's and the proxy's addresses.
//! Pure: bytes in, a header out, and the encoder beside it. The connection layer reads and
//! writes (see `connection`).
//!
//! `parse` answers `NeedMore` for every truncated prefix of a valid header and `Invalid` as soon
//! as the bytes cannot begin one, so a reader can feed it what it has after each read. Both
//! versions have a bounded size: a v1 line is at most `V1_MAX` bytes, and a v2 header is refused
//! when it announces more than `V2_MAX` (HAProxy's limit), so a reader never holds more.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header (the spec's bound): `PROXY UNKNOWN ` with two full IPv6 addresses,
/// two ports and CRLF.
pub const V1_MAX: usize = 107;

/// The longest v2 header betwixt reads: the 16-byte fixed part and up to 520 bytes of
/// addresses and TLVs (as HAProxy; a UNIX address pair alone takes 216).
pub const V2_MAX: usize = 536;

/// The most a reader ever needs to hold before `parse` decides.
pub const MAX_HEADER: usize = V2_MAX;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The configuration's names for the two versions are the wire's.
pub use betwixt_control::proxy::Version;

/// The connection's two ends as the sender saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

impl Addresses {
    /// Both addresses in one family: IPv4 when both are IPv4 or IPv4-mapped (a dual-stack
    /// listener's view of an IPv4 client), else IPv6 with IPv4 mapped. A header carries one
    /// family for both.
    pub fn new(source: SocketAddr, destination: SocketAddr) -> Addresses {
        let v4 = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        match (v4(source), v4(destination)) {
            (Some(s), Some(d)) => Addresses {
                source: SocketAddr::new(s.into(), source.port()),
                destination: SocketAddr::new(d.into(), destination.port()),
            },
            _ => {
                let v6 = |a: SocketAddr| match a.ip() {
                    IpAddr::V4(ip) => SocketAddr::new(ip.to_ipv6_mapped().into(), a.port()),
                    IpAddr::V6(_) => a,
                };
                Addresses { source: v6(source), destination: v6(destination) }
            }
        }
    }
}

/// What a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The connection was made by the sender itself (a health check, say): use the real
    /// addresses. v2 only.
    Local,
    /// Relayed for a client; `None` when the sender did not know or not say the addresses
    /// (v1 `UNKNOWN`, v2 `AF_UNSPEC` or UNIX sockets): the receiver uses the real ones.
    Proxy(Option<Addresses>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub command: Command,
}

impl Header {
    /// The client address the header names, if any.
    pub fn source(&self) -> Option<SocketAddr> {
        match self.command {
            Command::Proxy(Some(addresses)) => Some(addresses.source),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header, which took the first `consumed` bytes; what follows is the client's.
    Done { header: Header, consumed: usize },
    /// A valid prefix: read more.
    NeedMore,
    /// Not a header betwixt accepts.
    Invalid(&'static str),
}

/// Reads a header of either version at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Parsed {
    match bytes.first() {
        None => Parsed::NeedMore,
        Some(b'P') => parse_v1(bytes),
        Some(b'\r') => parse_v2(bytes),
        Some(_) => Parsed::Invalid("no PROXY protocol signature"),
    }
}

/// Whether `bytes` and `expected` agree on their common length: `Some(true)` when `bytes`
/// holds all of `expected`, `Some(false)` when it is a shorter prefix of it, `None` otherwise.
fn starts_with(bytes: &[u8], expected: &[u8]) -> Option<bool> {
    let n = bytes.len().min(expected.len());
    (bytes[..n] == expected[..n]).then_some(n == expected.len())
}

pub fn parse_v1(bytes: &[u8]) -> Parsed {
    match starts_with(bytes, V1_PREFIX) {
        None => return Parsed::Invalid("no PROXY protocol signature"),
        Some(false) => return Parsed::NeedMore,
        Some(true) => {}
    }
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return if bytes.len() >= V1_MAX {
            Parsed::Invalid("v1 header longer than 107 bytes")
        } else if window.iter().any(|b| !b.is_ascii_graphic() && *b != b' ' && *b != b'\r') {
            Parsed::Invalid("v1 header is not text")
        } else {
            Parsed::NeedMore
        };
    };
    if end == 0 || window[end - 1] != b'\r' {
        return Parsed::Invalid("v1 header does not end with CRLF");
    }
    // The same test as on a prefix above, so that a header refused when it comes in two reads
    // is not accepted when it comes in one (an `UNKNOWN` line may hold anything after it).
    if window[..end - 1].iter().any(|b| !b.is_ascii_graphic() && *b != b' ') {
        return Parsed::Invalid("v1 header is not text");
    }
    let Ok(line) = std::str::from_utf8(&window[V1_PREFIX.len()..end - 1]) else {
        return Parsed::Invalid("v1 header is not text");
    };
    let command = match v1_fields(line) {
        Ok(command) => command,
        Err(reason) => return Parsed::Invalid(reason),
    };
    Parsed::Done { header: Header { version: Version::V1, command }, consumed: end + 1 }
}

/// `TCP4 src dst sport dport`, `TCP6 …` or `UNKNOWN[ anything]`, single spaces between fields.
fn v1_fields(line: &str) -> Result<Command, &'static str> {
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Command::Proxy(None));
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let mut next = || fields.next().ok_or("v1 header has too few fields");
    let (source, destination) = (next()?, next()?);
    let (source_port, destination_port) = (next()?, next()?);
    if fields.next().is_some() {
        return Err("v1 header has too many fields");
    }
    let ip = |text: &str| -> Result<IpAddr, &'static str> {
        let ip = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| "v1 address is not of the header's family")
    };
    let port = |text: &str| -> Result<u16, &'static str> {
        let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = text.len() > 1 && text.starts_with('0');
        match text.parse() {
            Ok(port) if digits && !leading_zero => Ok(port),
            _ => Err("v1 port is not a number from 0 to 65535"),
        }
    };
    Ok(Command::Proxy(Some(Addresses {
        source: SocketAddr::new(ip(source)?, port(source_port)?),
        destination: SocketAddr::new(ip(destination)?, port(destination_port)?),
    })))
}

pub fn parse_v2(bytes: &[u8]) -> Parsed {
    match starts_with(bytes, V2_SIGNATURE) {
        None => return Parsed::Invalid("no PROXY protocol signature"),
        Some(false) => return Parsed::NeedMore,
        Some(true) => {}
    }
    let Some(&[version_command, family, high, low]) = bytes.get(12..16) else {
        // The fixed part is incomplete; check what there is of it.
        return match bytes.get(12) {
            Some(vc) if vc >> 4 != 2 => Parsed::Invalid("v2 version is not 2"),
            Some(vc) if vc & 0x0f > 1 => Parsed::Invalid("v2 command is not LOCAL or PROXY"),
            _ => Parsed::NeedMore,
        };
    };
    if version_command >> 4 != 2 {
        return Parsed::Invalid("v2 version is not 2");
    }
    let length = u16::from_be_bytes([high, low]) as usize;
    if 16 + length > V2_MAX {
        return Parsed::Invalid("v2 header longer than 536 bytes");
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid("v2 command is not LOCAL or PROXY"),
    };
    let Some(body) = bytes.get(16..16 + length) else {
        return Parsed::NeedMore;
    };
    // Addresses come first; TLVs after them are skipped (betwixt needs none of them).
    let addresses = match family {
        // TCP or UDP (STREAM / DGRAM) over IPv4.
        0x11 | 0x12 => {
            let Some(a) = body.get(..12) else { return Parsed::Invalid("v2 IPv4 addresses truncated") };
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        0x21 | 0x22 => {
            let Some(a) = body.get(..36) else { return Parsed::Invalid("v2 IPv6 addresses truncated") };
            let ip = |at: usize| {
                let octets: [u8; 16] = a[at..at + 16].try_into().unwrap_or_default();
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        // AF_UNSPEC, and UNIX sockets (no IP address to use).
        0x00 | 0x31 | 0x32 => None,
        _ => return Parsed::Invalid("v2 address family or protocol unknown"),
    };
    let command = if local { Command::Local } else { Command::Proxy(addresses) };
    Parsed::Done { header: Header { version: Version::V2, command }, consumed: 16 + length }
}

/// Appends `header` to `out`. v1 cannot say LOCAL: it is written as `UNKNOWN`, which means the
/// same to a receiver (use the real addresses).
pub fn encode(header: &Header, out: &mut Vec<u8>) {
    let addresses = match header.command {
        Command::Proxy(Some(a)) => Some(Addresses::new(a.source, a.destination)),
        _ => None,
    };
    match header.version {
        Version::V1 => encode_v1(addresses, out),
        Version::V2 => encode_v2(header.command == Command::Local, addresses, out),
    }
}

fn encode_v1(addresses: Option<Addresses>, out: &mut Vec<u8>) {
    use std::io::Write;
    let Some(Addresses { source, destination }) = addresses else {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        return;
    };
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    );
}

fn encode_v2(local: bool, addresses: Option<Addresses>, out: &mut Vec<u8>) {
    out.extend_from_slice(V2_SIGNATURE);
    out.push(if local { 0x20 } else { 0x21 });
    let (family, length): (u8, u16) = match addresses {
        None => (0x00, 0),
        Some(a) if a.source.is_ipv4() => (0x11, 12),
        Some(_) => (0x21, 36),
    };
    out.push(family);
    out.extend_from_slice(&length.to_be_bytes());
    let Some(Addresses { source, destination }) = addresses else { return };
    for ip in [source.ip(), destination.ip()] {
        match ip {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: a NUL after `UNKNOWN` was refused in a prefix but accepted in a whole
    /// line, so the answer depended on how the bytes were cut into reads.
    #[test]
    fn v1_control_bytes_are_refused_whole_as_in_a_prefix() {
        let line = b"PROXY UNKNOWN UNKNO\0\0\r\n";
        assert_eq!(parse(&line[..20]), Parsed::Invalid("v1 header is not text"));
        assert_eq!(parse(line), Parsed::Invalid("v1 header is not text"));
        assert!(matches!(parse(b"PROXY UNKNOWN anything here\r\n"), Parsed::Done { .. }));
    }

    fn addrs(source: &str, destination: &str) -> Addresses {
        Addresses { source: source.parse().unwrap(), destination: destination.parse().unwrap() }
    }

    fn proxied(version: Version, source: &str, destination: &str) -> Header {
        Header { version, command: Command::Proxy(Some(addrs(source, destination))) }
    }

    fn encoded(header: &Header) -> Vec<u8> {
        let mut out = Vec::new();
        encode(header, &mut out);
        out
    }

    /// Every strict prefix needs more; the whole is `header`, followed bytes untouched.
    fn check_whole_and_prefixes(bytes: &[u8], header: Header) {
        for n in 0..bytes.len() {
            assert_eq!(parse(&bytes[..n]), Parsed::NeedMore, "prefix {n} of {bytes:?}");
        }
        let mut with_data = bytes.to_vec();
        with_data.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&with_data), Parsed::Done { header, consumed: bytes.len() });
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let tcp4 = b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n";
        check_whole_and_prefixes(tcp4, proxied(Version::V1, "192.168.0.1:56324", "10.0.0.2:443"));
        let tcp6 = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
        check_whole_and_prefixes(tcp6, proxied(Version::V1, "[2001:db8::1]:65535", "[::1]:0"));
        let unknown = Header { version: Version::V1, command: Command::Proxy(None) };
        check_whole_and_prefixes(b"PROXY UNKNOWN\r\n", unknown);
        check_whole_and_prefixes(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", unknown);
    }

    #[test]
    fn v1_longest_header_fits_the_bound() {
        let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {ip} {ip} 65535 65535\r\n");
        assert!(matches!(parse(line.as_bytes()), Parsed::Done { consumed: 104, .. }));
        // The spec's worst case: UNKNOWN followed by what TCP6 would say.
        let line = format!("PROXY UNKNOWN {ip} {ip} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX);
        assert!(matches!(parse(line.as_bytes()), Parsed::Done { consumed: V1_MAX, .. }));
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\x00",
            b"PROXX",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(_)), "{:?}", String::from_utf8_lossy(bad));
        }
        let endless = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 200]].concat();
        assert_eq!(parse(&endless), Parsed::Invalid("v1 header longer than 107 bytes"));
    }

    #[test]
    fn v2_ipv4_ipv6_with_tlvs_skipped() {
        let header = proxied(Version::V2, "192.168.0.1:56324", "10.0.0.2:443");
        let bytes = encoded(&header);
        assert_eq!(bytes.len(), 16 + 12);
        check_whole_and_prefixes(&bytes, header);

        let header = proxied(Version::V2, "[2001:db8::1]:1", "[::1]:2");
        let bytes = encoded(&header);
        assert_eq!(bytes.len(), 16 + 36);
        check_whole_and_prefixes(&bytes, header);

        // Two TLVs (ALPN "h2", a NOOP of 3 bytes) after the addresses: skipped, counted.
        let mut bytes = encoded(&proxied(Version::V2, "1.2.3.4:5", "6.7.8.9:10"));
        let tlvs = [0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x03, 0, 0, 0];
        bytes[14..16].copy_from_slice(&(12 + tlvs.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&tlvs);
        check_whole_and_prefixes(&bytes, proxied(Version::V2, "1.2.3.4:5", "6.7.8.9:10"));
    }

    #[test]
    fn v2_local_unspec_unix_udp() {
        let local = Header { version: Version::V2, command: Command::Local };
        let bytes = encoded(&local);
        assert_eq!(&bytes[12..], &[0x20, 0x00, 0, 0]);
        check_whole_and_prefixes(&bytes, local);

        let unspec = Header { version: Version::V2, command: Command::Proxy(None) };
        let bytes = encoded(&unspec);
        assert_eq!(&bytes[12..], &[0x21, 0x00, 0, 0]);
        check_whole_and_prefixes(&bytes, unspec);

        // LOCAL with addresses: the addresses are ignored.
        let mut bytes = encoded(&proxied(Version::V2, "1.2.3.4:5", "6.7.8.9:10"));
        bytes[12] = 0x20;
        check_whole_and_prefixes(&bytes, local);

        // A UNIX socket pair (216 bytes of paths): no IP address, use the real ones.
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.extend_from_slice(&[0x21, 0x31, 0, 216]);
        bytes.extend_from_slice(&[0; 216]);
        check_whole_and_prefixes(&bytes, unspec);

        // UDP over IPv4 carries addresses like TCP.
        let mut bytes = encoded(&proxied(Version::V2, "1.2.3.4:5", "6.7.8.9:10"));
        bytes[13] = 0x12;
        check_whole_and_prefixes(&bytes, proxied(Version::V2, "1.2.3.4:5", "6.7.8.9:10"));
    }

    #[test]
    fn v2_refusals() {
        let good = encoded(&proxied(Version::V2, "1.2.3.4:5", "6.7.8.9:10"));
        let with = |at: usize, byte: u8| {
            let mut b = good.clone();
            b[at] = byte;
            b
        };
        assert!(matches!(parse(&with(12, 0x11)), Parsed::Invalid(_)), "version 1 in v2");
        assert!(matches!(parse(&with(12, 0x22)), Parsed::Invalid(_)), "command 2");
        assert!(matches!(
            parse(&good[..13].iter().copied().chain([0x31]).collect::<Vec<_>>()),
            Parsed::NeedMore
        ));
        assert!(matches!(parse(&with(13, 0x41)), Parsed::Invalid(_)), "family 4");
        assert!(matches!(parse(&with(15, 4)), Parsed::Invalid(_)), "IPv4 in 4 bytes");
        // A length over the bound is refused before its bytes are read.
        let mut long = good[..16].to_vec();
        long[14..16].copy_from_slice(&(V2_MAX as u16 - 15).to_be_bytes());
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
        long[14..16].copy_from_slice(&(V2_MAX as u16 - 16).to_be_bytes());
        assert_eq!(parse(&long), Parsed::NeedMore);
        assert!(matches!(parse(b"\r\n\r\n\0\r\nQUIT\r"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"\r\nGET"), Parsed::Invalid(_)));
    }

    #[test]
    fn encoder_round_trips_and_unifies_families() {
        for version in [Version::V1, Version::V2] {
            for (source, destination) in [
                ("10.0.0.1:1", "10.0.0.2:2"),
                ("[::1]:3", "[fe80::1]:4"),
                ("0.0.0.0:0", "255.255.255.255:65535"),
            ] {
                let header = proxied(version, source, destination);
                assert_eq!(
                    parse(&encoded(&header)),
                    Parsed::Done { header, consumed: encoded(&header).len() }
                );
            }
            // A dual-stack listener sees IPv4 clients as mapped addresses: sent as IPv4.
            let mapped = proxied(version, "[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.2]:2");
            let Parsed::Done { header, .. } = parse(&encoded(&mapped)) else { panic!() };
            assert_eq!(header, proxied(version, "10.0.0.1:1", "10.0.0.2:2"));
            // Mixed families become IPv6.
            let mixed = proxied(version, "10.0.0.1:1", "[::1]:2");
            let Parsed::Done { header, .. } = parse(&encoded(&mixed)) else { panic!() };
            assert_eq!(header, proxied(version, "[::ffff:10.0.0.1]:1", "[::1]:2"));
        }
        let v1_local = Header { version: Version::V1, command: Command::Local };
        assert_eq!(encoded(&v1_local), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn exact_v1_bytes() {
        assert_eq!(
            encoded(&proxied(Version::V1, "127.0.0.1:40000", "127.0.0.1:8080")),
            b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n"
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic sweep: every short input over a small alphabet of the bytes
        // that matter, plus random-looking longer ones.
        let alphabet = [b'P', b'R', b'O', b'X', b'Y', b' ', b'\r', b'\n', 0, b'1', 0x21, 0x11, b'Q', 0xff];
        let mut x: u32 = 1;
        for _ in 0..20_000 {
            let len = (x % 60) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    alphabet[x as usize % alphabet.len()]
                })
                .collect();
            if let Parsed::Done { consumed, .. } = parse(&bytes) {
                assert!(consumed <= bytes.len());
            }
        }
    }
}
