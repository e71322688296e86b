//! Finds the server name (SNI) a TLS client asks for, from the first bytes it sends, without
//! taking part in TLS. Pure: bytes in, an answer out; the connection layer reads (see
//! `connection`) and forwards the same bytes untouched.
//!
//! The ClientHello is one handshake message, which the client may cut across several TLS
//! records, which TCP may in turn cut across several segments: a large ClientHello (post-quantum
//! key shares make them over 1,500 bytes) does both. `peek` therefore reassembles the handshake
//! message from as many records as it takes, and answers `NeedMore` for every truncated prefix.
//!
//! Bounds: a handshake message over `MAX_HELLO` bytes, a record over TLS's 16 KiB, or more than
//! `MAX_RECORDS` records are refused; so the bytes a reader holds stay under `MAX_BYTES`. Each
//! call walks at most `MAX_RECORDS` record headers, and parses the message only once it is
//! whole, so feeding bytes one at a time costs O(records) per call.

/// The largest ClientHello accepted (its handshake length field), as the issue of large
/// post-quantum hellos asks: today's browsers send under 2 KiB.
pub const MAX_HELLO: usize = 64 * 1024;

/// TLS's limit on a record's plaintext (RFC 8446 5.1).
const MAX_RECORD: usize = 16 * 1024;

/// Records one ClientHello may take. Four suffice for `MAX_HELLO` at full size; more allow
/// clients that cut records small, without letting a client make each call walk thousands.
pub const MAX_RECORDS: usize = 64;

/// The most bytes a reader holds before `peek` decides.
pub const MAX_BYTES: usize = MAX_HELLO + 4 + MAX_RECORDS * 5;

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// A valid prefix of a ClientHello: read more.
    NeedMore,
    /// A whole ClientHello, with the host name it asks for (`None`: no server_name extension).
    Done(Option<String>),
    /// Not a ClientHello betwixt can read: not TLS, malformed, or over a bound.
    NotTls(&'static str),
}

/// Looks at the bytes a client has sent so far.
pub fn peek(bytes: &[u8]) -> Peek {
    let mut at = 0;
    let mut records = 0;
    // The handshake message's bytes seen so far, and its full length once its header is in.
    let mut have = 0;
    let mut needed: Option<usize> = None;
    let mut header = [0u8; 4];
    loop {
        if needed.is_some_and(|n| have >= n) {
            break;
        }
        let Some(record) = bytes.get(at..at + 5) else {
            // A partial record header: check what there is of it.
            return match bytes.get(at..) {
                Some([first, ..]) if *first != HANDSHAKE => Peek::NotTls("not a TLS handshake record"),
                Some([_, major, ..]) if *major != 3 => Peek::NotTls("not a TLS record version"),
                _ => Peek::NeedMore,
            };
        };
        if record[0] != HANDSHAKE {
            return Peek::NotTls("not a TLS handshake record");
        }
        if record[1] != 3 {
            return Peek::NotTls("not a TLS record version");
        }
        let length = u16::from_be_bytes([record[3], record[4]]) as usize;
        if length == 0 || length > MAX_RECORD {
            return Peek::NotTls("TLS record length out of range");
        }
        records += 1;
        if records > MAX_RECORDS {
            return Peek::NotTls("ClientHello cut into too many records");
        }
        at += 5;
        let fragment = &bytes[at..bytes.len().min(at + length)];
        // The handshake header (type, 24-bit length) may itself be cut across records.
        let head = fragment.len().min(4 - have.min(4));
        header[have.min(4)..have.min(4) + head].copy_from_slice(&fragment[..head]);
        have += fragment.len();
        if needed.is_none() && have >= 4 {
            if header[0] != CLIENT_HELLO {
                return Peek::NotTls("first handshake message is not a ClientHello");
            }
            let length = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            if length > MAX_HELLO {
                return Peek::NotTls("ClientHello over 64 KiB");
            }
            needed = Some(4 + length);
        }
        if fragment.len() < length {
            return Peek::NeedMore;
        }
        at += length;
    }
    let message = reassemble(bytes, at);
    let needed = needed.unwrap_or(0);
    match server_name(&message[4..needed]) {
        Ok(name) => Peek::Done(name),
        Err(reason) => Peek::NotTls(reason),
    }
}

