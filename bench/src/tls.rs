//! TLS load, the same client for every target: TLS 1.3 only, `TLS_AES_128_GCM_SHA256`, key
//! exchange X25519 only (rustls with ring), so every proxy negotiates exactly that. The
//! proxies' certificate is verified against `--ca` (chain and name), as a real client would.
//!
//! - `handshakes ADDR --conns C --seconds S --resume 0|1 --name N`: C threads, each in a loop
//!   opens a connection, completes the handshake, makes one HTTP request (`Connection: close`),
//!   reads the whole response and closes. With `--resume 1` the threads share one session
//!   store and resume with the tickets the proxy sent; every handshake is classified as full or
//!   resumed by rustls, and both counts are printed, so a proxy that does not resume shows.
//! - `tls-bulk ADDR --conns C --bytes B --direction down|up`: C connections, each asks
//!   `stream-backend` (through the proxy) for B bytes, or sends it B bytes.
//! - `hello ADDR --conns C --seconds S --name N`: SNI passthrough. A real ClientHello (built by
//!   rustls once) is sent on every new connection; the backend (`stream-backend`) echoes it, the
//!   client reads it back and closes. The proxy peeks at the hello, routes and forwards.

use crate::args::Args;
use crate::http::response_length;
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
const CHUNK: usize = 256 * 1024;

/// The one suite and group every target is measured with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![ring::kx_group::X25519],
        ..ring::default_provider()
    })
}

/// The CA the proxies' certificate chains to (`--ca`, PEM): the client verifies the chain and
/// the name as a real client does.
fn roots(args: &Args) -> Result<RootCertStore, String> {
    let path: String = args.get("ca", String::new())?;
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--ca {path}: {e}"))?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(format!("--ca {path}: no usable certificate"));
    }
    Ok(roots)
}

fn client_config(roots: &RootCertStore, resume: bool) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.resumption = if resume { Resumption::in_memory_sessions(4096) } else { Resumption::disabled() };
    Ok(Arc::new(config))
}

fn server_name(args: &Args) -> Result<ServerName<'static>, String> {
    let name: String = args.get("name", "bench.test".to_string())?;
    ServerName::try_from(name).map_err(|e| e.to_string())
}

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &ServerName<'static>) -> Result<Tls, String> {
    let socket = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    socket.set_nodelay(true).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), name.clone()).map_err(|e| e.to_string())?;
    Ok(StreamOwned::new(conn, socket))
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// One handshake and one request; whether the handshake was a resumption.
fn one_exchange(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
) -> Result<bool, String> {
    let mut tls = connect(addr, config, name)?;
    tls.write_all(REQUEST).map_err(|e| format!("request: {e}"))?;
    let mut response = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).map_err(|e| format!("response: {e}"))?;
        if n == 0 {
            return Err("response cut short".into());
        }
        response.extend_from_slice(&chunk[..n]);
        if response_length(&response).is_some_and(|total| response.len() >= total) {
            break;
        }
    }
    Ok(tls.conn.handshake_kind() == Some(HandshakeKind::Resumed))
}

