//! `stream-backend ADDR --threads N`: the plain TCP backend of the TLS scenarios. Each of N
//! threads accepts and serves one connection at a time. The first byte decides:
//!
//! - `D` and a little-endian u64 length: sends that many bytes (a download), then waits for
//!   the client to close;
//! - `U` and a length: reads that many bytes (an upload), answers one byte;
//! - anything else (a TLS ClientHello passed through by an SNI proxy): echoes every byte back
//!   until the client closes.

use crate::args::Args;
use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

const CHUNK: usize = 256 * 1024;

pub fn run(args: &Args) -> Result<(), String> {
    let threads: usize = args.get("threads", 64)?;
    let socket =
        Socket::new(Domain::for_address(args.addr), Type::STREAM, None).map_err(|e| e.to_string())?;
    socket.set_reuse_address(true).map_err(|e| e.to_string())?;
    socket.bind(&args.addr.into()).map_err(|e| format!("bind {}: {e}", args.addr))?;
    socket.listen(4096).map_err(|e| e.to_string())?;
    let listener: TcpListener = socket.into();
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if let Ok((stream, _)) = listener.accept() {
                    // A client that goes away mid-stream is its own business.
                    let _ = serve(stream);
                }
            });
        }
    });
    Ok(())
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer = vec![0u8; CHUNK];
    let n = stream.read(&mut buffer)?;
    if n == 0 {
        return Ok(());
    }
    if (buffer[0] == b'D' || buffer[0] == b'U') && n >= 9 {
        let length = u64::from_le_bytes(buffer[1..9].try_into().unwrap_or_default());
        if buffer[0] == b'D' {
            let mut left = length;
            buffer.fill(0x5a);
            while left > 0 {
                let chunk = left.min(CHUNK as u64) as usize;
                stream.write_all(&buffer[..chunk])?;
                left -= chunk as u64;
            }
        } else {
            let mut left = length.saturating_sub((n - 9) as u64);
            while left > 0 {
                match stream.read(&mut buffer)? {
                    0 => return Ok(()),
                    got => left = left.saturating_sub(got as u64),
                }
            }
            stream.write_all(b"k")?;
        }
        // Until the client closes.
        while stream.read(&mut buffer)? > 0 {}
        return Ok(());
    }
    stream.write_all(&buffer[..n])?;
    loop {
        match stream.read(&mut buffer)? {
            0 => return Ok(()),
            got => stream.write_all(&buffer[..got])?,
        }
    }
}
