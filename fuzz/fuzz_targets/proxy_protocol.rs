#![no_main]
//! The PROXY protocol parser (`src/proxy_protocol.rs`): raw bytes, and a round trip of every
//! header it reads (and of one built from the bytes) through the encoder.

#[allow(dead_code)]
#[path = "../../src/proxy_protocol.rs"]
mod proxy_protocol;

use proxy_protocol::{encode, parse, Addresses, Command, Header, Parsed, Version, MAX_HEADER};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Parsed::Done { header, consumed } = parse(data) {
        assert!(consumed <= data.len() && consumed <= MAX_HEADER, "consumed {consumed}");
        // A reader decides on the first answer: each shorter prefix must ask for more.
        for end in 0..consumed {
            assert_eq!(parse(&data[..end]), Parsed::NeedMore, "prefix of {end} of {consumed} bytes");
        }
        round_trip(header);
    }
    if let Some(header) = header_of(data) {
        round_trip(header);
    }
});

/// What `header` means once written: v1 cannot say LOCAL, and both versions carry the two
/// addresses in one family.
fn written(header: Header) -> Header {
    let command = match (header.version, header.command) {
        (Version::V1, Command::Local) => Command::Proxy(None),
        (_, Command::Proxy(Some(a))) => Command::Proxy(Some(Addresses::new(a.source, a.destination))),
        (_, command) => command,
    };
    Header { command, ..header }
}

fn round_trip(header: Header) {
    let mut wire = Vec::new();
    encode(&header, &mut wire);
    let expected = written(header);
    match parse(&wire) {
        Parsed::Done { header: read, consumed } => {
            assert_eq!(read, expected, "{wire:?}");
            assert_eq!(consumed, wire.len());
        }
        other => panic!("{header:?} encoded as {wire:?} reads as {other:?}"),
    }
}

/// A header from 38 bytes: version and command, families and addresses.
fn header_of(data: &[u8]) -> Option<Header> {
    let b: &[u8; 38] = data.get(..38)?.try_into().ok()?;
    let v4 = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]).into();
    let v6 = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&b[at..at + 16]).unwrap_or_default()).into();
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let source = SocketAddr::new(if b[0] & 1 == 0 { v4(2) } else { v6(2) }, port(34));
    let destination = SocketAddr::new(if b[0] & 2 == 0 { v4(18) } else { v6(18) }, port(36));
    let version = if b[0] & 4 == 0 { Version::V1 } else { Version::V2 };
    let command = match b[1] % 3 {
        0 => Command::Local,
        1 => Command::Proxy(None),
        _ => Command::Proxy(Some(Addresses { source, destination })),
    };
    Some(Header { version, command })
}
