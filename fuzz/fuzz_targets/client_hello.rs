#![no_main]
//! The ClientHello peek (`src/client_hello.rs`): raw bytes, and a ClientHello built around a
//! fuzzed host name and cut into records of a fuzzed size.

#[allow(dead_code)]
#[path = "../../src/client_hello.rs"]
mod client_hello;

use client_hello::{peek, Peek, MAX_RECORDS};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let answer = peek(data);
    // A reader stops at the first answer that is not `NeedMore`: no shorter prefix of an
    // accepted hello may be refused (one may be whole already, with bytes after it).
    if matches!(answer, Peek::Done(_)) && data.len() <= 2048 {
        for end in 0..data.len() {
            let prefix = peek(&data[..end]);
            assert!(!matches!(prefix, Peek::NotTls(_)), "prefix of {end} bytes: {prefix:?}");
        }
    }
    if let Some((&cut, name)) = data.split_first() {
        built(usize::from(cut).max(1), name);
    }
});

/// A ClientHello asking for `name`, in records of `cut` bytes: read whole, it names `name` when
/// that is a host name, and every prefix asks for more.
fn built(cut: usize, name: &[u8]) {
    let Ok(name_length) = u16::try_from(name.len()) else { return };
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]); // session id, cipher suites, compression
    let mut server_name = vec![0];
    server_name.extend_from_slice(&name_length.to_be_bytes());
    server_name.extend_from_slice(name);
    let mut extension = ((server_name.len()) as u16).to_be_bytes().to_vec();
    extension.extend_from_slice(&server_name);
    let mut extensions = vec![0, 0];
    extensions.extend_from_slice(&(extension.len() as u16).to_be_bytes());
    extensions.extend_from_slice(&extension);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut message = vec![1, 0];
    message.extend_from_slice(&(body.len() as u16).to_be_bytes());
    message.extend_from_slice(&body);
    if message.len().div_ceil(cut) > MAX_RECORDS {
        return;
    }
    let mut wire = Vec::new();
    for record in message.chunks(cut) {
        wire.extend_from_slice(&[22, 3, 1]);
        wire.extend_from_slice(&(record.len() as u16).to_be_bytes());
        wire.extend_from_slice(record);
    }
    let valid = !name.is_empty() && name.len() <= 255 && name.iter().all(|b| b.is_ascii_graphic()) && !name.ends_with(b".");
    match peek(&wire) {
        Peek::Done(Some(read)) => assert!(valid && read.as_bytes() == name, "{name:?} read as {read:?}"),
        other => assert!(!valid, "{name:?} cut every {cut} bytes: {other:?}"),
    }
    for end in (0..wire.len()).step_by(cut.min(97)) {
        assert_eq!(peek(&wire[..end]), Peek::NeedMore, "prefix of {end} bytes");
    }
}
