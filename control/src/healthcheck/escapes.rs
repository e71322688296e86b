//! The escapes `probe_send` and `probe_recv` may contain: `\n`, `\r`, `\t`, `\\` and `\xNN`
//! (one byte in hex). Any other backslash stays as written, so ordinary text needs no quoting.

pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let escaped = match bytes[i + 1] {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'\\' => b'\\',
            b'x' => {
                let digits = bytes.get(i + 2..i + 4).and_then(|d| std::str::from_utf8(d).ok());
                let byte = digits
                    .filter(|d| d.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|d| u8::from_str_radix(d, 16).ok())
                    .ok_or_else(|| format!("\\x at byte {i} must be followed by two hex digits"))?;
                out.push(byte);
                i += 4;
                continue;
            }
            _ => {
                out.push(b'\\');
                i += 1;
                continue;
            }
        };
        out.push(escaped);
        i += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn known_escapes() {
        assert_eq!(unescape(r"PING\xFF\n").unwrap(), b"PING\xff\n");
        assert_eq!(unescape(r"a\r\n\tb\\c").unwrap(), b"a\r\n\tb\\c");
        assert_eq!(unescape(r"\x00\x7f\xAa").unwrap(), [0, 0x7f, 0xaa]);
    }

    #[test]
    fn other_backslashes_stay() {
        assert_eq!(unescape(r"\d+ \").unwrap(), br"\d+ \");
        assert_eq!(unescape("héllo").unwrap(), "héllo".as_bytes());
    }

    #[test]
    fn broken_hex_is_an_error() {
        for bad in [r"\x", r"\x1", r"\xZZ", r"ab\xé"] {
            assert!(unescape(bad).is_err(), "{bad}");
        }
    }
}