/// Runs `conns` threads until `seconds` pass, each calling the work `make` gives it, over and
/// over; each call returns a count of one kind (index into the counters) or an error. Prints the
/// counters as JSON with the rate of all.
fn closed_loop<M, W>(conns: usize, seconds: f64, names: &[&str], make: M) -> Result<(), String>
where
    M: Fn() -> W + Sync,
    W: FnMut() -> Result<usize, String>,
{
    let counters: Vec<AtomicU64> = names.iter().map(|_| AtomicU64::new(0)).collect();
    let errors = AtomicU64::new(0);
    let first_error = std::sync::Mutex::new(None);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..conns {
            scope.spawn(|| {
                let mut work = make();
                while !stop.load(Relaxed) {
                    match work() {
                        Ok(kind) => _ = counters[kind].fetch_add(1, Relaxed),
                        Err(e) => {
                            errors.fetch_add(1, Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            });
        }
        thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let counts: Vec<u64> = counters.iter().map(|c| c.load(Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    let fields: Vec<String> = names.iter().zip(&counts).map(|(n, c)| format!("\"{n}\": {c}")).collect();
    let error = first_error.into_inner().unwrap().unwrap_or_default().replace('"', "'");
    println!(
        "{{{}, \"errors\": {}, \"first_error\": \"{error}\", \"per_s\": {:.1}}}",
        fields.join(", "),
        errors.load(Relaxed),
        total as f64 / elapsed
    );
    Ok(())
}

pub fn handshakes(args: &Args) -> Result<(), String> {
    let resume = args.get("resume", 0u8)? == 1;
    let roots = roots(args)?;
    client_config(&roots, resume)?;
    let name = server_name(args)?;
    let addr = args.addr;
    // A session store per thread, as each real client has its own: rustls keeps at most 8
    // tickets per server name, which threads sharing one store would use up.
    closed_loop(args.get("conns", 32)?, args.get("seconds", 5.0)?, &["full", "resumed"], || {
        let config = client_config(&roots, resume).expect("built once above");
        let name = name.clone();
        move || one_exchange(addr, &config, &name).map(usize::from)
    })
}

pub fn hello(args: &Args) -> Result<(), String> {
    // The hello is only sent, never answered by a TLS server: no CA needed.
    let config = client_config(&RootCertStore::empty(), false)?;
    let mut conn = ClientConnection::new(config, server_name(args)?).map_err(|e| e.to_string())?;
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).map_err(|e| e.to_string())?;
    let addr = args.addr;
    let hello = &hello;
    closed_loop(args.get("conns", 32)?, args.get("seconds", 5.0)?, &["conns"], || {
        move || {
            let mut socket = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            socket.set_nodelay(true).map_err(|e| e.to_string())?;
            socket.write_all(hello).map_err(|e| format!("hello: {e}"))?;
            let mut echoed = vec![0u8; hello.len()];
            socket.read_exact(&mut echoed).map_err(|e| format!("echo: {e}"))?;
            if echoed != *hello {
                return Err("the echo differs from the hello".into());
            }
            Ok(0)
        }
    })
}

pub fn bulk(args: &Args) -> Result<(), String> {
    let config = client_config(&roots(args)?, false)?;
    let name = server_name(args)?;
    let conns: usize = args.get("conns", 4)?;
    let bytes: u64 = args.get("bytes", 1u64 << 30)?;
    let down = match args.get("direction", "down".to_string())?.as_str() {
        "down" => true,
        "up" => false,
        other => return Err(format!("--direction {other}: down or up")),
    };
    let started = Instant::now();
    let moved = thread::scope(|scope| {
        let workers: Vec<_> =
            (0..conns).map(|_| scope.spawn(|| one_bulk(args.addr, &config, &name, bytes, down))).collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .sum::<Result<u64, _>>()
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\": {moved}, \"seconds\": {elapsed:.3}, \"gbit_per_s\": {:.3}}}",
        moved as f64 * 8.0 / elapsed / 1e9
    );
    Ok(())
}

fn one_bulk(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    bytes: u64,
    down: bool,
) -> Result<u64, String> {
    let mut tls = connect(addr, config, name)?;
    let mut header = [0u8; 9];
    header[0] = if down { b'D' } else { b'U' };
    header[1..].copy_from_slice(&bytes.to_le_bytes());
    tls.write_all(&header).map_err(|e| format!("header: {e}"))?;
    let mut buffer = vec![0u8; CHUNK];
    let mut left = bytes;
    if down {
        while left > 0 {
            let n = tls.read(&mut buffer).map_err(|e| format!("download: {e}"))?;
            if n == 0 {
                return Err(format!("download cut short, {left} bytes missing"));
            }
            left = left.saturating_sub(n as u64);
        }
    } else {
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            tls.write_all(&buffer[..n]).map_err(|e| format!("upload: {e}"))?;
            left -= n as u64;
        }
        let mut ack = [0u8; 1];
        tls.read_exact(&mut ack).map_err(|e| format!("upload acknowledgement: {e}"))?;
    }
    Ok(bytes)
}
