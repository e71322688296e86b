//! The escapes `probe_send` and `probe_recv` may contain: those of a Go double-quoted string,
//! which gobetween reads them as (`strconv.Unquote`): `\a`, `\b`, `\f`, `\n`, `\r`, `\t`, `\v`,
//! `\\`, `\"`, `\xNN` (one byte in hex), `\NNN` (one byte in octal), `\uNNNN` and `\UNNNNNNNN`
//! (a character, sent as UTF-8). Any other backslash stays as written, so ordinary text needs
//! no quoting (gobetween refuses such a string).

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
        let simple = match bytes[i + 1] {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            i += 2;
            continue;
        }
        let (digits, radix) = match bytes[i + 1] {
            b'x' => (2, 16),
            b'u' => (4, 16),
            b'U' => (8, 16),
            b'0'..=b'7' => (3, 8),
            _ => {
                out.push(b'\\');
                i += 1;
                continue;
            }
        };
        // Octal digits start right after the backslash; the others after their letter.
        let start = if radix == 8 { i + 1 } else { i + 2 };
        let form = String::from_utf8_lossy(&bytes[i..(start + digits).min(bytes.len())]);
        let value = bytes
            .get(start..start + digits)
            .filter(|d| d.iter().all(|&c| (c as char).is_digit(radix)))
            .and_then(|d| u32::from_str_radix(std::str::from_utf8(d).ok()?, radix).ok())
            .ok_or_else(|| format!("{form:?} at byte {i}: {}", expected(bytes[i + 1], digits)))?;
        match bytes[i + 1] {
            b'u' | b'U' => {
                let c = char::from_u32(value)
                    .ok_or_else(|| format!("{form:?} at byte {i} is not a character"))?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            _ => out.push(u8::try_from(value).map_err(|_| format!("{form:?} at byte {i} is above \\377"))?),
        }
        i = start + digits;
    }
    Ok(out)
}

fn expected(letter: u8, digits: usize) -> String {
    match letter {
        b'0'..=b'7' => "an octal escape takes three octal digits".to_string(),
        _ => format!("\\{} takes {digits} hex digits", letter as char),
    }
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
    fn the_rest_of_gos_escapes() {
        assert_eq!(unescape(r#"\a\b\f\v\""#).unwrap(), b"\x07\x08\x0c\x0b\"");
        assert_eq!(unescape(r"\101\000\377|").unwrap(), b"A\0\xff|");
        assert_eq!(unescape(r"\u0042\u00e9\U0001F600").unwrap(), "Bé😀".as_bytes());
        // A literal character is sent as written (UTF-8), as Go sends it.
        assert_eq!(unescape("é").unwrap(), "é".as_bytes());
    }

    #[test]
    fn other_backslashes_stay() {
        assert_eq!(unescape(r"\d+ \").unwrap(), br"\d+ \");
        assert_eq!(unescape(r"\'\8\q").unwrap(), br"\'\8\q");
        assert_eq!(unescape("héllo").unwrap(), "héllo".as_bytes());
    }

    #[test]
    fn broken_escapes_are_errors() {
        for bad in [
            r"\x",
            r"\x1",
            r"\xZZ",
            r"ab\xé",
            r"\u12",
            r"\u12G4",
            r"\U0011FFFF",
            r"\uD800",
            r"\400",
            r"\0",
            r"\07",
            r"\08x",
            "\\x1é",
            "\\u1éé",
        ] {
            assert!(unescape(bad).is_err(), "{bad}");
        }
    }
}