/// The handshake bytes of the records in `bytes[..end]`, record headers dropped.
fn reassemble(bytes: &[u8], end: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(end);
    let mut at = 0;
    while at + 5 <= end {
        let length = u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]) as usize;
        message.extend_from_slice(&bytes[at + 5..at + 5 + length]);
        at += 5 + length;
    }
    message
}

/// A cursor over a ClientHello body, every read bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("ClientHello truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a `width`-byte length before it.
    fn vector(&mut self, width: usize) -> Result<Reader<'a>, &'static str> {
        let length = if width == 1 { self.u8()? as usize } else { self.u16()? as usize };
        Ok(Reader(self.take(length)?))
    }
}

/// The host name in a ClientHello body (after the 4-byte handshake header).
fn server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut hello = Reader(body);
    hello.take(2 + 32)?; // legacy_version, random
    hello.vector(1)?; // legacy_session_id
    hello.vector(2)?; // cipher_suites
    hello.vector(1)?; // legacy_compression_methods
    if hello.0.is_empty() {
        return Ok(None); // no extensions at all (allowed before TLS 1.3)
    }
    let mut extensions = hello.vector(2)?;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vector(2)?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut names = data.vector(2)?;
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vector(2)?.0;
            if name_type == HOST_NAME {
                return host_name(name).map(Some);
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// A host name as RFC 6066 has it: ASCII, no trailing dot. Anything else (control bytes,
/// spaces) is refused, so a name can be logged and matched safely.
fn host_name(name: &[u8]) -> Result<String, &'static str> {
    let valid = !name.is_empty() && name.len() <= 255 && name.iter().all(|b| b.is_ascii_graphic());
    if !valid || name.ends_with(b".") {
        return Err("server name is not a host name");
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello handshake message (header included) asking for `name`, with `padding`
    /// bytes of an extra extension to make it large.
    fn hello(name: Option<&str>, padding: usize) -> Vec<u8> {
        let mut extensions = Vec::new();
        // supported_versions, before the name, to check skipping.
        extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        if let Some(name) = name {
            let n = name.len() as u16;
            extensions.extend_from_slice(&0u16.to_be_bytes());
            extensions.extend_from_slice(&(n + 5).to_be_bytes());
            extensions.extend_from_slice(&(n + 3).to_be_bytes());
            extensions.push(0);
            extensions.extend_from_slice(&n.to_be_bytes());
            extensions.extend_from_slice(name.as_bytes());
        }
        if padding > 0 {
            extensions.extend_from_slice(&21u16.to_be_bytes()); // padding extension
            extensions.extend_from_slice(&(padding as u16).to_be_bytes());
            extensions.extend(std::iter::repeat_n(0, padding));
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[0x01, 0x00]);
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut message = vec![CLIENT_HELLO];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    /// `message` cut into records of at most `size` bytes each.
    fn records(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(size) {
            out.extend_from_slice(&[HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// Every strict prefix needs more; the whole answers `expected`, trailing bytes ignored.
    fn check_prefixes(bytes: &[u8], expected: Peek) {
        for n in 0..bytes.len() {
            assert_eq!(peek(&bytes[..n]), Peek::NeedMore, "prefix of {n} bytes");
        }
        let mut more = bytes.to_vec();
        more.extend_from_slice(&[HANDSHAKE, 3, 3, 0, 1, 0xff]);
        assert_eq!(peek(&more), expected);
        assert_eq!(peek(bytes), expected);
    }

    #[test]
    fn one_record_one_byte_at_a_time() {
        check_prefixes(
            &records(&hello(Some("example.com"), 0), MAX_RECORD),
            Peek::Done(Some("example.com".into())),
        );
    }

    #[test]
    fn split_across_records_even_inside_the_handshake_header() {
        let message = hello(Some("a.example.org"), 3000);
        for size in [1, 2, 3, 5, 100, 1500] {
            check_prefixes(
                &records(&message[..], size.max(message.len() / MAX_RECORDS + 1)),
                Peek::Done(Some("a.example.org".into())),
            );
        }
        // Record sizes that cut the 4-byte handshake header.
        let small = hello(Some("x.y"), 0);
        for size in [2, 3] {
            check_prefixes(&records(&small, size), Peek::Done(Some("x.y".into())));
        }
    }

    #[test]
    fn large_post_quantum_sized_hello() {
        let message = hello(Some("pq.example"), 9000);
        check_prefixes(&records(&message, MAX_RECORD), Peek::Done(Some("pq.example".into())));
        check_prefixes(&records(&message, 4096), Peek::Done(Some("pq.example".into())));
    }

    #[test]
    fn no_server_name() {
        check_prefixes(&records(&hello(None, 0), MAX_RECORD), Peek::Done(None));
        // No extensions block at all.
        let mut bare = hello(None, 0);
        let cut = bare.len() - 2 - 7;
        bare.truncate(cut);
        let length = (bare.len() - 4) as u32;
        bare[1..4].copy_from_slice(&length.to_be_bytes()[1..]);
        check_prefixes(&records(&bare, MAX_RECORD), Peek::Done(None));
    }

    #[test]
    fn garbage_and_other_records() {
        assert!(matches!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls(_)));
        assert!(matches!(peek(b"G"), Peek::NotTls(_)));
        assert!(matches!(peek(&[HANDSHAKE, 2]), Peek::NotTls(_)));
        assert!(matches!(peek(&[HANDSHAKE, 3, 1, 0, 0]), Peek::NotTls(_)), "empty record");
        assert!(matches!(peek(&[HANDSHAKE, 3, 1, 0x40, 1]), Peek::NotTls(_)), "record over 16 KiB");
        // A ServerHello (type 2) where a ClientHello belongs.
        let mut server_hello = hello(Some("a"), 0);
        server_hello[0] = 2;
        assert!(matches!(peek(&records(&server_hello, MAX_RECORD)), Peek::NotTls(_)));
        // An alert record between two handshake fragments.
        let message = hello(Some("a.b"), 0);
        let mut bytes = records(&message[..10], 10);
        bytes.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        assert!(matches!(peek(&bytes), Peek::NotTls(_)));
    }

    #[test]
    fn bounds() {
        let mut huge = vec![CLIENT_HELLO];
        huge.extend_from_slice(&((MAX_HELLO + 1) as u32).to_be_bytes()[1..]);
        assert_eq!(peek(&records(&huge, 4)), Peek::NotTls("ClientHello over 64 KiB"));
        let message = hello(Some("a.b"), 1000);
        assert_eq!(peek(&records(&message, 10)), Peek::NotTls("ClientHello cut into too many records"));
    }

    #[test]
    fn malformed_names_and_lengths() {
        for bad in ["", "bad name", "trailing.dot.", "tab\there"] {
            let bytes = records(&hello(Some(bad), 0), MAX_RECORD);
            assert!(matches!(peek(&bytes), Peek::NotTls(_)), "{bad:?}");
        }
        // An extensions length that runs past the message.
        let mut message = hello(Some("a.b"), 0);
        let at = 4 + 2 + 32 + 1 + 32 + 6 + 2;
        message[at] = 0xff;
        assert_eq!(peek(&records(&message, MAX_RECORD)), Peek::NotTls("ClientHello truncated"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 7;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let base = records(&hello(Some("fuzz.example"), 40), 30);
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..(next() % 4) {
                let at = next() as usize % bytes.len();
                bytes[at] = next() as u8;
            }
            let len = next() as usize % (bytes.len() + 1);
            let _ = peek(&bytes[..len]);
        }
    }
}
